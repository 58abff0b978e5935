// fanout/process.hpp: shell commands at once, here or on remote workers (Laravel's Process and
// Process::pool, in C++).
//
//   auto result = fanout::Process::run("ls -la");                      // one command, waits
//   auto result = fanout::Process::timeout(5s).path("/tmp").run({"ls", "-la"});
//
//   auto pool = fanout::Process::pool([](fanout::Pool& pool) {
//     pool.as("first").command("bash import-1.sh");
//     pool.as("second").command({"rsync", "-a", "src/", "dst/"}).timeout(60s);
//   }).concurrency(4).start([](fanout::OutputType type, std::string_view text, const std::string& key) {
//     std::cout << key << ": " << text;
//   });
//   fanout::PoolResults results = pool.wait();
//   results["first"].throw_if_failed();
//
// A string command runs through `/bin/sh -c`; an argv list is executed directly, with no shell.
// Every process runs in a process group of its own: a timeout, signal() or stop() reaches the
// whole group (a shell's children too). One failure or timeout never stops the others; a command
// that cannot start gives a failed result (exit code 127 or 126 and a message in error_output()),
// never an exception from the middle of a pool.
//
// Remote pools: `.broker("tcp://host:5555")` (or FANOUT_PROCESS_BROKER) runs the same pool on
// workers started with `fanout-worker --allow-shell`; output streams back live under each key, and
// timeouts are enforced on the worker. A worker without --allow-shell never runs a shell command:
// the command fails with a message that says so.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <deque>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fanout/command.hpp>
#include <fanout/error.hpp>

namespace fanout {

// Live output: called with each chunk as it arrives (not split into lines), with the key of the
// process that wrote it. Calls come from the pool's own thread, one at a time; the callback must
// not block for long (it delays every process of the pool) and must not wait() on its own pool.
using OutputCallback = std::function<void(OutputType type, std::string_view text, const std::string& key)>;

namespace detail {

template <class Rep, class Period>
std::chrono::milliseconds to_ms(std::chrono::duration<Rep, Period> d) {
  return std::chrono::ceil<std::chrono::milliseconds>(d);
}

class PoolRun;  // the engine behind a started pool (src/process/)

}  // namespace detail

// The outcome of one process.
class ProcessResult {
 public:
  ProcessResult() = default;
  ProcessResult(std::string key, ProcessCommand command, detail::ProcessOutcome outcome)
      : key_(std::move(key)), command_(std::move(command)), outcome_(std::move(outcome)) {}

  bool successful() const noexcept { return outcome_.exit_code == 0 && !outcome_.timed_out; }
  bool failed() const noexcept { return !successful(); }
  // The exit status; 128+N for a process ended by signal N (a timed-out one too); 127 when the
  // command was not found and 126 when it could not be started otherwise.
  int exit_code() const noexcept { return outcome_.exit_code; }
  int signal() const noexcept { return outcome_.signal; }  // 0 unless a signal ended it
  bool timed_out() const noexcept { return outcome_.timed_out; }
  bool idle_timed_out() const noexcept { return outcome_.idle_timed_out; }
  const std::string& output() const noexcept { return outcome_.output; }
  const std::string& error_output() const noexcept { return outcome_.error_output; }
  bool see_in_output(std::string_view text) const noexcept { return output().find(text) != std::string::npos; }
  bool see_in_error_output(std::string_view text) const noexcept {
    return error_output().find(text) != std::string::npos;
  }
  std::string command() const { return command_.to_string(); }
  const std::string& key() const noexcept { return key_; }
  const std::string& ran_on() const noexcept { return outcome_.ran_on; }
  std::chrono::microseconds elapsed() const noexcept { return outcome_.elapsed; }

  // Throws ProcessFailed when the process failed; returns *this otherwise, for chaining.
  const ProcessResult& throw_if_failed() const;

