// descriptors.cpp
#include "system/descriptors.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace fanout::sys {

bool Pipe::open() noexcept {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read = UniqueFd(fds[0]);
  write = UniqueFd(fds[1]);
  return true;
}

void set_nonblocking(int fd) noexcept { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

bool write_all(int fd, std::span<iovec> pieces) noexcept {
  std::size_t first = 0;
  while (first < pieces.size() && pieces[first].iov_len == 0) ++first;
  while (first < pieces.size()) {
    const int count = static_cast<int>(std::min<std::size_t>(pieces.size() - first, IOV_MAX));
    const ssize_t written = ::writev(fd, pieces.data() + first, count);
    if (written < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (written == 0) {
      errno = EIO;
      return false;
    }
    // Skip what was written: whole pieces, then part of the next one.
    auto left = static_cast<std::size_t>(written);
    while (first < pieces.size() && left >= pieces[first].iov_len) left -= pieces[first++].iov_len;
    if (left > 0) {
      pieces[first].iov_base = static_cast<char*>(pieces[first].iov_base) + left;
      pieces[first].iov_len -= left;
    }
    while (first < pieces.size() && pieces[first].iov_len == 0) ++first;
  }
  return true;
}

bool write_all(int fd, const void* data, std::size_t size) noexcept {
  iovec piece{const_cast<void*>(data), size};
  return write_all(fd, std::span<iovec>(&piece, 1));
}

std::vector<int> open_descriptors() {
  std::vector<int> fds;
  DIR* directory = ::opendir("/proc/self/fd");
  if (directory == nullptr) return fds;
  const int own = ::dirfd(directory);
  while (const dirent* entry = ::readdir(directory)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == own) continue;
    fds.push_back(static_cast<int>(fd));
  }
  ::closedir(directory);
  std::sort(fds.begin(), fds.end());
  return fds;
}

std::size_t raise_descriptor_limit() noexcept {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  rlim_t wanted = limit.rlim_max;
  // setrlimit refuses more than fs.nr_open (an unlimited hard limit included).
  if (FILE* nr_open = std::fopen("/proc/sys/fs/nr_open", "r")) {
    unsigned long long most = 0;
    if (std::fscanf(nr_open, "%llu", &most) == 1 && (wanted == RLIM_INFINITY || wanted > most)) wanted = most;
    std::fclose(nr_open);
  }
  if (wanted != RLIM_INFINITY && wanted > limit.rlim_cur) {
    const rlimit raised{wanted, limit.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit.rlim_cur = wanted;
  }
  return limit.rlim_cur == RLIM_INFINITY ? SIZE_MAX : static_cast<std::size_t>(limit.rlim_cur);
}

namespace {

// close_range(2) where the kernel has it (5.9+), else one close() per possible descriptor.
void close_range_of(unsigned first, unsigned last) noexcept {
  if (first > last) return;
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, first, last, 0) == 0) return;
#endif
  rlimit limit{};
  unsigned top = 65536;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    top = static_cast<unsigned>(std::min<rlim_t>(limit.rlim_cur, top));
  }
  for (unsigned fd = first; fd <= last && fd < top; ++fd) ::close(static_cast<int>(fd));
}

}  // namespace

void close_descriptors_except(std::span<const int> keep) noexcept {
  unsigned next = 3;
  for (const int fd : keep) {
    if (fd < 0 || static_cast<unsigned>(fd) < next) continue;
    if (static_cast<unsigned>(fd) > next) close_range_of(next, static_cast<unsigned>(fd) - 1);
    next = static_cast<unsigned>(fd) + 1;
  }
  close_range_of(next, UINT_MAX);
}

}  // namespace fanout::sys
