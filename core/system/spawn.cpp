// spawn.cpp
#include "system/spawn.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "system/descriptors.hpp"

namespace fanout::sys {

namespace {

// ---- Plain: posix_spawn ---------------------------------------------------------------------

Spawned spawn_plain(const SpawnPlan& plan) noexcept {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawnattr_init(&attributes);
  const auto place = [&](int fd, int target, int flags) {
    if (fd >= 0) {
      ::posix_spawn_file_actions_adddup2(&actions, fd, target);
    } else {
      ::posix_spawn_file_actions_addopen(&actions, target, "/dev/null", flags, 0);
    }
  };
  place(plan.stdin_fd, STDIN_FILENO, O_RDONLY);
  place(plan.stdout_fd, STDOUT_FILENO, O_WRONLY);
  place(plan.stderr_fd, STDERR_FILENO, O_WRONLY);
  if (plan.directory != nullptr) ::posix_spawn_file_actions_addchdir_np(&actions, plan.directory);
  sigset_t no_signals;
  ::sigemptyset(&no_signals);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP;
  ::posix_spawnattr_setsigmask(&attributes, &no_signals);
  if (plan.signals_to_default != nullptr) {
    ::posix_spawnattr_setsigdefault(&attributes, plan.signals_to_default);
    flags |= POSIX_SPAWN_SETSIGDEF;
  }
  ::posix_spawnattr_setpgroup(&attributes, 0);
  ::posix_spawnattr_setflags(&attributes, flags);
  Spawned spawned;
  spawned.error = plan.search_path ? ::posix_spawnp(&spawned.pid, plan.file, &actions, &attributes, plan.argv, plan.envp)
                                   : ::posix_spawn(&spawned.pid, plan.file, &actions, &attributes, plan.argv, plan.envp);
  if (spawned.error != 0) spawned.pid = -1;
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attributes);
  return spawned;
}

// ---- Guarded: fork, a guardian, fork, exec --------------------------------------------------
// Everything below runs in forked children of a possibly multi-threaded process: system calls
// only, no allocation, no locks.

[[noreturn]] void report_and_exit(int error_fd, int error) noexcept {
  (void)write_all(error_fd, &error, sizeof error);
  ::_exit(127);
}

// Puts `fd` (or /dev/null when -1) on `target`.
bool place(int fd, int target, int flags) noexcept {
  if (fd < 0) {
    const int null = ::open("/dev/null", flags);
    if (null < 0) return false;
    if (null == target) return true;
    const bool placed = ::dup2(null, target) >= 0;
    ::close(null);
    return placed;
  }
  if (fd == target) return ::fcntl(fd, F_SETFD, 0) == 0;  // dup2 onto itself would keep close-on-exec
  return ::dup2(fd, target) >= 0;
}

// The command itself, in the guardian's group. Reports an errno value on `error_fd` (close-on-exec,
// so a successful exec reports nothing) when it cannot start.
[[noreturn]] void become_command(const SpawnPlan& plan, int error_fd) noexcept {
  if (!place(plan.stdin_fd, STDIN_FILENO, O_RDONLY) || !place(plan.stdout_fd, STDOUT_FILENO, O_WRONLY) ||
      !place(plan.stderr_fd, STDERR_FILENO, O_WRONLY)) {
    report_and_exit(error_fd, errno);
  }
  if (plan.directory != nullptr && ::chdir(plan.directory) != 0) report_and_exit(error_fd, errno);
  if (plan.signals_to_default != nullptr) {
    for (int signal = 1; signal < NSIG; ++signal) {
      if (::sigismember(plan.signals_to_default, signal) == 1) ::signal(signal, SIG_DFL);
    }
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (plan.search_path) {
    ::execvpe(plan.file, plan.argv, plan.envp);
  } else {
    ::execve(plan.file, plan.argv, plan.envp);
  }
  report_and_exit(error_fd, errno);
}

// Ends the way the command ended: the same exit code, or death by the same signal.
[[noreturn]] void end_like(int status) noexcept {
  if (WIFSIGNALED(status)) {
    const int signal = WTERMSIG(status);
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);  // the command's core dump, if any, is the command's
    ::signal(signal, SIG_DFL);
    sigset_t only;
    ::sigemptyset(&only);
    ::sigaddset(&only, signal);
    ::sigprocmask(SIG_UNBLOCK, &only, nullptr);
    ::kill(::getpid(), signal);
  }
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 127);
}

[[noreturn]] void become_guardian(const SpawnPlan& plan, pid_t parent, int error_fd) noexcept {
  // Every signal waits for sigwaitinfo below; the command gets an empty mask back.
  sigset_t all;
  ::sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) report_and_exit(error_fd, ECHILD);  // it died before prctl could watch it
  ::signal(SIGCHLD, SIG_DFL);  // an inherited SIG_IGN would reap the command behind our back
  const pid_t command = ::fork();
  if (command < 0) report_and_exit(error_fd, errno);
  if (command == 0) become_command(plan, error_fd);  // the kernel clears PDEATHSIG in a fork's child
  close_descriptors_except({});  // the command's pipes and the error pipe are the command's alone

  sigset_t wanted;
  ::sigemptyset(&wanted);
  for (const int signal : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT}) ::sigaddset(&wanted, signal);
  int status = 0;
  for (;;) {
    const int signal = ::sigwaitinfo(&wanted, nullptr);
    if (signal == SIGCHLD) {
      if (::waitpid(command, &status, WNOHANG) == command) break;
      continue;
    }
    // The parent is gone (this is PR_SET_PDEATHSIG's SIGTERM, or anything after it): the group
    // goes, the command, whatever it started there, and this guardian. Otherwise the signal is the
    // parent's to the whole group (a timeout's TERM), which the command received too.
    if (signal > 0 && ::getppid() != parent) ::kill(0, SIGKILL);
  }
  end_like(status);
}

Spawned spawn_guarded(const SpawnPlan& plan) noexcept {
  Pipe errors;
  if (!errors.open()) return {-1, errno};
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return {-1, errno};
  if (pid == 0) become_guardian(plan, parent, errors.write.get());
  errors.write.reset();
  ::setpgid(pid, pid);  // also here, so that no signal to the group can come before the child's own call
  int error = 0;
  ssize_t got = 0;
  do {
    got = ::read(errors.read.get(), &error, sizeof error);
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof error)) {
    // The guardian exits as soon as its command has: reap it here, the caller never saw it.
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return {-1, error};
  }
  return {pid, 0};
}

}  // namespace

Spawned spawn(const SpawnPlan& plan) noexcept { return plan.dies_with_parent ? spawn_guarded(plan) : spawn_plain(plan); }

}  // namespace fanout::sys
