// job_engine.hpp: what runs the jobs of `fanout run`, here or on remote workers, driven by the
// tool's one poll loop (run_loop.cpp).
//
// The loop starts jobs one at a time as slots free up (so input streams through and memory stays
// bounded by the jobs in flight, whatever the number of input lines), and learns of each job's
// output and end through two callbacks called from inside handle(), on the loop's thread.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fanout/process.hpp>

namespace fanout::tool {

// One job as the loop hands it to an engine.
struct JobSpec {
  std::string command;                 // a shell line (/bin/sh -c)
  std::chrono::milliseconds timeout{0};  // 0: none
  std::optional<std::string> input;    // its stdin (--pipe); unset: /dev/null
  std::string avoid_worker;            // remote retries: the worker it failed on, if another can run it
};

class JobEngine {
 public:
  using Clock = std::chrono::steady_clock;
  // Output of job `seq` as it arrives (chunks, not lines).
  using OnOutput = std::function<void(std::size_t seq, OutputType type, std::string_view text)>;
  // Job `seq` has ended, or could not start; called once per start().
  using OnFinished = std::function<void(std::size_t seq, ProcessResult result)>;

  virtual ~JobEngine() = default;

  // Starts job `seq` now. The caller keeps at most the engine's concurrency running; a `seq` may
  // start again once it has finished (--retries).
  virtual void start(std::size_t seq, JobSpec job) = 0;
  virtual std::size_t running() const = 0;
  // TERM to job `seq`'s process group now, KILL after `grace`; its end still comes through
  // OnFinished. False when this engine cannot stop one job alone (remote jobs).
  virtual bool stop(std::size_t seq, std::chrono::milliseconds grace) = 0;
  // TERM to every running job, KILL after `grace`; their ends still come through OnFinished.
  virtual void stop_all(std::chrono::milliseconds grace) = 0;
  // Adds the descriptors to watch to `fds` (after those already there); returns the engine's
  // next deadline.
  virtual Clock::time_point prepare(std::vector<pollfd>& fds) = 0;
  // After poll(): handles the engine's entries and deadlines, calling the callbacks.
  virtual void handle(const std::vector<pollfd>& fds) = 0;
};

// Jobs as children of this process (`/bin/sh -c command`), each in a process group of its own,
// through the same ChildTable that runs local Process pools. `stream_output`: call OnOutput with
// every chunk (otherwise output is only in the result).
std::unique_ptr<JobEngine> local_engine(JobEngine::OnOutput on_output, JobEngine::OnFinished on_finished,
                                        bool stream_output);

// Variables sent with every remote job (--env): a value sets, nullopt unsets.
using RemoteEnvironment = std::vector<std::pair<std::string, std::optional<std::string>>>;

// Jobs as shell tasks on the workers behind `broker` (workers started with --allow-shell), all
// through one remote session (one connection, one thread, one broker batch) whose broker runs at
// most `concurrency` at once (0: no limit). The loop may hand over more than that: the ones beyond
// wait at the broker, which starts each as soon as a running one ends (no round trip to this
// process), so running() counts jobs handed over and not finished, started or not. stop_all()
// cancels them all at once, the queued ones too (they end as failed, never having run); remote
// jobs get no grace. A broker that cannot be reached or loses the jobs makes handle() throw
// fanout::Error.
std::unique_ptr<JobEngine> remote_engine(JobEngine::OnOutput on_output, JobEngine::OnFinished on_finished,
                                         bool stream_output, std::string broker, std::size_t concurrency,
                                         RemoteEnvironment environment);

}  // namespace fanout::tool
