// child_process.hpp: one child process, owned. Every part that starts processes holds them in
// this type (the fork driver's children, a worker's executors, the local pool's worker, the
// commands of Process pools and `fanout run`), so that no path out of their code can leave a
// zombie or a stray process: the destructor kills and reaps whatever was not reaped yet.
//
// Ending is seen through pidfd() (poll it for POLLIN; -1 on kernels before 5.3, where callers
// poll try_reap() instead) or a SIGCHLD the owner reads itself; never through waitpid(-1), which
// would steal other parts' children.
#pragma once

#include <sys/types.h>

#include <optional>

#include "system/unique_fd.hpp"

namespace fanout::sys {

class ChildProcess {
 public:
  ChildProcess() noexcept = default;
  // Takes ownership of the child `pid` (which the caller forked or spawned). `group_leader`: it
  // leads a process group of its own (the caller made sure of it), so that signal_group() and
  // the destructor also reach what it started.
  explicit ChildProcess(pid_t pid, bool group_leader = true) noexcept;
  // Kills (its group too, for a leader) and reaps it unless it was reaped already.
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const noexcept { return pid_; }
  // Owned and not reaped yet (it may have ended).
  bool running() const noexcept { return pid_ > 0; }
  // Readable once the process has ended; -1 without pidfd support.
  int pidfd() const noexcept { return pidfd_.get(); }

  // `signal` to the process alone.
  void signal(int signal) const noexcept;
  // `signal` to its whole process group (a leader's; it is in it), else to the process alone.
  void signal_group(int signal) const noexcept;

  // When the process has ended: reaps it and returns its wait status; nullopt at once while it
  // runs. `kill_group`: first SIGKILL what it left running in its group (done while the unreaped
  // leader still reserves the group id, so the signal cannot reach a stranger).
  std::optional<int> try_reap(bool kill_group = false) noexcept;
  // Blocks until the process ends, then as try_reap.
  int wait(bool kill_group = false) noexcept;

  // SIGKILL to it (and its group) and reaps it. Nothing when not running.
  void kill_and_reap() noexcept;

 private:
  int reap(bool kill_group) noexcept;

  pid_t pid_ = -1;
  bool group_leader_ = false;
  UniqueFd pidfd_;
};

}  // namespace fanout::sys
