// sys::spawn: a command in a process group of its own, plain or under a guardian. Both look the
// same to their owner (exit code, death by a signal, a command that cannot start); only a guarded
// one is sure to die when its owner is SIGKILLed.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "child.hpp"
#include "system/child_process.hpp"
#include "system/descriptors.hpp"
#include "system/spawn.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace {

// `script` run by /bin/sh -c, guarded or not; stdout onto `out` when given.
fanout::sys::Spawned spawn_shell(const std::string& script, bool guarded, int out = -1) {
  std::vector<char*> argv{const_cast<char*>("/bin/sh"), const_cast<char*>("-c"), const_cast<char*>(script.c_str()), nullptr};
  fanout::sys::SpawnPlan plan;
  plan.file = "/bin/sh";
  plan.argv = argv.data();
  plan.envp = environ;
  plan.stdout_fd = out;
  plan.dies_with_parent = guarded;
  return fanout::sys::spawn(plan);
}

}  // namespace

TEST_CASE("a spawned command's end reaches its owner as it happened, plain or guarded") {
  for (const bool guarded : {false, true}) {
    CAPTURE(guarded);
    const auto exits = spawn_shell("exit 7", guarded);
    REQUIRE(exits.pid > 0);
    const int exit_status = fanout::sys::ChildProcess(exits.pid).wait();
    CHECK(WIFEXITED(exit_status));
    CHECK(WEXITSTATUS(exit_status) == 7);

    const auto killed = spawn_shell("kill -USR1 $$", guarded);
    REQUIRE(killed.pid > 0);
    const int signal_status = fanout::sys::ChildProcess(killed.pid).wait();
    CHECK(WIFSIGNALED(signal_status));
    CHECK(WTERMSIG(signal_status) == SIGUSR1);

    // The group is the owner's to signal: what the command started in it gets the signal too.
    const auto group = spawn_shell("sleep 30 & wait", guarded);
    REQUIRE(group.pid > 0);
    fanout::sys::ChildProcess leader(group.pid);
    leader.signal_group(SIGTERM);
    const int group_status = leader.wait();
    CHECK(WIFSIGNALED(group_status));
    CHECK(WTERMSIG(group_status) == SIGTERM);
  }
}

TEST_CASE("a command that cannot start is reported with the reason, and leaves no process") {
  for (const bool guarded : {false, true}) {
    CAPTURE(guarded);
    const int before = fanout_test::child_count();
    std::vector<char*> argv{const_cast<char*>("fanout-no-such-command"), nullptr};
    fanout::sys::SpawnPlan plan;
    plan.file = "fanout-no-such-command";
    plan.search_path = true;
    plan.argv = argv.data();
    plan.envp = environ;
    plan.dies_with_parent = guarded;
    const auto spawned = fanout::sys::spawn(plan);
    CHECK(spawned.pid == -1);
    CHECK(spawned.error == ENOENT);

    plan.file = "/bin/true";
    plan.search_path = false;
    plan.directory = "/nonexistent-directory-of-fanout";
    const auto nowhere = fanout::sys::spawn(plan);
    CHECK(nowhere.pid == -1);
    CHECK(nowhere.error == ENOENT);
    CHECK(fanout_test::child_count() == before);
  }
}

TEST_CASE("a guarded command and what it started die when their owner is SIGKILLed; a plain one lives on") {
  fanout_test::become_subreaper();  // the orphans come back here, to be seen ending and reaped
  for (const bool guarded : {true, false}) {
    CAPTURE(guarded);
    // The owner: a process that spawns `sleep & echo pids; wait` and waits too.
    auto owner = fanout_test::Child::fork([guarded] {
      const auto spawned = spawn_shell("sleep 60 & echo $$ $!; wait", guarded, STDOUT_FILENO);
      if (spawned.pid < 0) return 1;
      ::pause();
      return 0;
    });
    const auto line = owner.read_line(20s);
    REQUIRE(line);
    pid_t shell = 0;
    pid_t background = 0;
    REQUIRE(std::sscanf(line->c_str(), "%d %d", &shell, &background) == 2);
    ::kill(owner.pid(), SIGKILL);  // the owner alone, not its group
    const auto ended = [&] { return fanout_test::process_ended(shell) && fanout_test::process_ended(background); };
    if (guarded) {
      CHECK(fanout_test::eventually(ended, 10s));
    } else {
      // Nothing watches a plain command: it runs on (its owner's owner has to kill the group).
      CHECK_FALSE(fanout_test::eventually(ended, 300ms));
      ::kill(-shell, SIGKILL);
    }
    owner.kill();
    fanout_test::reap_orphans();
  }
}
