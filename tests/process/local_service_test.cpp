// Deferred batches in local mode: a program defers a task and exits at once; the task still runs,
// in the program's local service, which then stops itself once idle.
#include <doctest/doctest.h>

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "child.hpp"
#include "local_services.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;

namespace {

// The deferring program, run to its end: it defers a task that waits for `go`, then writes `done`.
fanout_test::Finished defer_and_exit(const std::filesystem::path& go, const std::filesystem::path& done) {
  return fanout_test::run_to_end({FANOUT_DEFERRING_PROGRAM, go.string(), done.string()}, {.merge_output = true});
}

}  // namespace

TEST_CASE("a program that exits right after defer still has its task run, by its local service") {
  fanout_test::TempDir dir;
  fanout_test::ScopedEnv state("XDG_STATE_HOME", dir.path().c_str());
  fanout_test::ScopedEnv idle("FANOUT_SERVICE_IDLE_MS", "500");
  fanout_test::ScopedEnv no_broker("FANOUT_BROKER", nullptr);
  const auto go = dir.path() / "go";
  const auto done = dir.path() / "done";
  const fanout_test::LocalServices services(dir.path());

  const auto caller = defer_and_exit(go, done);
  INFO(caller.out);
  REQUIRE(caller.status == 0);
  CHECK_FALSE(caller.out.empty());  // the receipt
  // The caller is gone; the task has not run yet (it waits for `go`).
  CHECK_FALSE(std::filesystem::exists(done));
  std::ofstream(go) << "";
  CHECK(fanout_test::eventually([&] { return std::filesystem::exists(done); }, 30s));
  // Idle again, the service stops itself.
  CHECK(fanout_test::eventually([&] { return !services.serving(); }, 30s));
}

TEST_CASE("a deferred task survives a SIGKILL of the local service and runs after it restarts") {
  fanout_test::TempDir dir;
  fanout_test::ScopedEnv state("XDG_STATE_HOME", dir.path().c_str());
  fanout_test::ScopedEnv idle("FANOUT_SERVICE_IDLE_MS", "500");
  fanout_test::ScopedEnv no_broker("FANOUT_BROKER", nullptr);
  const auto go = dir.path() / "go2";
  const auto done = dir.path() / "done2";
  const fanout_test::LocalServices services(dir.path());
  const auto first = defer_and_exit(go, done);
  REQUIRE(first.status == 0);
  // Kill the service (its workers die with it) while the task waits.
  REQUIRE(fanout_test::eventually([&] { return services.serving(); }, 10s));
  const pid_t service = services.latest_pid();
  REQUIRE(service > 0);
  ::kill(service, SIGKILL);
  CHECK(fanout_test::eventually([&] { return fanout_test::process_ended(service); }, 10s));
  CHECK_FALSE(std::filesystem::exists(done));
  // The next defer (of anything) starts the service again; its journal brings the first task back.
  std::ofstream(go) << "";
  const auto other = dir.path() / "done3";
  const auto second = defer_and_exit(go, other);
  REQUIRE(second.status == 0);
  CHECK(fanout_test::eventually([&] { return std::filesystem::exists(done) && std::filesystem::exists(other); }, 30s));
  CHECK(fanout_test::eventually([&] { return !services.serving(); }, 30s));
}
