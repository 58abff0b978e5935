// worker::run as local mode uses it (fanout::init in a program the process driver started): the
// worker must not outlive the process that started it. Driven in-process: the test forks a
// stand-in for that process, which forks the worker.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "test_support.hpp"
#include <fanout/worker/worker.hpp>
#include "worker_harness.hpp"

using namespace fanout_test;

namespace {

// Forks a process that forks a worker running `config` (its expected_parent filled in) and then
// waits: for the worker's exit, whose code it exits with, or for its own death.
pid_t start_parent_of_worker(fanout::worker::Config config) {
  const pid_t parent = ::fork();
  if (parent != 0) return parent;
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
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128);
}

// Kills and reaps a child of the test, also when a check failed.
struct ReapedChild {
  pid_t pid;
  ~ReapedChild() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  int wait() {
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    return status;
  }
};

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
  ReapedChild parent{start_parent_of_worker(config)};
  FakeBroker broker(endpoint);

  const Received* supervisor = broker.take(supervisor_announce());
  REQUIRE(supervisor != nullptr);
  const Received* executor = broker.take(executor_announce());
  REQUIRE(executor != nullptr);
  const pid_t worker_pid = supervisor->envelope().getAnnounce().getPid();
  const pid_t executor_pid = executor->envelope().getAnnounce().getPid();
  CHECK(parent_of(worker_pid) == parent.pid);

  ::kill(parent.pid, SIGKILL);
  parent.wait();
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
  ReapedChild parent{start_parent_of_worker(config)};
  const int status = parent.wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == fanout::worker::kExitFailure);
}
