// The process driver in remote mode: a standalone fanout-broker, a fanout-worker loading a task
// library, a user's own program running as a worker, and this test program as the client, all
// separate processes talking over TCP on loopback.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fanout/fanout.hpp>

#include "cluster.hpp"
#include "example_tasks.hpp"  // this program calls them, and serves them when it runs as a worker

using namespace std::chrono_literals;

namespace {

// A broker, one fanout-worker and one worker that is this very program, two executors each.
// Short heartbeats, so that deaths are noticed in about a second. This program is their client.
struct Workers {
  fanout_test::Cluster cluster{fanout_test::ClusterOptions{
      .broker_arguments = {"--heartbeat-ms", "200", "--liveness-ms", "1200"},
      .workers = {{.processes = 2, .load = {FANOUT_EXAMPLE_TASKS}, .arguments = {"--log-level", "info"},
                   .name = "library worker"},
                  {.program = FANOUT_THIS_PROGRAM, .processes = 2, .name = "program worker"}}}};
  fanout_test::ScopedEnv client = cluster.client_scope();

  fanout_test::Child& library_worker() { return cluster.worker(0); }
  fanout_test::Child& program_worker() { return cluster.worker(1); }
  std::string logs() const { return cluster.logs(); }
};

Workers& cluster() {
  static Workers instance;
  return instance;
}

fanout::Driver remote() { return fanout::Concurrency::driver("process").timeout(60s); }

}  // namespace

TEST_CASE("a batch runs on remote workers through a standalone broker, in order") {
  auto& workers = cluster();
  std::vector<fanout::Call<int>> calls;
  for (int i = 0; i < 500; ++i) calls.push_back(example::square(i));
  const auto results = remote().run(calls);
  REQUIRE(results.size() == 500);
  for (int i = 0; i < 500; ++i) CHECK(results[static_cast<std::size_t>(i)] == i * i);
  INFO(workers.logs());
}

namespace {

// How long `calls` take on the remote workers through `driver`.
std::chrono::milliseconds makespan(const fanout::Driver& driver, const std::vector<fanout::Call<int>>& calls) {
  const auto started = std::chrono::steady_clock::now();
  const auto results = driver.run(calls);
  CHECK(results.size() == calls.size());
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
}

}  // namespace

TEST_CASE("max_concurrency caps a batch over every executor of every remote worker, as a list scheduler would") {
  auto& workers = cluster();  // two workers of two executors: four could run at once
  // Two at a time: three rounds of 300 ms (four at a time would take two); never one executor
  // holding a second task while another is idle.
  const auto capped = makespan(remote().max_concurrency(2), std::vector<fanout::Call<int>>(6, example::sleep_ms(300)));
  CHECK(capped >= 850ms);
  CHECK(capped <= 1125ms);  // within 1.25x of the ideal 900 ms
  INFO(workers.logs());
}

TEST_CASE("slow tasks spread over every remote executor: N tasks on P slots take about N/P task times") {
  auto& workers = cluster();
  // Six tasks of 300 ms on four executors: two rounds, ideal 600 ms.
  const auto equal = makespan(remote(), std::vector<fanout::Call<int>>(6, example::sleep_ms(300)));
  CHECK(equal <= 750ms);
  // One of 900 ms and nine of 100 ms, two at a time: the long one on one executor, the nine short
  // ones one after another on the other; ideal 900 ms.
  std::vector<fanout::Call<int>> uneven{example::sleep_ms(900)};
  for (int i = 0; i < 9; ++i) uneven.push_back(example::sleep_ms(100));
  const auto mixed = makespan(remote().max_concurrency(2), uneven);
  CHECK(mixed >= 850ms);
  CHECK(mixed <= 1125ms);
  INFO(workers.logs());
}

TEST_CASE("a worker sent SIGTERM mid-batch stops taking work, finishes what runs and exits 0; the batch finishes elsewhere") {
  auto& workers = cluster();
  const auto leaving = workers.cluster.start_worker({.program = FANOUT_THIS_PROGRAM, .processes = 2});
  REQUIRE(workers.cluster.wait_for_workers(3));
  const std::vector<fanout::Call<int>> calls(40, example::sleep_ms(300));
  std::optional<std::chrono::steady_clock::duration> exited_after;
  std::optional<int> status;
  std::thread drainer([&] {
    std::this_thread::sleep_for(400ms);
    const auto signalled = std::chrono::steady_clock::now();
    leaving->signal_group(SIGTERM);
    status = leaving->wait_exit(30s);
    exited_after = std::chrono::steady_clock::now() - signalled;
  });
  const auto results = remote().run(calls);
  drainer.join();
  CHECK(results == std::vector<int>(40, 300));
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  // It finished the task each executor was running (300 ms), nothing it had not started.
  CHECK(*exited_after < 1500ms);
  INFO(workers.logs() << "--- leaving worker\n" << leaving->out());
}

