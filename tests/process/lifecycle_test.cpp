// Local mode from outside: what happens to workers when their program dies, and to programs
// that forgot fanout::init.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "child.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;

TEST_CASE("a program without fanout::init gets a clear error from the process driver") {
  fanout_test::ScopedEnv local("FANOUT_BROKER", nullptr);
  const auto output = fanout_test::run_to_end({FANOUT_FORGOT_INIT_PROGRAM}, {.merge_output = true});
  CHECK(WIFEXITED(output.status));
  CHECK(WEXITSTATUS(output.status) == 0);
  CHECK(output.out.find("refused:") != std::string::npos);
  CHECK(output.out.find("fanout::init(argc, argv)") != std::string::npos);
}

TEST_CASE("a re-executed worker that never reaches fanout::init stops instead of spawning workers") {
  fanout_test::ScopedEnv worker("FANOUT_LOCAL_WORKER", "ipc://@fanout-test-nobody-listens");
  const auto output = fanout_test::run_to_end({FANOUT_FORGOT_INIT_PROGRAM}, {.merge_output = true});
  CHECK(WIFEXITED(output.status));
  CHECK(WEXITSTATUS(output.status) == 70);
  CHECK(output.out.find("never called fanout::init") != std::string::npos);
}

TEST_CASE("killing a program with SIGKILL takes its local workers with it") {
  // Its stdout read line by line: the pids of its workers, then "ready".
  fanout_test::Child victim({FANOUT_VICTIM_PROGRAM}, {.drop_env = {"FANOUT_BROKER="}});
  std::vector<pid_t> pids;
  while (auto line = victim.read_line(60s)) {
    if (*line == "ready") break;
    if (!line->empty() && line->find_first_not_of("0123456789") == std::string::npos) pids.push_back(std::stoi(*line));
  }
  REQUIRE(pids.size() >= 2);  // the worker supervisor and at least one executor
  for (const pid_t pid : pids) CHECK(fanout_test::process_alive(pid));
  victim.signal(SIGKILL);  // the program alone, not its process group: its workers must follow by themselves
  victim.wait_exit();
  for (const pid_t pid : pids) {
    CAPTURE(pid);
    // Gone, or a zombie waiting for init to reap it: either way it runs nothing any more.
    CHECK(fanout_test::eventually([&] { return fanout_test::process_ended(pid); }));
  }
}

TEST_CASE("getting the process driver starts the local pool before any batch, and it dies with the program") {
  fanout_test::Child program({FANOUT_VICTIM_PROGRAM, "--driver-only"}, {.drop_env = {"FANOUT_BROKER="}});
  REQUIRE(program.wait_for_line("ready", 60s).has_value());
  // Its worker (this program re-executed) and the worker's executors, with no batch sent.
  std::vector<pid_t> workers;
  REQUIRE(fanout_test::eventually(
      [&] {
        workers = fanout_test::children_of(program.pid());
        return workers.size() == 1 && !fanout_test::children_of(workers.front()).empty();
      },
      60s));
  const std::vector<pid_t> executors = fanout_test::children_of(workers.front());
  program.signal(SIGKILL);
  program.wait_exit();
  CHECK(fanout_test::eventually([&] { return fanout_test::process_ended(workers.front()); }));
  for (const pid_t pid : executors) {
    CAPTURE(pid);
    CHECK(fanout_test::eventually([&] { return fanout_test::process_ended(pid); }));
  }
}
