// posix.cpp
#include "posix.hpp"

#include "signal_text.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <system_error>

namespace fanout::worker {

unsigned available_cores() noexcept {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
  return static_cast<unsigned>(std::max<long>(1, ::sysconf(_SC_NPROCESSORS_ONLN)));
}

std::string host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

BlockedSignals::BlockedSignals(std::initializer_list<int> signals) {
  ::sigemptyset(&blocked_);
  for (const int signal : signals) ::sigaddset(&blocked_, signal);
  if (const int error = ::pthread_sigmask(SIG_BLOCK, &blocked_, &previous_); error != 0) {
    throw std::system_error(error, std::generic_category(), "pthread_sigmask");
  }
}

BlockedSignals::~BlockedSignals() {
  // Signals that arrived meanwhile were meant for the code that blocked them: drop them rather
  // than let them act (e.g. terminate) the moment the mask is restored.
  const timespec no_wait{};
  while (::sigtimedwait(&blocked_, nullptr, &no_wait) > 0) {
  }
  ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

UniqueFd open_signalfd(const sigset_t& signals) {
  UniqueFd fd(::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) throw std::system_error(errno, std::generic_category(), "signalfd");
  return fd;
}

std::vector<int> read_signals(int signalfd) {
  std::vector<int> signals;
  signalfd_siginfo info[8];
  for (;;) {
    const ssize_t got = ::read(signalfd, info, sizeof(info));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EAGAIN: nothing more pending
    for (std::size_t i = 0; i < static_cast<std::size_t>(got) / sizeof(info[0]); ++i) {
      signals.push_back(static_cast<int>(info[i].ssi_signo));
    }
  }
  return signals;
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

std::string describe_wait_status(int status) {
  if (WIFSIGNALED(status)) return detail::describe_signal(WTERMSIG(status));
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  return "wait status " + std::to_string(status);
}

}  // namespace fanout::worker
