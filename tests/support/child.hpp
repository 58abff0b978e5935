// child.hpp: a process a test starts (a program, or a fork of the test running a function),
// owned by the test: whatever happens, the destructor kills its process group and reaps it.
//
// The child leads a process group of its own, so that signal_group() and the destructor reach
// everything it started (that was not moved to a group of its own). Its stdin is /dev/null or a
// file holding the test's input; its stdout and stderr go to files in a directory it owns, which
// the test reads while it runs (out(), err(), read_line(), wait_for_line()) and after it ended.
// The environment is this process's, minus and plus what the test says.
//
// Single-threaded: one test thread uses a Child at a time. Ending is waited for through its pidfd
// (fanout::sys::ChildProcess), never with waitpid(-1), so other children of the test are safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "system/child_process.hpp"
#include "test_support.hpp"

namespace fanout_test {

struct ChildOptions {
  // "NAME=value" entries the child gets, in place of an inherited NAME.
  std::vector<std::string> env{};
  // Inherited entries that start with one of these are not passed on: "FANOUT_" drops every
  // FANOUT_* variable (the test then says all the child sees), "FANOUT_BROKER=" that one alone.
  std::vector<std::string> drop_env{};
  // What the child reads on stdin; nullopt: /dev/null.
  std::optional<std::string> input{};
  // stderr into the stdout file, interleaved as written: one log, read with out().
  bool merge_output = false;
  // stderr to this file instead (a terminal's slave side, say); err() is empty then.
  std::optional<std::filesystem::path> stderr_path{};
};

class Child {
 public:
  // Starts the program `arguments[0]` (a path) with `arguments`. Throws std::system_error when it
  // cannot be started.
  explicit Child(std::vector<std::string> arguments, ChildOptions options = {});
  // Forks this process; the child runs `body` with its stdin, stdout and stderr set up as
  // `options` says (env and drop_env do not apply: it keeps this process's memory) and exits
  // with what `body` returns (70 when it throws). Throws std::system_error.
  static Child fork(const std::function<int()>& body, ChildOptions options = {});

  ~Child() = default;  // the ChildProcess kills the group and reaps
  Child(Child&&) noexcept = default;
  Child& operator=(Child&&) noexcept = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Its process id, also after it was reaped.
  pid_t pid() const noexcept { return pid_; }

  // `signal` to the process alone, or to its whole group. Nothing once it was reaped.
  void signal(int signal) const noexcept;
  void signal_group(int signal) const noexcept;
  // SIGKILL to its group, then reaps it. Nothing once it was reaped.
  void kill() noexcept;

  // Its wait status once it has ended (it is reaped then), or nullopt while it still runs after
  // `limit`.
  std::optional<int> wait_exit(std::chrono::milliseconds limit = kPatience);
  // Whether it still runs (reaps it when it has ended).
  bool running();
  // Its exit code once it has exited by itself; fails the test, showing its output, when it has
  // not exited within `limit` or was killed by a signal.
  int finish(std::chrono::milliseconds limit = std::chrono::seconds(60));

  // What it wrote on stdout (and stderr, when merged) so far, and on stderr.
  std::string out() const;
  std::string err() const;

  // The next line of stdout after what read_line() and read_exact() took, without its newline;
  // nullopt at the deadline, or once the child has ended without writing another whole line.
  std::optional<std::string> read_line(std::chrono::milliseconds limit);
  // The next `size` bytes of stdout after what was taken, into `into`; false at the deadline or
  // once the child has ended without writing that much. For a child that reports binary records.
  bool read_exact(void* into, std::size_t size, std::chrono::milliseconds limit);
  // The rest of the first line of stdout that starts with `prefix` (searched from the start, not
  // taken); nullopt at the deadline, or once the child has ended without writing one.
  std::optional<std::string> wait_for_line(const std::string& prefix, std::chrono::milliseconds limit);

 private:
  Child() = default;  // for fork()
  // The bytes of stdout from `offset_` on.
  std::string unread() const;

  TempDir dir_;  // stdin, stdout and stderr files
  pid_t pid_ = -1;
  fanout::sys::ChildProcess process_;
  std::optional<int> status_;
  std::uint64_t offset_ = 0;  // of stdout, taken by read_line() and read_exact()
};

// A program run to its end: its wait status (-1 when it had to be killed at the deadline) and
// what it wrote.
struct Finished {
  int status = -1;
  std::string out;
  std::string err;
};
Finished run_to_end(std::vector<std::string> arguments, ChildOptions options = {},
                    std::chrono::milliseconds limit = std::chrono::seconds(60));

}  // namespace fanout_test
