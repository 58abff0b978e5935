// posix.hpp: the small POSIX pieces the supervisor and its executors are built from.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "poll_timeout.hpp"
#include "unique_fd.hpp"

namespace fanout::worker {

using detail::UniqueFd;

// CPUs this process may run on (its affinity mask), at least 1.
unsigned available_cores() noexcept;

// This machine's host name; "localhost" when it cannot be read.
std::string host_name();

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

// Reads every pending signal from `signalfd` and returns their numbers, in arrival order (one per
// pending signal; standard signals coalesce while pending).
std::vector<int> read_signals(int signalfd);

// The file descriptors open in this process now, sorted (from /proc/self/fd). Empty when /proc is
// not available.
std::vector<int> open_descriptors();

// Closes every descriptor >= 3 that is not in `keep` (sorted). Used in a freshly forked executor to
// drop the supervisor's sockets, ZeroMQ context and signalfd, so that the executor cannot hold the
// supervisor's connection open. Allocates nothing.
void close_descriptors_except(std::span<const int> keep) noexcept;

using detail::open_pidfd;

// "signal 9 (SIGKILL, Killed)" / "exit code 3", from a waitpid status.
std::string describe_wait_status(int status);

using detail::poll_timeout_ms;

}  // namespace fanout::worker
