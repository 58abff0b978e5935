// worker::run as local mode uses it (fanout::init in a program the process driver started): the
// worker must not outlive the process that started it. Driven in-process: the test forks a
// stand-in for that process, which forks the worker.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include <fanout/worker/worker.hpp>

#include "child.hpp"
#include "test_support.hpp"
#include "worker_harness.hpp"

using namespace fanout_test;

namespace {

// Forks a process that forks a worker running `config` (its expected_parent filled in) and then
// waits: for the worker's exit, whose code it exits with, or for its own death. The worker is
// the stand-in's own child, as in local mode: what the test checks is that it notices the
// stand-in's death by itself.
Child start_parent_of_worker(fanout::worker::Config config) {
  return Child::fork([config]() mutable {
    config.expected_parent = config.expected_parent != 0 ? config.expected_parent : ::getpid();
    const pid_t worker = ::fork();
    if (worker == 0) {
      int code = fanout::worker::kExitFailure;
      try {
        code = fanout::worker::run(config);
      } catch (...) {
      }
      ::_exit(code);
    }
    int status = 0;
    while (::waitpid(worker, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  });
}

}  // namespace

TEST_CASE("with exit_with_parent, a worker and its executors die with the process that started it") {
  become_subreaper();  // the orphaned worker and executor come back here to be reaped
  TempDir directory;
  const std::string endpoint = "ipc://" + (directory.path() / "broker").string();
  fanout::worker::Config config;
  config.broker = endpoint;
  config.processes = 1;
  config.exit_with_parent = true;
  // Forked before the fake broker starts its thread: a fork while another thread holds a lock
  // (ZeroMQ's, the sanitizers') can leave the child stuck. The worker's socket connects to the
  // ipc endpoint once the broker below binds it.
  Child parent = start_parent_of_worker(config);
  FakeBroker broker(endpoint);

  const Received* supervisor = broker.take(supervisor_announce());
  REQUIRE(supervisor != nullptr);
  const Received* executor = broker.take(executor_announce());
  REQUIRE(executor != nullptr);
  const pid_t worker_pid = supervisor->envelope().getAnnounce().getPid();
  const pid_t executor_pid = executor->envelope().getAnnounce().getPid();
  CHECK(parent_of(worker_pid) == parent.pid());

  parent.signal(SIGKILL);  // the stand-in alone: the worker must notice by itself
  parent.wait_exit();
  CHECK(eventually([&] { return process_ended(worker_pid); }));
  CHECK(eventually([&] { return process_ended(executor_pid); }));
  reap_orphans();
}

TEST_CASE("with exit_with_parent, a worker whose starter is already gone exits at once") {
  fanout::worker::Config config;
  config.broker = "ipc:///nonexistent/fanout-broker";
  config.processes = 1;
  config.exit_with_parent = true;
  config.expected_parent = 1;  // never the parent here: as if the real one had died and we were adopted
  Child parent = start_parent_of_worker(config);
  const int status = parent.wait_exit().value_or(-1);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == fanout::worker::kExitFailure);
}
