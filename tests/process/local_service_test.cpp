// Deferred batches in local mode: a program defers a task and exits at once; the task still runs,
// in the program's local service, which then stops itself once idle.
#include <doctest/doctest.h>

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "../unit/test_support.hpp"

using namespace std::chrono_literals;

namespace {

bool service_answers(const std::string& state_dir) {
  // The service's log says when it serves and when it stops; its journal lock is held meanwhile.
  const auto log = fanout_test::run_capturing("cat '" + state_dir + "'/fanout/*/service.log 2>/dev/null").text;
  const auto serving = log.rfind("serving");
  const auto stopping = log.rfind("stopping");
  return serving != std::string::npos && (stopping == std::string::npos || stopping < serving);
}

// The pid in the service's latest "serving" line.
pid_t service_pid(const std::string& state_dir) {
  const auto log = fanout_test::run_capturing("cat '" + state_dir + "'/fanout/*/service.log 2>/dev/null").text;
  const auto at = log.rfind("fanout service pid ");
  if (at == std::string::npos) return 0;
  return static_cast<pid_t>(std::stol(log.substr(at + 19)));
}

// Running (a zombie is not: nobody may reap the orphaned service here).
bool running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 && line[close + 2] != 'Z';
}

}  // namespace

TEST_CASE("a program that exits right after defer still has its task run, by its local service") {
  fanout_test::TempDir dir;
  fanout_test::ScopedEnv state("XDG_STATE_HOME", dir.path().c_str());
  fanout_test::ScopedEnv idle("FANOUT_SERVICE_IDLE_MS", "500");
  fanout_test::ScopedEnv no_broker("FANOUT_BROKER", nullptr);
  const auto go = dir.path() / "go";
  const auto done = dir.path() / "done";

  const auto caller = fanout_test::run_capturing(std::string(FANOUT_DEFERRING_PROGRAM) + " '" + go.string() + "' '" +
                                                 done.string() + "'");
  INFO(caller.text);
  REQUIRE(caller.status == 0);
  CHECK_FALSE(caller.text.empty());  // the receipt
  // The caller is gone; the task has not run yet (it waits for `go`).
  CHECK_FALSE(std::filesystem::exists(done));
  std::ofstream(go) << "";
  CHECK(fanout_test::eventually([&] { return std::filesystem::exists(done); }, 30s));
  // Idle again, the service stops itself.
  CHECK(fanout_test::eventually([&] { return !service_answers(dir.path().string()); }, 30s));
}

TEST_CASE("a deferred task survives a SIGKILL of the local service and runs after it restarts") {
  fanout_test::TempDir dir;
  fanout_test::ScopedEnv state("XDG_STATE_HOME", dir.path().c_str());
  fanout_test::ScopedEnv idle("FANOUT_SERVICE_IDLE_MS", "500");
  fanout_test::ScopedEnv no_broker("FANOUT_BROKER", nullptr);
  const auto go = dir.path() / "go2";
  const auto done = dir.path() / "done2";
  const auto first = fanout_test::run_capturing(std::string(FANOUT_DEFERRING_PROGRAM) + " '" + go.string() + "' '" +
                                                done.string() + "'");
  REQUIRE(first.status == 0);
  // Kill the service (its workers die with it) while the task waits.
  REQUIRE(fanout_test::eventually([&] { return service_answers(dir.path().string()); }, 10s));
  const pid_t service = service_pid(dir.path().string());
  REQUIRE(service > 0);
  ::kill(service, SIGKILL);
  CHECK(fanout_test::eventually([&] { return !running(service); }, 10s));
  CHECK_FALSE(std::filesystem::exists(done));
  // The next defer (of anything) starts the service again; its journal brings the first task back.
  std::ofstream(go) << "";
  const auto other = dir.path() / "done3";
  const auto second = fanout_test::run_capturing(std::string(FANOUT_DEFERRING_PROGRAM) + " '" + go.string() + "' '" +
                                                 other.string() + "'");
  REQUIRE(second.status == 0);
  CHECK(fanout_test::eventually([&] { return std::filesystem::exists(done) && std::filesystem::exists(other); }, 30s));
  CHECK(fanout_test::eventually([&] { return !service_answers(dir.path().string()); }, 30s));
}