TEST_CASE("a worker killed with SIGKILL is noticed and its tasks finish on the other worker") {
  auto& workers = cluster();
  std::vector<fanout::Call<int>> calls(16, example::sleep_ms(300));
  std::thread killer([&] {
    std::this_thread::sleep_for(400ms);
    workers.program_worker().signal_group(SIGKILL);
  });
  const auto started = std::chrono::steady_clock::now();
  const auto results = remote().run(calls);
  killer.join();
  CHECK(results == std::vector<int>(16, 300));
  CHECK(std::chrono::steady_clock::now() - started < 30s);
  CHECK(workers.cluster.wait_for_workers(1));
  INFO(workers.logs());
}

TEST_CASE("after a broker restart, workers reconnect on their own") {
  auto& workers = cluster();
  workers.cluster.broker().restart();  // the same port
  CHECK(workers.cluster.wait_for_workers(1));  // the library worker; the program worker was killed above
  std::vector<fanout::Call<int>> calls;
  for (int i = 0; i < 50; ++i) calls.push_back(example::square(i));
  const auto results = remote().run(calls);
  CHECK(results[49] == 49 * 49);
  INFO(workers.logs());
}

TEST_CASE("a batch in flight survives a broker SIGKILLed and restarted: every slot once, at the cost of the restart") {
  auto& workers = cluster();  // the library worker: two executors
  const std::vector<fanout::Call<int>> calls(20, example::sleep_ms(300));  // ten rounds: 3 s without a fault
  std::atomic<int> outcomes{0};
  std::thread restarter([&] {
    std::this_thread::sleep_for(1000ms);
    workers.cluster.broker().restart();  // SIGKILL, then a new broker on the same port
  });
  const auto started = std::chrono::steady_clock::now();
  const auto results = remote().run(calls, [&](std::size_t, fanout::Outcome<int>&& outcome) {
    CHECK(outcome.ok());
    ++outcomes;
  });
  restarter.join();
  CHECK(results == std::vector<int>(20, 300));
  CHECK(outcomes == 20);  // each slot once: what came before the restart was kept, not run again
  // The restart costs the time workers take to notice and reconnect, not the batch.
  CHECK(std::chrono::steady_clock::now() - started < 9s);
  INFO(workers.logs());
}

TEST_CASE("a frozen worker (SIGSTOP) is noticed and its tasks go to another worker") {
  auto& workers = cluster();
  // A fresh worker next to the library worker, then the library worker is frozen mid-batch.
  const auto extra = workers.cluster.start_worker({.program = FANOUT_THIS_PROGRAM, .processes = 2});
  REQUIRE(workers.cluster.wait_for_workers(2));
  std::vector<fanout::Call<int>> calls(12, example::sleep_ms(300));
  std::thread freezer([&] {
    std::this_thread::sleep_for(400ms);
    workers.library_worker().signal_group(SIGSTOP);
  });
  const auto results = remote().run(calls);
  freezer.join();
  CHECK(results == std::vector<int>(12, 300));
  workers.library_worker().kill();
  const std::string logs = workers.logs() + "--- extra worker\n" + extra->out();
  INFO(logs);
}

// Last: it takes the broker away (and brings it back at the end for nothing else).
TEST_CASE("a broker that stays away past the batch's deadline fails the open slots as unreachable; finished ones stay") {
  auto& workers = cluster();
  // The workers of the tests above are gone; once the broker has noticed, a new one.
  REQUIRE(workers.cluster.wait_for_workers(0));
  const auto worker = workers.cluster.start_worker({.processes = 2, .load = {FANOUT_EXAMPLE_TASKS}});
  REQUIRE(workers.cluster.wait_for_executors(2));
  std::vector<fanout::Call<int>> calls(8, example::sleep_ms(300));
  std::atomic<int> ok{0};
  std::mutex mutex;
  std::vector<std::pair<fanout::ErrorKind, std::string>> failures;
  // The broker dies for good once the first results are in.
  std::thread killer([&] {
    CHECK(fanout_test::eventually([&] { return ok >= 2; }, 20s));
    workers.cluster.broker().kill();
  });
  const auto started = std::chrono::steady_clock::now();
  try {
    fanout::Concurrency::driver("process").deadline(8s).run(calls, [&](std::size_t, fanout::Outcome<int>&& outcome) {
      if (outcome.ok()) {
        ++ok;
        return;
      }
      const std::lock_guard lock(mutex);
      failures.emplace_back(outcome.error().kind(), outcome.error().what());
    });
  } catch (const fanout::Error&) {
    // expected: slots failed
  }
  const auto took = std::chrono::steady_clock::now() - started;
  killer.join();
  CHECK(ok >= 2);  // what came back before the broker died is kept
  CHECK(ok + failures.size() == 8);
  for (const auto& [kind, what] : failures) {
    INFO(what);
    CHECK(kind == fanout::ErrorKind::unreachable);
    CHECK(what.find(workers.cluster.endpoint()) != std::string::npos);
  }
  CHECK(took < 15s);  // the deadline and the client's 2 s of grace, not the 30 s reconnect limit
  workers.cluster.broker().restart();
}
