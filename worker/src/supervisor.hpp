// supervisor.hpp: the worker's supervisor process: forks and replaces executors, speaks for them
// to the broker (announce, heartbeat, executorLost, stopExecutor, bye) and drains on SIGTERM.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>

#include <fanout/worker/worker.hpp>

namespace fanout::worker {

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
