// `fanout deferred list|retry|drop`: the real tool against a real fanout-broker with a journal,
// a worker whose task always throws, and (in local mode) a program's own local service. Every
// wait has a deadline; every process started here is killed and reaped at the end of its scope.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "child.hpp"
#include "cluster.hpp"
#include "local_services.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using fanout_test::eventually;
using fanout_test::read_file;
using fanout_test::TempDir;

namespace {

struct Ran {
  int exit_code = -1;  // -1: did not exit by itself within the limit (then killed)
  std::string out;
  std::string err;
};

// Runs `arguments` (a program and its arguments) to its end, as a child process of the test
// (child.hpp) whose environment is this process's minus FANOUT_* plus `environment`; killed with
// its process group if it runs past `limit`.
Ran run(std::vector<std::string> arguments, const std::vector<std::string>& environment = {},
        std::chrono::milliseconds limit = 60s) {
  const auto finished =
      fanout_test::run_to_end(std::move(arguments), {.env = environment, .drop_env = {"FANOUT_"}, .input = ""}, limit);
  Ran ran;
  if (WIFEXITED(finished.status)) ran.exit_code = WEXITSTATUS(finished.status);
  ran.out = finished.out;
  ran.err = finished.err;
  return ran;
}

// `fanout <arguments>`, run to its end.
Ran fanout_tool(std::vector<std::string> arguments, const std::vector<std::string>& environment = {}) {
  arguments.insert(arguments.begin(), FANOUT_TOOL_PROGRAM);
  return run(std::move(arguments), environment);
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

// A fanout-broker with a journal in `dir` (unless told otherwise), giving up on a deferred task
// after two attempts, and noticing a dead worker within about a second; no worker yet.
fanout_test::ClusterOptions broker_options(const TempDir& dir, bool journal) {
  fanout_test::ClusterOptions options{
      .broker_arguments = {"--heartbeat-ms", "200", "--liveness-ms", "1200", "--deferred-attempts", "2"}};
  if (journal) {
    options.broker_arguments.emplace_back("--journal");
    options.broker_arguments.push_back((dir.path() / "journal").string());
  }
  return options;
}

// `fanout status` of the cluster's broker, as the tool prints it.
std::string status_of(const fanout_test::Cluster& cluster) { return fanout_tool({"status", "--broker", cluster.endpoint()}).out; }

// A worker whose task always throws: the failing program, one executor.
std::unique_ptr<fanout_test::Child> start_worker(const fanout_test::Cluster& cluster) {
  return cluster.start_worker({.program = FANOUT_FAILING_PROGRAM, .processes = 1});
}

// The broker's deferred tasks are as given (pending, running, done, dead), within 30 s.
bool deferred_become(fanout_test::Cluster& cluster, std::uint64_t pending, std::uint64_t running, std::uint64_t done,
                     std::uint64_t dead) {
  return cluster
      .wait_for(
          [&](const fanout_test::StatusCounts& counts) {
            return counts.deferred_pending == pending && counts.deferred_running == running &&
                   counts.deferred_done == done && counts.deferred_dead == dead;
          },
          30s)
      .has_value();
}

// The receipt printed by the failing program after deferring its batch of two.
std::string defer_batch(const std::vector<std::string>& environment) {
  const Ran deferred = run({FANOUT_FAILING_PROGRAM}, environment);
  INFO(deferred.err);
  REQUIRE(deferred.exit_code == 0);
  std::string receipt = deferred.out;
  while (!receipt.empty() && (receipt.back() == '\n' || receipt.back() == ' ')) receipt.pop_back();
  REQUIRE_FALSE(receipt.empty());
  return receipt;
}

}  // namespace

TEST_CASE("fanout deferred lists a broker's dead tasks with their errors, retries and drops them") {
  TempDir dir;
  fanout_test::Cluster cluster(broker_options(dir, true));
  auto worker = start_worker(cluster);
  REQUIRE(cluster.wait_for_workers(1, 30s));
  const std::string receipt = defer_batch({cluster.client_env()});
  INFO("broker log:\n" << cluster.broker().log() << "worker log:\n" << worker->out());
  REQUIRE(deferred_become(cluster, 0, 0, 0, 2));
  const std::string at = "--broker=" + cluster.endpoint();

  SUBCASE("list: a table with both tasks, their keys, arguments, attempts and errors") {
    const Ran list = fanout_tool({"deferred", "list", at, "--receipt", receipt});
    INFO(list.out << list.err);
    CHECK(list.exit_code == 0);
    CHECK(list.out.rfind("RECEIPT", 0) == 0);
    CHECK(count_of(list.out, "tool_test.always_fails") == 2);
    CHECK(list.out.find("first") != std::string::npos);
    CHECK(list.out.find("second") != std::string::npos);
    CHECK(list.out.find("task 1 failed on purpose") != std::string::npos);
    CHECK(list.out.find("task 2 failed on purpose") != std::string::npos);
    CHECK(count_of(list.out, "exception") == 2);
    // The arguments as decoded values (always_fails(1), always_fails(2)), not bytes.
    CHECK(list.out.find("ARGUMENTS") != std::string::npos);
    CHECK(list.out.find("  (1)  ") != std::string::npos);
    CHECK(list.out.find("  (2)  ") != std::string::npos);
    // Everywhere (no --receipt), from FANOUT_BROKER: the same two.
    const Ran everywhere = fanout_tool({"deferred", "list"}, {cluster.client_env()});
    CHECK(everywhere.exit_code == 0);
    CHECK(count_of(everywhere.out, "failed on purpose") == 2);
  }

  SUBCASE("list --json: one object per dead task") {
    const Ran list = fanout_tool({"deferred", "list", at, "--json"});
    INFO(list.out << list.err);
    REQUIRE(list.exit_code == 0);
    const auto document = nlohmann::json::parse(list.out);
    const auto& dead = document.at("dead");
    REQUIRE(dead.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
      const auto& task = dead.at(i);
      CHECK(task.at("receipt") == receipt);
      CHECK(task.at("index") == i);
      CHECK(task.at("task") == "tool_test.always_fails");
      CHECK(task.at("key") == (i == 0 ? "first" : "second"));
      CHECK(task.at("attempts").is_number_unsigned());
      CHECK(task.at("arguments") == "(" + std::to_string(i + 1) + ")");
      CHECK(task.at("error_kind") == "exception");
      CHECK(task.at("message") == "task " + std::to_string(i + 1) + " failed on purpose");
    }
  }

  SUBCASE("retry: back to pending with a fresh budget, then dead again") {
    // Without a worker the retried tasks stay pending, where status can see them.
    worker.reset();
    REQUIRE(cluster.wait_for_workers(0, 30s));
    const Ran retry = fanout_tool({"deferred", "retry", at, "--receipt", receipt});
    INFO(retry.out << retry.err);
    CHECK(retry.exit_code == 0);
    CHECK(retry.out.find("2 dead task(s) back in the queue") != std::string::npos);
    CHECK(status_of(cluster).find("deferred tasks: 2 pending, 0 running, 0 done, 0 dead") != std::string::npos);
    const Ran none = fanout_tool({"deferred", "list", at});
    CHECK(none.exit_code == 0);
    CHECK(none.out == "no dead deferred tasks\n");
    // Nothing dead is left to retry.
    CHECK(fanout_tool({"deferred", "retry", at, "--all"}).exit_code == 1);
    worker = start_worker(cluster);
    CHECK(deferred_become(cluster, 0, 0, 0, 2));
    CHECK(count_of(fanout_tool({"deferred", "list", at}).out, "failed on purpose") == 2);
  }

  SUBCASE("drop: one task, then all; then nothing is left to match") {
    const Ran one = fanout_tool({"deferred", "drop", at, "--receipt", receipt, "--index", "0"});
    INFO(one.out << one.err);
    CHECK(one.exit_code == 0);
    CHECK(one.out == "1 dead task(s) dropped\n");
    const Ran left = fanout_tool({"deferred", "list", at});
    CHECK(left.out.find("first") == std::string::npos);
    CHECK(left.out.find("second") != std::string::npos);
    const Ran all = fanout_tool({"deferred", "drop", at, "--all"});
    CHECK(all.exit_code == 0);
    CHECK(all.out == "1 dead task(s) dropped\n");
    CHECK(fanout_tool({"deferred", "list", at}).out == "no dead deferred tasks\n");
    const Ran again = fanout_tool({"deferred", "drop", at, "--all"});
    CHECK(again.exit_code == 1);
    CHECK(again.err.find("no dead task matched") != std::string::npos);
    CHECK(status_of(cluster).find("deferred tasks: 0 pending, 0 running, 0 done, 0 dead") != std::string::npos);
  }

  SUBCASE("an unknown receipt is an error naming it") {
    const Ran unknown = fanout_tool({"deferred", "list", at, "--receipt", "987654"});
    CHECK(unknown.exit_code == 3);
    CHECK(unknown.err.find("987654") != std::string::npos);
    CHECK(fanout_tool({"deferred", "retry", at, "--receipt", "not-a-receipt"}).exit_code == 3);
  }

  SUBCASE("usage: retry and drop say which tasks; --index needs --receipt") {
    const Ran unscoped = fanout_tool({"deferred", "retry", at});
    CHECK(unscoped.exit_code == 2);
    CHECK(unscoped.err.find("--all") != std::string::npos);
    CHECK(fanout_tool({"deferred", "drop", at, "--all", "--receipt", receipt}).exit_code == 2);
    CHECK(fanout_tool({"deferred", "list", at, "--index", "0"}).exit_code == 2);
    CHECK(fanout_tool({"deferred", "list", at, "--program", FANOUT_FAILING_PROGRAM}).exit_code == 2);
    // Nothing was touched.
    CHECK(count_of(fanout_tool({"deferred", "list", at}).out, "failed on purpose") == 2);
  }
}

TEST_CASE("a dead task is listed with every attempt it was given") {
  TempDir dir;
  fanout_test::Cluster cluster(broker_options(dir, true));
  auto worker = start_worker(cluster);
  REQUIRE(cluster.wait_for_workers(1, 30s));
  defer_batch({cluster.client_env()});
  REQUIRE(deferred_become(cluster, 0, 0, 0, 2));
  const Ran list = fanout_tool({"deferred", "list", "--broker", cluster.endpoint(), "--json"});
  REQUIRE(list.exit_code == 0);
  const auto dead = nlohmann::json::parse(list.out).at("dead");
  REQUIRE(dead.size() == 2);
  for (const auto& task : dead) CHECK(task.at("attempts") == 2);
}

TEST_CASE("fanout deferred without a broker that keeps a journal says why and exits non-zero") {
  TempDir dir;
  SUBCASE("a broker without --journal") {
    fanout_test::Cluster cluster(broker_options(dir, false));
    const Ran list = fanout_tool({"deferred", "list", "--broker", cluster.endpoint()});
    CHECK(list.exit_code == 3);
    CHECK(list.err.find("--journal") != std::string::npos);
  }
  SUBCASE("no broker answers") {
    const Ran list = fanout_tool({"deferred", "list", "--broker", "ipc://@fanout-test-nobody-" + std::to_string(::getpid()),
                             "--timeout-ms", "300"});
    CHECK(list.exit_code == 4);
    CHECK(list.err.find("no answer") != std::string::npos);
  }
  SUBCASE("neither --broker, FANOUT_BROKER nor --program") {
    const Ran list = fanout_tool({"deferred", "list"});
    CHECK(list.exit_code == 2);
    CHECK(list.err.find("--program") != std::string::npos);
  }
}

TEST_CASE("fanout deferred --program reaches a program's local service, starting it again when it has stopped") {
  TempDir dir;
  fanout_test::LocalServices services(dir.path());
  // The tool passes its environment to the service it starts: the same state directory.
  const std::vector<std::string> local{"XDG_STATE_HOME=" + dir.path().string(), "FANOUT_SERVICE_IDLE_MS=300"};
  const std::string program = std::string("--program=") + FANOUT_FAILING_PROGRAM;

  // Never deferred: no journal, nothing is started.
  const Ran never = fanout_tool({"deferred", "list", program}, local);
  CHECK(never.exit_code == 3);
  CHECK(never.err.find("no deferred tasks") != std::string::npos);
  CHECK(services.starts() == 0);
  CHECK(fanout_tool({"deferred", "list", "--program", (dir.path() / "no-such-program").string()}, local).exit_code == 2);

  const std::string receipt = defer_batch(local);
  INFO("service logs:\n" << services.logs());
  // The local service retries a task 3 times (the broker's default), then keeps it as dead.
  CHECK(eventually([&] { return count_of(fanout_tool({"deferred", "list", program}, local).out, "failed on purpose") == 2; },
                   60s));
  // Nobody waits for a deferred batch: its failures are told in the service's log, each attempt
  // and each death.
  CHECK(count_of(services.logs(), "failed (attempt 1 of 3), to be retried after a backoff: task 1 failed on purpose") == 1);
  CHECK(count_of(services.logs(), "failed (attempt 2 of 3), to be retried after a backoff: task 2 failed on purpose") == 1);
  CHECK(count_of(services.logs(), "is dead after 3 attempt(s): task") == 2);
  // Idle (dead tasks are not work), the service stops; the tool starts it again to answer.
  REQUIRE(eventually([&] { return !services.serving(); }, 30s));
  const Ran list = fanout_tool({"deferred", "list", program, "--json"}, local);
  INFO(list.err);
  REQUIRE(list.exit_code == 0);
  const auto dead = nlohmann::json::parse(list.out).at("dead");
  CHECK(dead.size() == 2);
  CHECK(dead.at(0).at("receipt") == receipt);
  CHECK(services.starts() == 2);
  const Ran drop = fanout_tool({"deferred", "drop", program, "--all"}, local);
  CHECK(drop.exit_code == 0);
  CHECK(drop.out == "2 dead task(s) dropped\n");
  CHECK(fanout_tool({"deferred", "list", program}, local).out == "no dead deferred tasks\n");
  REQUIRE(eventually([&] { return !services.serving(); }, 30s));

  // A service that stops holds its journal's lock a moment after it stopped answering, and a
  // service started in that moment gives way ("not starting"). The tool then starts another
  // rather than wait its whole start limit (20 s) for one that will never answer. Here a broker
  // holds the lock until the first service started has given way.
  std::vector<std::filesystem::path> journals;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path() / "fanout")) journals.push_back(entry.path() / "journal");
  REQUIRE(journals.size() == 1);
  fanout_test::BrokerProcess holder({"--journal", journals[0].string()});
  fanout_test::Child late({FANOUT_TOOL_PROGRAM, "deferred", "list", program}, {.env = local, .drop_env = {"FANOUT_"}});
  REQUIRE(eventually([&] { return count_of(services.logs(), "not starting") >= 1; }, 30s));
  holder.kill();
  CHECK(late.finish(15s) == 0);
  CHECK(late.out() == "no dead deferred tasks\n");
  CHECK(eventually([&] { return !services.serving(); }, 30s));
}
