// test_support.cpp
#include "test_support.hpp"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <system_error>
#include <utility>

namespace fanout_test {

ScopedEnv::ScopedEnv(const char* name, const char* value) : name_(name) {
  if (const char* old = ::getenv(name)) old_ = old;
  if (value != nullptr) {
    ::setenv(name, value, 1);
  } else {
    ::unsetenv(name);
  }
}

ScopedEnv::~ScopedEnv() {
  if (old_) {
    ::setenv(name_.c_str(), old_->c_str(), 1);
  } else {
    ::unsetenv(name_.c_str());
  }
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "fanout-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
  path_ = pattern;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    TempDir old(std::move(*this));
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void touch(const std::filesystem::path& path) { std::ofstream(path) << ""; }

RedirectedOutput::RedirectedOutput(const std::filesystem::path& file, Streams streams) {
  std::fflush(nullptr);
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + file.string());
  if (streams == stdout_and_stderr) {
    saved_out_ = ::dup(STDOUT_FILENO);
    ::dup2(fd, STDOUT_FILENO);
  }
  saved_err_ = ::dup(STDERR_FILENO);
  ::dup2(fd, STDERR_FILENO);
  ::close(fd);
}

RedirectedOutput::~RedirectedOutput() {
  std::fflush(nullptr);
  if (saved_out_ >= 0) {
    ::dup2(saved_out_, STDOUT_FILENO);
    ::close(saved_out_);
  }
  if (saved_err_ >= 0) {
    ::dup2(saved_err_, STDERR_FILENO);
    ::close(saved_err_);
  }
}

std::optional<std::string> stat_field(pid_t pid, int field) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return std::nullopt;
  // The command name is in parentheses and may contain spaces: parse after the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 > line.size()) return std::nullopt;
  std::istringstream rest(line.substr(close + 2));  // field 3 onwards
  std::string value;
  for (int i = 3; i <= field; ++i) rest >> value;
  return value;
}

std::optional<pid_t> parent_of(pid_t pid) {
  const auto parent = stat_field(pid, 4);
  if (!parent || parent->empty()) return std::nullopt;
  return static_cast<pid_t>(std::stol(*parent));
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  std::error_code error;
  for (std::filesystem::directory_iterator entry("/proc", error), end; !error && entry != end; entry.increment(error)) {
    const std::string name = entry->path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(name));
    if (parent_of(pid) == parent) children.push_back(pid);
  }
  return children;
}

int child_count() { return static_cast<int>(children_of(::getpid()).size()); }

bool process_alive(pid_t pid) { return ::kill(pid, 0) == 0; }

bool process_ended(pid_t pid) {
  if (!process_alive(pid)) return true;
  const auto state = stat_field(pid, 3);
  return !state || *state == "Z";
}

void become_subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }

void reap_orphans(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    const pid_t reaped = ::waitpid(-1, &status, WNOHANG);
    if (reaped > 0) continue;
    if (reaped < 0 || std::chrono::steady_clock::now() >= deadline) return;  // ECHILD: none left
    std::this_thread::sleep_for(std::chrono::milliseconds(5));             // some left, not ended yet
  }
}

}  // namespace fanout_test
