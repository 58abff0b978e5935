// spawned.hpp: real processes for integration tests, killed and reaped whatever the test does.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

extern char** environ;

namespace fanout_test {

// A child process with stdout and stderr in `log`, in a process group of its own (so that a test
// can stop or kill it with everything it started). The destructor kills the group and reaps.
class Spawned {
 public:
  Spawned(std::vector<std::string> arguments, const std::vector<std::string>& extra_environment,
          std::filesystem::path log)
      : log_(std::move(log)) {
    std::vector<char*> argv;
    for (auto& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    std::vector<std::string> variables = extra_environment;
    std::vector<char*> envp;
    for (auto& variable : variables) envp.push_back(variable.data());
    for (char** variable = environ; *variable != nullptr; ++variable) {
      const std::string_view entry(*variable);
      const auto name = entry.substr(0, entry.find('='));
      bool overridden = false;
      for (const auto& extra : extra_environment) overridden = overridden || extra.rfind(std::string(name) + "=", 0) == 0;
      if (!overridden) envp.push_back(*variable);
    }
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attributes, 0);
    const int error = ::posix_spawn(&pid_, argv[0], &actions, &attributes, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (error != 0) throw std::system_error(error, std::generic_category(), "posix_spawn " + arguments[0]);
  }

  ~Spawned() { kill_all(); }
  Spawned(const Spawned&) = delete;
  Spawned& operator=(const Spawned&) = delete;

  pid_t pid() const noexcept { return pid_; }

  // Signals the process and everything in its group.
  void signal_group(int signal) const {
    if (!reaped_) ::kill(-pid_, signal);
  }

  void kill_all() {
    if (reaped_) return;
    ::kill(-pid_, SIGKILL);
    ::kill(-pid_, SIGCONT);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }

  // Waits for the process to exit; returns its wait status, or nullopt at the deadline.
  std::optional<int> wait_exit(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }

  std::string log() const {
    std::ifstream in(log_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  // The rest of the first log line that starts with `prefix`, waiting for it until `limit`.
  std::optional<std::string> wait_for_line(const std::string& prefix, std::chrono::milliseconds limit) const {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      std::istringstream lines(log());
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

}  // namespace fanout_test
