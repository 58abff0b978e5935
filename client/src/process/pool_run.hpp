// pool_run.hpp: the engine behind a started pool. PoolRun keeps the results and answers wait();
// a LocalRun runs the processes here on a thread of its own, a RemoteRun sends them to a broker.
// Either way the engine's thread enforces timeouts and delivers output, whether or not the caller
// is in wait().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <fanout/process.hpp>

namespace fanout::detail {

class PoolRun {
 public:
  PoolRun(std::vector<ProcessSpec> specs, OutputCallback output);
  virtual ~PoolRun();
  PoolRun(const PoolRun&) = delete;
  PoolRun& operator=(const PoolRun&) = delete;

  virtual std::vector<std::string> running() const = 0;
  virtual void signal(int signal) = 0;
  // Starts nothing more and stops what runs (TERM, KILL after `grace`); returns at once.
  virtual void request_stop(std::chrono::milliseconds grace) = 0;

  std::size_t pending() const;
  // Blocks until every process settled. Rethrows what the output callback threw, if it did.
  PoolResults wait();
  bool wait_for(std::chrono::milliseconds limit);

 protected:
  // From the engine's thread: the outcome of process `index`.
  void settle(std::size_t index, ProcessOutcome outcome);
  // From the engine's thread: hands a chunk to the caller's callback. A callback that throws is
  // not called again; wait() rethrows its exception.
  void deliver(OutputType type, std::string_view text, std::size_t index);
  bool all_settled() const;

  const std::vector<ProcessSpec> specs_;

 private:
  OutputCallback output_;
  std::exception_ptr callback_error_;  // only touched by the engine's thread until it settles all
  mutable std::mutex mutex_;
  std::condition_variable settled_cv_;
  std::vector<std::optional<ProcessResult>> results_;
  std::size_t settled_ = 0;
};

// Runs every process on this machine; at most `concurrency` at once (0: all).
std::unique_ptr<PoolRun> start_local(std::vector<ProcessSpec> specs, std::size_t concurrency, OutputCallback output);

// Runs every process on the workers behind the broker at `endpoint` (workers with --allow-shell).
std::unique_ptr<PoolRun> start_remote(std::vector<ProcessSpec> specs, std::size_t concurrency, OutputCallback output,
                                      const std::string& endpoint);

}  // namespace fanout::detail
