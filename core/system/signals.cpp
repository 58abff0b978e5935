// signals.cpp
#include "system/signals.hpp"

#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "system/os_error.hpp"

namespace fanout::sys {

std::string describe_signal(int signal) {
  std::string text = "signal " + std::to_string(signal);
  const char* name = ::sigabbrev_np(signal);
  const char* description = ::sigdescr_np(signal);
  if (name != nullptr && description != nullptr) {
    text += std::string(" (SIG") + name + ", " + description + ")";
  } else if (name != nullptr) {
    text += std::string(" (SIG") + name + ")";
  }
  return text;
}

std::string describe_wait_status(int status) {
  if (WIFSIGNALED(status)) return describe_signal(WTERMSIG(status));
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  return "wait status " + std::to_string(status);
}

int shell_exit_code(int status) noexcept {
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

BlockedSignals::BlockedSignals(std::initializer_list<int> signals) {
  ::sigemptyset(&blocked_);
  for (const int signal : signals) ::sigaddset(&blocked_, signal);
  if (const int error = ::pthread_sigmask(SIG_BLOCK, &blocked_, &previous_); error != 0) {
    throw_os_error("pthread_sigmask", error);
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
  if (!fd) throw_os_error("signalfd");
  return fd;
}

UniqueFd open_signalfd(std::initializer_list<int> signals) {
  sigset_t set;
  ::sigemptyset(&set);
  for (const int signal : signals) ::sigaddset(&set, signal);
  return open_signalfd(set);
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

void block_sigpipe_on_this_thread() noexcept {
  static thread_local bool blocked = false;
  if (blocked) return;
  sigset_t set;
  ::sigemptyset(&set);
  ::sigaddset(&set, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  blocked = true;
}

void consume_sigpipe() noexcept {
  sigset_t set;
  ::sigemptyset(&set);
  ::sigaddset(&set, SIGPIPE);
  const timespec no_wait{};
  while (::sigtimedwait(&set, nullptr, &no_wait) > 0) {
  }
}

}  // namespace fanout::sys
