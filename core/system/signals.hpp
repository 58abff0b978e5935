// signals.hpp: signals as fanout's parts handle them: blocked and read from a signalfd by event
// loops (never handlers that interrupt a running task), described in words for messages and logs.
#pragma once

#include <signal.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "system/unique_fd.hpp"

namespace fanout::sys {

// "signal 9 (SIGKILL, Killed)"; just "signal 70" for a number the C library does not know.
std::string describe_signal(int signal);

// "signal 9 (SIGKILL, Killed)" / "exit code 3", from a waitpid status.
std::string describe_wait_status(int status);

// A waitpid status as a shell reports it: the exit code, or 128+N for a process ended by signal N.
int shell_exit_code(int status) noexcept;

// Blocks `signals` on the calling thread for the lifetime of the object and restores the previous
// mask afterwards. Blocked signals are read from a signalfd instead of interrupting whatever runs.
class BlockedSignals {
 public:
  explicit BlockedSignals(std::initializer_list<int> signals);
  ~BlockedSignals();
  BlockedSignals(const BlockedSignals&) = delete;
  BlockedSignals& operator=(const BlockedSignals&) = delete;

  const sigset_t& blocked() const noexcept { return blocked_; }
  // The mask in force before the constructor ran.
  const sigset_t& previous() const noexcept { return previous_; }

 private:
  sigset_t blocked_{};
  sigset_t previous_{};
};

// A non-blocking, close-on-exec signalfd for `signals` (which must be blocked). Throws
// std::system_error.
UniqueFd open_signalfd(const sigset_t& signals);
UniqueFd open_signalfd(std::initializer_list<int> signals);

// Reads every pending signal from `signalfd` and returns their numbers, in arrival order (one per
// pending signal; standard signals coalesce while pending).
std::vector<int> read_signals(int signalfd);

// Writes to a pipe whose reader may be gone must fail with EPIPE, not kill the program: blocks
// SIGPIPE on the calling thread (once per thread). After an EPIPE, consume_sigpipe() takes the
// signal that is then pending, so that it never fires when a mask is restored.
void block_sigpipe_on_this_thread() noexcept;
void consume_sigpipe() noexcept;

}  // namespace fanout::sys
