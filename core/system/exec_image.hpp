// exec_image.hpp: what execve needs to start a program again (the local pool's worker, the local
// service), prepared before fork: after fork, in a process with other threads, only
// async-signal-safe calls are allowed, so nothing may be allocated there.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace fanout::sys {

class ExecImage {
 public:
  // Runs `path` with `arguments` (argv[0] included; just the path when empty) in this process's
  // environment, minus the entries that start with one of `drop` ("FANOUT_LOCAL_" drops every
  // such variable, "FANOUT_WORKER=" exactly that one), plus `add` ("NAME=value" each).
  ExecImage(std::string path, std::vector<std::string> arguments, std::initializer_list<std::string_view> drop,
            std::vector<std::string> add);
  ExecImage(const ExecImage&) = delete;
  ExecImage& operator=(const ExecImage&) = delete;

  const std::string& path() const noexcept { return path_; }

  // execve; exits with 127 when that fails. Async-signal-safe.
  [[noreturn]] void exec() const noexcept;

 private:
  std::string path_;
  std::vector<std::string> arguments_;
  std::vector<std::string> added_;
  std::vector<char*> argv_;
  std::vector<char*> envp_;
};

}  // namespace fanout::sys
