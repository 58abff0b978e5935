// descriptors.hpp: file descriptors as fanout's parts use them: pipes, complete writes, and the
// descriptor hygiene of a freshly forked process.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <vector>

#include "system/unique_fd.hpp"

namespace fanout::sys {

// Both ends of a close-on-exec pipe.
struct Pipe {
  UniqueFd read;
  UniqueFd write;
  // Opens the pipe; false (errno set) when pipe2 fails.
  bool open() noexcept;
};

void set_nonblocking(int fd) noexcept;

// Writes every byte of `pieces`, resuming after short writes and EINTR (it advances `pieces`).
// Returns false with errno set on a write error; a write that makes no progress is EIO.
// Allocates nothing, so a forked child may call it.
bool write_all(int fd, std::span<iovec> pieces) noexcept;
bool write_all(int fd, const void* data, std::size_t size) noexcept;

// The file descriptors open in this process now, sorted (from /proc/self/fd). Empty when /proc is
// not available.
std::vector<int> open_descriptors();

// Raises this process's soft limit of open descriptors (RLIMIT_NOFILE) to its hard limit, capped
// by what the kernel allows one process (fs.nr_open), and returns the soft limit in force after.
// For a process that holds a descriptor per connected peer (the broker): a soft limit of 1024,
// the default of many shells, services and container runtimes, would stop it accepting peers
// past about 500 workers, silently. Never fails: a limit it cannot raise stays as it was.
std::size_t raise_descriptor_limit() noexcept;

// Closes every descriptor >= 3 that is not in `keep` (sorted). Used in a freshly forked process to
// drop what it must not hold (its parent's sockets, ZeroMQ context, signalfd). Allocates nothing.
void close_descriptors_except(std::span<const int> keep) noexcept;

}  // namespace fanout::sys
