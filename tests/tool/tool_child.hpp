// tool_child.hpp: a program the tool tests run as a child process: stdin from a string, stdout
// and stderr in files of its own, the environment of this process minus FANOUT_* plus what the
// test gives (the test says what the child sees). Killed with its process group and reaped at the
// end of the scope, whatever happens.
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
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "../unit/test_support.hpp"

extern char** environ;

namespace fanout_test {

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class ToolChild {
 public:
  // `arguments[0]` is the program's path.
  explicit ToolChild(std::vector<std::string> arguments, const std::string& input = "",
                     const std::vector<std::string>& extra_environment = {}) {
    std::ofstream(dir_.path() / "stdin") << input;
    std::vector<char*> argv;
    for (auto& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    std::vector<std::string> variables = extra_environment;
    for (char** variable = environ; *variable != nullptr; ++variable) {
      if (std::string_view(*variable).rfind("FANOUT_", 0) != 0) variables.emplace_back(*variable);
    }
    std::vector<char*> envp;
    for (auto& variable : variables) envp.push_back(variable.data());
    envp.push_back(nullptr);
    const auto in = (dir_.path() / "stdin").string();
    const auto out = (dir_.path() / "stdout").string();
    const auto err = (dir_.path() / "stderr").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, in.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attributes, 0);
    const int error = ::posix_spawn(&pid_, argv[0], &actions, &attributes, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    REQUIRE_MESSAGE(error == 0, "posix_spawn " << arguments[0]);
  }
  ~ToolChild() {
    if (reaped_) return;
    ::kill(-pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ToolChild(const ToolChild&) = delete;
  ToolChild& operator=(const ToolChild&) = delete;

  std::string out() const { return read_file(dir_.path() / "stdout"); }
  std::string err() const { return read_file(dir_.path() / "stderr"); }
  pid_t pid() const { return pid_; }

  // The wait status once the child has exited, or nullopt when it has not within `limit` (it is
  // still running then; the destructor kills it).
  std::optional<int> wait_status(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!reaped_ && std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
      if (!reaped_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!reaped_) return std::nullopt;
    return status_;
  }

  // The exit status; fails the test when the child has not exited by itself before `limit`.
  int finish(std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    const auto status = wait_status(limit);
    INFO("stdout:\n" << out() << "\nstderr:\n" << err());
    REQUIRE_MESSAGE(status.has_value(), "the child did not exit in time");
    REQUIRE(WIFEXITED(*status));
    return WEXITSTATUS(*status);
  }

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
};

}  // namespace fanout_test