 private:
  std::string key_;
  ProcessCommand command_{std::vector<std::string>{}};
  detail::ProcessOutcome outcome_;
};

// Thrown by throw_if_failed(). what() holds the command, the exit code, then "Output:" and
// "Error Output:" sections (as Laravel's ProcessFailedException).
class ProcessFailed : public Error {
 public:
  explicit ProcessFailed(ProcessResult result);
  const ProcessResult& result() const noexcept { return result_; }

 private:
  ProcessResult result_;
};

// Every result of a pool, in the order the processes were added; by position or by key.
class PoolResults {
 public:
  PoolResults() = default;
  explicit PoolResults(std::vector<ProcessResult> results) : results_(std::move(results)) {}

  std::size_t size() const noexcept { return results_.size(); }
  bool empty() const noexcept { return results_.empty(); }
  // By position (any integer type: results[0] must not read as a null key).
  template <std::integral Position>
  const ProcessResult& operator[](Position position) const {
    return results_.at(static_cast<std::size_t>(position));
  }
  // Throws std::out_of_range naming the key when no process has it.
  const ProcessResult& operator[](std::string_view key) const;
  const ProcessResult& operator[](const char* key) const { return (*this)[std::string_view(key)]; }
  bool contains(std::string_view key) const noexcept;
  auto begin() const noexcept { return results_.begin(); }
  auto end() const noexcept { return results_.end(); }
  bool successful() const noexcept;  // every process succeeded
  bool failed() const noexcept { return !successful(); }
  std::vector<std::string> keys() const;

 private:
  std::vector<ProcessResult> results_;
};

class InvokedProcess;
class InvokedPool;

// How to run one process; every setter returns *this. Made by Process::timeout(...) and friends,
// or by Pool::as / Pool::command inside a pool builder.
class PendingProcess {
 public:
  PendingProcess() = default;

  PendingProcess& command(ProcessCommand command);
  PendingProcess& as(std::string key);
  // Killed (TERM to its process group, KILL 200 ms later) when it runs longer than this.
  template <class Rep, class Period>
  PendingProcess& timeout(std::chrono::duration<Rep, Period> limit) {
    spec_.timeout = detail::to_ms(limit);
    return *this;
  }
  // Killed the same way after this long without any output.
  template <class Rep, class Period>
  PendingProcess& idle_timeout(std::chrono::duration<Rep, Period> limit) {
    spec_.idle_timeout = detail::to_ms(limit);
    return *this;
  }
  PendingProcess& forever();  // no timeout, no idle timeout (the default)
  PendingProcess& path(std::string working_directory);
  PendingProcess& env(std::string name, std::string value);
  PendingProcess& env(const std::map<std::string, std::string>& variables);
  PendingProcess& without_env(std::string name);  // removes an inherited variable
  PendingProcess& input(std::string data);        // any string, "" and "0" included
  PendingProcess& quietly();
  // Runs on the remote workers of this broker instead of here.
  PendingProcess& broker(std::string endpoint);

  // Runs the command given (or set before) and waits for it.
  ProcessResult run() const;
  ProcessResult run(ProcessCommand command) const;
  InvokedProcess start(OutputCallback output = {}) const;
  InvokedProcess start(ProcessCommand command, OutputCallback output = {}) const;

  const detail::ProcessSpec& spec() const noexcept { return spec_; }
  const std::string& broker_endpoint() const noexcept { return broker_; }

 private:
  detail::ProcessSpec spec_;
  std::string broker_;
};

// Handed to the builder of Process::pool: each as(key) or command(...) adds one process.
class Pool {
 public:
  PendingProcess& as(std::string key);
  PendingProcess& command(ProcessCommand command);
  // Adds a process configured like `process` (e.g. one from Process::timeout(...)).
  PendingProcess& add(PendingProcess process = {});
  std::size_t size() const noexcept { return processes_.size(); }

 private:
  friend class PendingPool;
  std::deque<PendingProcess> processes_;  // a deque: references handed out stay valid
};

// A pool built but not started.
class PendingPool {
 public:
  explicit PendingPool(const std::function<void(Pool&)>& build);

