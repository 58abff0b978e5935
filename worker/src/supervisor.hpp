// supervisor.hpp: the worker's supervisor process: forks and replaces executors, speaks for them
// to the broker (announce, heartbeat, executorLost, stopExecutor, bye) and drains on SIGTERM.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>

#include "worker.hpp"

namespace fanout::worker {

// A forked child process, owned: the destructor kills it (with its process group) and reaps it
// unless it was reaped already. Move-only.
class ChildProcess {
 public:
  ChildProcess() noexcept = default;
  explicit ChildProcess(pid_t pid) noexcept : pid_(pid) {}
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const noexcept { return pid_; }
  bool running() const noexcept { return pid_ > 0; }

  // Sends `signal` to the process (and, for SIGKILL, to its whole group, which is what a task
  // may have started).
  void signal(int signal) const noexcept;

  // When the process has ended: kills what is left of its group, reaps it, stores its wait status
  // in `status` and returns true. Returns false at once while it runs.
  bool try_reap(int& status) noexcept;

 private:
  void kill_and_reap() noexcept;

  pid_t pid_ = -1;
};

class Supervisor {
 public:
  // `config` is complete (run() fills in defaults); task libraries are already loaded.
  explicit Supervisor(const Config& config);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Forks the executors, connects and serves until drained; returns the exit code.
  int run();

  class State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace fanout::worker
