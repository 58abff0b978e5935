// child_process.cpp
#include "system/child_process.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <utility>

namespace fanout::sys {

ChildProcess::ChildProcess(pid_t pid, bool group_leader) noexcept
    : pid_(pid), group_leader_(group_leader), pidfd_(pid > 0 ? open_pidfd(pid) : UniqueFd()) {}

ChildProcess::~ChildProcess() { kill_and_reap(); }

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), group_leader_(other.group_leader_), pidfd_(std::move(other.pidfd_)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    group_leader_ = other.group_leader_;
    pidfd_ = std::move(other.pidfd_);
  }
  return *this;
}

void ChildProcess::signal(int signal) const noexcept {
  if (pid_ > 0) ::kill(pid_, signal);
}

void ChildProcess::signal_group(int signal) const noexcept {
  if (pid_ <= 0) return;
  if (group_leader_ && ::kill(-pid_, signal) == 0) return;
  ::kill(pid_, signal);  // not a leader, or its group is not set up yet (it has not run setpgid)
}

std::optional<int> ChildProcess::try_reap(bool kill_group) noexcept {
  if (pid_ <= 0) return std::nullopt;
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) {
    return std::nullopt;
  }
  return reap(kill_group);
}

int ChildProcess::wait(bool kill_group) noexcept {
  if (pid_ <= 0) return 0;
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
  }
  return reap(kill_group);
}

int ChildProcess::reap(bool kill_group) noexcept {
  if (kill_group && group_leader_) ::kill(-pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  pidfd_.reset();
  return status;
}

void ChildProcess::kill_and_reap() noexcept {
  if (pid_ <= 0) return;
  signal_group(SIGKILL);
  reap(false);
}

}  // namespace fanout::sys
