// /metrics of fanout-broker and fanout-worker, scraped over real HTTP while a real broker and
// workers (processes, on loopback) go through a scripted scenario: good tasks, a task nobody
// serves, a poison task that kills every executor it runs on, a worker killed, a malformed
// message. Every counter it moves is checked for its exact delta; the text passes promtool.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <map>
#include <thread>
#include <string>
#include <vector>

#include <zmq.hpp>

#include <fanout/fanout.hpp>

#include "cluster.hpp"
#include "scrape.hpp"

using namespace std::chrono_literals;
using fanout_test::scrape;

namespace {

// The names and signatures of the example task library (examples/tasks/tasks.cpp), for calls.
const fanout::Task square{"example.square", [](int x) { return x * x; }};
const fanout::Task crash{"example.crash", [](int) -> int { return 0; }};  // kills its executor there
const fanout::Task sleep_ms{"example.sleep_ms", [](int ms) { return ms; }};
// Served by no worker of the cluster: fails at the broker with kind unknown_task.
const fanout::Task nobody_serves{"ops_test.nobody_serves", [](int x) { return x; }};

fanout_test::WorkerOptions worker(const std::string& name) {
  return {.processes = 2, .load = {FANOUT_EXAMPLE_TASKS}, .arguments = {"--metrics", "127.0.0.1:0"}, .name = name};
}

// A broker (with a journal, for deferred batches) and two workers, each serving metrics on a port
// of the OS's choosing. One for the whole program: the process driver keeps its session with the
// first broker it used.
struct Operated {
  fanout_test::TempDir journal;
  fanout_test::Cluster cluster{fanout_test::ClusterOptions{
      .broker_arguments = {"--metrics", "127.0.0.1:0", "--heartbeat-ms", "100", "--liveness-ms", "1200",
                           "--journal", journal.path().string()},
      .workers = {worker("worker a"), worker("worker b")}}};
  std::string broker_url;
  std::vector<std::string> worker_urls;

  Operated() {
    const auto url = cluster.broker().process().wait_for_line("metrics ", fanout_test::kPatience);
    REQUIRE_MESSAGE(url.has_value(), cluster.logs());
    broker_url = *url;
    for (std::size_t n = 0; n < 2; ++n) {
      std::optional<std::string> found;
      REQUIRE_MESSAGE(fanout_test::eventually([&] {
                        found = fanout_test::url_after(cluster.worker(n).out(), "serving metrics on ");
                        return found.has_value();
                      }),
                      cluster.logs());
      worker_urls.push_back(*found);
    }
  }

  // The broker's value of `series`, 0 when it has no such sample yet (a label value not seen).
  double broker(const std::string& series) { return scrape(broker_url, series).value_or(-1); }
  double restarts() {
    double total = 0;
    for (const auto& url : worker_urls) total += scrape(url, "fanout_worker_executor_restarts_total").value_or(-1000);
    return total;
  }
};

Operated& operated() {
  static Operated instance;
  return instance;
}

// Series whose deltas the scenario predicts, by name.
const std::vector<std::string> kSeries{
    R"(fanout_broker_tasks_completed_total{outcome="success"})",
    R"(fanout_broker_tasks_completed_total{outcome="worker_lost"})",
    R"(fanout_broker_tasks_completed_total{outcome="unknown_task"})",
    R"(fanout_broker_tasks_completed_total{outcome="exception"})",
    R"(fanout_broker_messages_refused_total{reason="bad_message"})",
    "fanout_broker_tasks_received_total",
    "fanout_broker_executors_lost_total",
    "fanout_broker_task_duration_seconds_count",
    "fanout_broker_task_queue_wait_seconds_count",
};

}  // namespace