  // At most `limit` processes run at once; 0 (the default): all of them.
  PendingPool& concurrency(std::size_t limit);
  // Runs every process on the remote workers of this broker.
  PendingPool& broker(std::string endpoint);

  InvokedPool start(OutputCallback output = {}) const;
  PoolResults wait() const;  // start(), then wait()

 private:
  std::vector<detail::ProcessSpec> specs_;
  std::size_t concurrency_ = 0;
  std::string broker_;
};

// A started pool. Move-only. Destroying it stops what still runs (TERM to each process group,
// KILL after `stop`'s default grace) and reaps every child: nothing is left running.
class InvokedPool {
 public:
  explicit InvokedPool(std::unique_ptr<detail::PoolRun> run);
  ~InvokedPool();
  InvokedPool(InvokedPool&&) noexcept;
  InvokedPool& operator=(InvokedPool&&) noexcept;

  // Keys of the processes running now, in pool order.
  std::vector<std::string> running() const;
  // Processes not finished yet (running or waiting for a free slot).
  std::size_t pending() const;
  // Sends `signal` to the process group of every running process.
  void signal(int signal);
  // Starts nothing more; sends TERM to what runs and KILL to what is left after `grace`, then
  // waits. Processes that never started get a failed result ("stopped before it started").
  PoolResults stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // Waits for every process; may be called again (it returns the same results).
  PoolResults wait();
  // Waits at most `limit`; true when every process has finished.
  bool wait_for(std::chrono::milliseconds limit);

 private:
  std::unique_ptr<detail::PoolRun> run_;
};

// One started process: a pool of one.
class InvokedProcess {
 public:
  explicit InvokedProcess(InvokedPool pool) : pool_(std::move(pool)) {}

  bool running() const { return !pool_.running().empty(); }
  void signal(int signal) { pool_.signal(signal); }
  ProcessResult stop(std::chrono::milliseconds grace = std::chrono::seconds(10)) { return pool_.stop(grace)[0]; }
  ProcessResult wait() { return pool_.wait()[0]; }
  bool wait_for(std::chrono::milliseconds limit) { return pool_.wait_for(limit); }

 private:
  InvokedPool pool_;
};

// The facade: Process::run("cmd"), Process::timeout(5s).run(...), Process::pool(...).
class Process {
 public:
  static ProcessResult run(ProcessCommand command) { return PendingProcess().run(std::move(command)); }
  static InvokedProcess start(ProcessCommand command, OutputCallback output = {}) {
    return PendingProcess().start(std::move(command), std::move(output));
  }
  static PendingPool pool(const std::function<void(Pool&)>& build) { return PendingPool(build); }
  // Starts the pool, waits for it, and returns every result.
  static PoolResults concurrently(const std::function<void(Pool&)>& build, OutputCallback output = {}) {
    return PendingPool(build).start(std::move(output)).wait();
  }

  template <class Rep, class Period>
  static PendingProcess timeout(std::chrono::duration<Rep, Period> limit) {
    return std::move(PendingProcess().timeout(limit));
  }
  template <class Rep, class Period>
  static PendingProcess idle_timeout(std::chrono::duration<Rep, Period> limit) {
    return std::move(PendingProcess().idle_timeout(limit));
  }
  static PendingProcess forever() { return std::move(PendingProcess().forever()); }
  static PendingProcess path(std::string dir) { return std::move(PendingProcess().path(std::move(dir))); }
  static PendingProcess env(std::string name, std::string value) {
    return std::move(PendingProcess().env(std::move(name), std::move(value)));
  }
  static PendingProcess env(const std::map<std::string, std::string>& variables) {
    return std::move(PendingProcess().env(variables));
  }
  static PendingProcess input(std::string data) { return std::move(PendingProcess().input(std::move(data))); }
  static PendingProcess quietly() { return std::move(PendingProcess().quietly()); }
  static PendingProcess broker(std::string endpoint) { return std::move(PendingProcess().broker(std::move(endpoint))); }
};

}  // namespace fanout
