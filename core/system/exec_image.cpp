// exec_image.cpp
#include "system/exec_image.hpp"

#include <unistd.h>

#include <algorithm>

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace fanout::sys {

ExecImage::ExecImage(std::string path, std::vector<std::string> arguments, std::initializer_list<std::string_view> drop,
                     std::vector<std::string> add)
    : path_(std::move(path)), arguments_(std::move(arguments)), added_(std::move(add)) {
  if (arguments_.empty()) arguments_.push_back(path_);
  for (auto& argument : arguments_) argv_.push_back(argument.data());
  argv_.push_back(nullptr);
  for (char** variable = environ; variable != nullptr && *variable != nullptr; ++variable) {
    const std::string_view entry(*variable);
    const bool dropped = std::any_of(drop.begin(), drop.end(), [&](std::string_view prefix) {
      return entry.substr(0, prefix.size()) == prefix;
    });
    if (!dropped) envp_.push_back(*variable);
  }
  for (auto& variable : added_) envp_.push_back(variable.data());
  envp_.push_back(nullptr);
}

void ExecImage::exec() const noexcept {
  ::execve(path_.c_str(), argv_.data(), envp_.data());
  ::_exit(127);
}

}  // namespace fanout::sys