TEST_CASE("broker and worker metrics move by exactly what a scenario of good, unknown and poison tasks and a "
          "killed worker did") {
  Operated& ops = operated();
  auto client = ops.cluster.client_scope();
  INFO(ops.cluster.logs());
  // The broker publishes every heartbeat: its figures follow the status API's within one.
  CHECK(fanout_test::eventually([&] { return ops.broker("fanout_broker_workers") == 2; }));
  CHECK(fanout_test::eventually([&] { return ops.broker("fanout_broker_executors") == 4; }));
  CHECK(fanout_test::eventually([&] { return scrape(ops.worker_urls[0], "fanout_worker_executors") == 2; }));
  std::map<std::string, double> before;
  for (const auto& series : kSeries) before[series] = ops.broker(series);
  const double restarts_before = ops.restarts();

  // Ten good tasks, one nobody serves.
  std::vector<fanout::Call<int>> calls;
  for (int i = 0; i < 10; ++i) calls.push_back(square(i));
  const auto driver = fanout::Concurrency::driver("process").timeout(60s);
  CHECK(driver.run(calls).size() == 10);
  CHECK_FALSE(std::get<0>(driver.settle(nobody_serves(1))).ok());
  // A poison task: it kills every executor it runs on, three attempts, then fails as worker_lost.
  const auto poisoned = std::get<0>(driver.settle(crash(0)));
  REQUIRE_FALSE(poisoned.ok());
  CHECK(poisoned.error().kind() == fanout::ErrorKind::worker_lost);

  // A worker killed outright: the broker loses it and its two executors once it falls silent.
  auto third = ops.cluster.start_worker({.processes = 2, .load = {FANOUT_EXAMPLE_TASKS}, .name = "worker c"});
  REQUIRE(ops.cluster.wait_for_executors(6));
  third->kill();
  REQUIRE(ops.cluster.wait_for_workers(2));

  // A malformed message: dropped and counted by reason.
  zmq::context_t context;
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(ops.cluster.endpoint());
  dealer.send(zmq::str_buffer("not an envelope"), zmq::send_flags::none);

  const std::map<std::string, double> delta{
      {R"(fanout_broker_tasks_completed_total{outcome="success"})", 10},
      {R"(fanout_broker_tasks_completed_total{outcome="worker_lost"})", 1},
      {R"(fanout_broker_tasks_completed_total{outcome="unknown_task"})", 1},
      {R"(fanout_broker_tasks_completed_total{outcome="exception"})", 0},
      {R"(fanout_broker_messages_refused_total{reason="bad_message"})", 1},
      {"fanout_broker_tasks_received_total", 12},
      // three executors the poison task killed, two with the killed worker
      {"fanout_broker_executors_lost_total", 5},
      // results that came from executors: the ten good tasks (the others failed at the broker)
      {"fanout_broker_task_duration_seconds_count", 10},
      // first dispatches: ten good tasks and the poison one (its retries are not first dispatches)
      {"fanout_broker_task_queue_wait_seconds_count", 11},
  };
  // The broker publishes every heartbeat: wait for the last of it, then every delta is exact.
  const auto settled = [&] {
    for (const auto& [series, expected] : delta) {
      if (ops.broker(series) - before[series] != expected) return false;
    }
    return ops.broker("fanout_broker_workers") == 2 && ops.broker("fanout_broker_executors") == 4;
  };
  CHECK(fanout_test::eventually(settled, fanout_test::kPatience));
  for (const auto& [series, expected] : delta) CHECK_MESSAGE(ops.broker(series) - before[series] == expected, series);
  CHECK(ops.broker("fanout_broker_tasks_running") == 0);
  CHECK(ops.broker("fanout_broker_workers") == 2);
  CHECK(ops.broker("fanout_broker_executors") == 4);
  // The two workers replaced the three executors the poison task killed (the third worker is gone).
  CHECK(fanout_test::eventually([&] { return ops.restarts() - restarts_before == 3; }));
  CHECK(ops.restarts() - restarts_before == 3);
  for (const auto& url : ops.worker_urls) {
    CHECK(fanout_test::eventually([&] { return scrape(url, "fanout_worker_executors") == 2; }));
    CHECK(scrape(url, "fanout_worker_tasks_running") == 0);
    CHECK(scrape(url, "fanout_worker_registered") == 1);
  }
  CHECK(ops.broker(R"(fanout_build_info{version=")" FANOUT_VERSION_TEXT R"("})") == 1);
}

TEST_CASE("tasks waiting at the broker show in the queue gauge by task name, a running one at its worker") {
  // A batch run one at a time, its first task slow: the other two wait at the broker, under their
  // name, while one runs (at the broker and at a worker).
  Operated& ops = operated();
  const std::string* url = &ops.broker_url;
  INFO(ops.cluster.logs());
  auto client = ops.cluster.client_scope();
  const auto driver = fanout::Concurrency::driver("process").timeout(60s).max_concurrency(1);
  std::thread batch([&] { driver.run(std::vector<fanout::Call<int>>{sleep_ms(2500), sleep_ms(1), sleep_ms(1)}); });
  CHECK(fanout_test::eventually([&] { return scrape(*url, R"(fanout_broker_tasks_queued{task="example.sleep_ms"})") == 2; },
                                fanout_test::kPatience));
  CHECK(fanout_test::eventually([&] { return scrape(*url, "fanout_broker_tasks_running") == 1; }));
  // The worker running it says so too (its supervisor reads the executors' running table).
  CHECK(fanout_test::eventually([&] {
    double running = 0;
    for (const auto& worker_url : ops.worker_urls) running += scrape(worker_url, "fanout_worker_tasks_running").value_or(-1);
    return running == 1;
  }));
  batch.join();
  CHECK(fanout_test::eventually([&] { return !scrape(*url, R"(fanout_broker_tasks_queued{task="example.sleep_ms"})"); }));
}

