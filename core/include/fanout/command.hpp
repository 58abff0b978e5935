// fanout/command.hpp: a command to run and how it ended, as every part that runs commands sees
// them: Process pools (local and remote), `fanout run`, and worker executors running shell tasks.
// The user-facing API on top of these is fanout/process.hpp.
#pragma once

#include <chrono>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fanout {

// Which of a process's streams a chunk of output came from.
enum class OutputType { out, err };

// What to run: a shell line (run as `/bin/sh -c line`) or an argv list executed directly.
//   command("grep -c x *.log")   command({"grep", "-c", "x", "a.log"})   command(std::vector{...})
class ProcessCommand {
 public:
  ProcessCommand(const char* line) : line_(line), shell_(true) {}  // NOLINT: implicit by design
  ProcessCommand(std::string line) : line_(std::move(line)), shell_(true) {}  // NOLINT
  ProcessCommand(std::string_view line) : line_(line), shell_(true) {}  // NOLINT
  ProcessCommand(std::vector<std::string> argv) : argv_(std::move(argv)) {}  // NOLINT
  ProcessCommand(std::initializer_list<std::string> argv) : argv_(argv) {}  // NOLINT

  bool uses_shell() const noexcept { return shell_; }
  const std::string& line() const noexcept { return line_; }                // when uses_shell()
  const std::vector<std::string>& argv() const noexcept { return argv_; }  // otherwise
  // As a person would type it: the line, or the argv words shell-quoted where needed.
  std::string to_string() const;

 private:
  std::string line_;
  std::vector<std::string> argv_;
  bool shell_ = false;
};

namespace detail {

// Everything about one process of a pool, as the builders collect it.
struct ProcessSpec {
  std::string key;
  std::optional<ProcessCommand> command;
  std::chrono::milliseconds timeout{0};       // 0: none
  std::chrono::milliseconds idle_timeout{0};  // 0: none
  std::optional<std::string> path;            // working directory; the caller's when unset
  // Applied in order over the inherited environment: a value sets, nullopt removes.
  std::vector<std::pair<std::string, std::optional<std::string>>> env;
  std::optional<std::string> input;  // written to stdin, then stdin is closed; unset: /dev/null
  bool quiet = false;                // output neither kept nor streamed
  std::string avoid_worker;          // remote: a worker to run it on only when no other can
};

// How a process ended, as the engine that ran it reports it.
struct ProcessOutcome {
  int exit_code = -1;       // 128+N when killed by signal N
  int signal = 0;           // the signal that ended it, 0 if it exited
  bool timed_out = false;   // ended by its timeout or idle timeout...
  bool idle_timed_out = false;  // ...this one
  bool started = false;     // false: it never ran (error_output says why)
  std::string output;
  std::string error_output;
  std::string ran_on;       // "local pid 123", "worker host-a/1 pid 77"
  std::chrono::microseconds elapsed{0};
};

}  // namespace detail

}  // namespace fanout
