// child.hpp: the processes fanout-bench starts (rows measured in their own process, cold starts,
// a standalone broker and a remote worker), and what it reads about processes from /proc.
//
// Every Child is killed (SIGKILL) and reaped when it goes out of scope, also when the benchmark
// leaves through an exception, and dies with the benchmark (PR_SET_PDEATHSIG) if the benchmark
// itself is killed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace fanout_bench {

using Clock = std::chrono::steady_clock;

struct Spawn {
  enum class Output { inherit, pipe, null };

  std::string path;
  std::vector<std::string> arguments;  // argv[1...]; argv[0] is `path`
  // NAME=value set in the child, replacing inherited values. The variables that choose a fanout
  // process's mode or role (FANOUT_BROKER, FANOUT_WORKER, FANOUT_LOCAL_WORKER, FANOUT_PROCESSES,
  // FANOUT_DRIVER) are never inherited: a child runs in exactly the mode the benchmark chose.
  std::vector<std::string> environment;
  Output output = Output::inherit;  // stdout; stderr is always inherited
};

class Child {
 public:
  // Forks and executes. Throws std::runtime_error when the process cannot be made.
  explicit Child(const Spawn& spawn);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const noexcept { return pid_; }

  // The next line the child writes to its stdout (Output::pipe), without the newline. Throws
  // std::runtime_error naming `what` when the child exits first or `deadline` passes.
  std::string read_line(Clock::time_point deadline, const std::string& what);
  // The next line as read_line gives it, or nothing once the child has closed its stdout (a last
  // line without a newline still comes back first) or exited with nothing left in the pipe.
  // Throws std::runtime_error naming `what` when `deadline` passes.
  std::optional<std::string> next_line(Clock::time_point deadline, const std::string& what);

  // Waits up to `limit` for the child to exit by itself, then kills it. Returns the wait status.
  int wait(std::chrono::milliseconds limit);
  // Sends `signal`, then waits as wait() does. Returns the wait status.
  int stop(int signal, std::chrono::milliseconds grace);

 private:
  std::optional<int> try_reap();

  pid_t pid_ = -1;
  int out_ = -1;
  std::optional<int> status_;
  std::string buffered_;
};

// A fanout-broker (`program`) on tcp loopback, on a port the system chose, with `arguments` added
// (--journal DIR, ...): started, and its endpoint read from the line it prints. Killed with the
// Child it holds.
class BrokerProcess {
 public:
  explicit BrokerProcess(const std::string& program, const std::vector<std::string>& arguments = {});
  const std::string& endpoint() const noexcept { return endpoint_; }
  pid_t pid() const noexcept { return child_.pid(); }
  Child& child() noexcept { return child_; }

 private:
  Child child_;
  std::string endpoint_;
};

// Makes this process the reaper of every process its children leave behind (PR_SET_CHILD_SUBREAPER):
// executors whose supervisor was killed are re-parented here instead of to init.
void become_subreaper();
// Reaps every child of this process, waiting up to `limit` for those still alive, then kills and
// reaps the rest. Call it only while no Child object is alive. Returns the pids it had to kill.
std::vector<pid_t> reap_leftovers(std::chrono::milliseconds limit);

// "exited with code 3", "was killed by signal 9".
std::string describe_status(int status);

// This program's own path (/proc/self/exe).
std::string self_path();

// Resident set size figures of a process, from /proc/PID/status, in MiB. pid 0 is this process.
struct Memory {
  double rss_mib = 0;   // VmRSS
  double peak_mib = 0;  // VmHWM: the peak since the process started or since reset_peak()
};
Memory memory_of(pid_t pid);
// Sets VmHWM back to the current RSS (/proc/PID/clear_refs, "5"). Returns false when not allowed.
bool reset_peak(pid_t pid);

}  // namespace fanout_bench