TEST_CASE("the metrics of broker and worker pass promtool's check") {
  const char* candidates[] = {"/usr/bin/promtool", "/usr/local/bin/promtool"};
  std::string promtool;
  for (const char* path : candidates) {
    struct stat info{};
    if (::stat(path, &info) == 0) promtool = path;
  }
  if (promtool.empty()) {
    MESSAGE("SKIPPED: promtool is not installed (Debian package prometheus); nothing checked");
    return;
  }
  Operated& ops = operated();
  auto client = ops.cluster.client_scope();
  // Some of everything: values in histograms, labels in use.
  const auto driver = fanout::Concurrency::driver("process").timeout(60s);
  CHECK(driver.run(std::vector<fanout::Call<int>>{square(1), square(2), square(3)}).size() == 3);
  CHECK(fanout_test::eventually([&] { return ops.broker("fanout_broker_task_duration_seconds_count") >= 3; }));
  for (const auto& url : {ops.broker_url, ops.worker_urls[0]}) {
    const auto answer = fanout_test::http_get(url, "/metrics");
    REQUIRE(answer.has_value());
    CHECK(answer->status == 200);
    const auto checked = fanout_test::run_to_end({promtool, "check", "metrics"}, {.input = answer->body});
    INFO(url << ":\n" << answer->body << "\npromtool: " << checked.out << checked.err);
    CHECK(checked.status == 0);
    CHECK(checked.out + checked.err == "");  // no lint warnings either
  }
}

TEST_CASE("the broker logs one line per batch when it ends, and nothing at info for a client program that ended") {
  Operated& ops = operated();
  INFO(ops.cluster.logs());
  const auto called = fanout_test::run_to_end({FANOUT_ONE_CALL_CLIENT}, {.env = {ops.cluster.client_env()}});
  CHECK(called.out == "value 9\n");
  // "broker: batch <id> of client <routing id> finished: 1 task(s) (1 received), 1 succeeded, in N ms"
  CHECK(fanout_test::eventually([&] {
    return ops.cluster.broker().log().find(" finished: 1 task(s) (1 received), 1 succeeded, in ") != std::string::npos;
  }));
  // Every client falls silent in the end (programs of the process driver leave without a word):
  // once the broker has let them all go, its log says nothing about their going.
  CHECK(fanout_test::eventually([&] { return ops.broker("fanout_broker_clients") == 0; }, fanout_test::kPatience));
  // (Workers that go silent are worth a line: the test above killed one.)
  CHECK(ops.cluster.broker().log().find("client went silent") == std::string::npos);
  CHECK(ops.cluster.broker().log().find("dropped: its client") == std::string::npos);
}

TEST_CASE("a deferred batch shows in the journal's fsync histogram and the deferred counters") {
  Operated& ops = operated();
  INFO(ops.cluster.logs());
  auto client = ops.cluster.client_scope();
  const double syncs = ops.broker("fanout_broker_journal_fsync_seconds_count");
  const double done = ops.broker("fanout_broker_deferred_tasks_done_total");
  REQUIRE(syncs >= 0);  // the family exists with a journal
  const auto receipt = fanout::Concurrency::driver("process").defer(square(5), square(6));
  CHECK(receipt.tasks() == 2);
  // Acknowledged once durable: at least one fdatasync (records of the two tasks' ends follow).
  CHECK(fanout_test::eventually([&] { return ops.broker("fanout_broker_journal_fsync_seconds_count") > syncs; }));
  CHECK(fanout_test::eventually([&] { return ops.broker("fanout_broker_deferred_tasks_done_total") == done + 2; },
                                fanout_test::kPatience));
  CHECK(fanout_test::eventually([&] {
    return ops.broker(R"(fanout_broker_deferred_tasks{state="pending"})") == 0 &&
           ops.broker(R"(fanout_broker_deferred_tasks{state="running"})") == 0;
  }));
}
