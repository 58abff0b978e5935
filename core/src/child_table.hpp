// child_table.hpp: running command processes and gathering what they write, for whoever drives a
// poll loop: the local pool's thread (Process::pool) and a worker's executor (remote shell tasks).
//
// Each child is started with posix_spawn (vfork-fast even from a large parent) in a process group
// of its own, with every signal at its default disposition and none blocked (whatever the parent
// blocks or ignores), stdin from its input pipe or /dev/null, and stdout/stderr on pipes (or
// /dev/null when quiet). Its end is seen through a pidfd, so no SIGCHLD handler and no
// waitpid(-1) that could steal another part's children.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fanout/command.hpp>

namespace fanout::detail {

// The environment children inherit, captured once (environ is not safe to read while another
// thread may setenv).
class Environment {
 public:
  static std::shared_ptr<const Environment> capture();
  // The environment a worker gives the shell commands it runs for remote clients (a declared
  // one, docs/protocol.md "Executor rules"): never this process's own as a whole, only
  //   - PATH (this process's, else /usr/local/bin:/usr/bin:/bin), HOME, USER and LOGNAME (this
  //     process's, else from the password database for its user), and SHELL=/bin/sh;
  //   - LANG, LANGUAGE, LC_*, TZ and TMPDIR when this process has them;
  //   - every variable of this process whose name matches one of `pass` (an exact name or an
  //     fnmatch glob such as AWS_*: `fanout-worker --pass-env`).
  // What the client sends is applied on top by with().
  static std::shared_ptr<const Environment> declared(const std::vector<std::string>& pass);
  // The environment for a spec: this one with the spec's changes applied. Empty when the spec
  // changes nothing (use this one's as is).
  std::vector<std::string> with(const ProcessSpec& spec) const;
  char* const* pointers() const noexcept { return pointers_.data(); }

 private:
  std::vector<std::string> entries_;
  std::vector<char*> pointers_;
};

// Whether a command may outlive the process that started it when that process is killed outright
// (see system/spawn.hpp). On every other path the table kills and reaps what it started.
enum class ChildLifetime {
  kMayOutliveThisProcess,  // posix_spawn: cheapest, for a program's own commands
  kDiesWithThisProcess,    // under a guardian: for commands run on others' behalf (workers)
};

class ChildTable {
 public:
  using Clock = std::chrono::steady_clock;
  // Output as it arrives, by the slot the child was started for.
  using OnOutput = std::function<void(std::size_t slot, OutputType type, std::string_view text)>;
  // A child has ended (or never started); called once per start().
  using OnExit = std::function<void(std::size_t slot, ProcessOutcome outcome)>;

  ChildTable(OnOutput on_output, OnExit on_exit, std::string ran_on_prefix = "local",
             ChildLifetime lifetime = ChildLifetime::kMayOutliveThisProcess);
  // Kills (SIGKILL to each group) and reaps every child still running.
  ~ChildTable();
  ChildTable(const ChildTable&) = delete;
  ChildTable& operator=(const ChildTable&) = delete;

  // Starts `spec` for `slot`. A command that cannot start ends at once, through on_exit.
  void start(std::size_t slot, const ProcessSpec& spec, const Environment& environment);

  std::size_t running() const noexcept { return children_.size(); }
  std::vector<std::size_t> running_slots() const;
  std::optional<pid_t> pid_of(std::size_t slot) const;

  // Adds the descriptors to watch to `fds`; returns the earliest deadline (timeouts, kills due).
  Clock::time_point prepare(std::vector<pollfd>& fds);
  // After poll(): handles the entries this table added (from `first` on) and any deadline passed.
  // Calls on_output and on_exit.
  void handle(const std::vector<pollfd>& fds, std::size_t first);

  // Sends `signal` to the process group of every running child.
  void signal_all(int signal) noexcept;
  // TERM to every group now, KILL to those still there after `grace`.
  void stop_all(std::chrono::milliseconds grace) noexcept;

 private:
  struct Child;
  void finish(std::size_t position);
  void check_deadlines(Clock::time_point now);

  OnOutput on_output_;
  OnExit on_exit_;
  std::string ran_on_prefix_;
  ChildLifetime lifetime_;
  std::vector<std::unique_ptr<Child>> children_;
};

}  // namespace fanout::detail
