// child.cpp
#include "child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string_view>
#include <system_error>
#include <thread>

#include <doctest/doctest.h>

#include "system/unique_fd.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace fanout_test {

namespace {

using Clock = std::chrono::steady_clock;
using fanout::sys::UniqueFd;

std::system_error os_error(const std::string& what) { return {errno, std::generic_category(), what}; }

UniqueFd open_or_throw(const std::filesystem::path& path, int flags) {
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC, 0644));
  if (!fd) throw os_error("open " + path.string());
  return fd;
}

// The descriptors that become the child's stdin, stdout and stderr (close-on-exec here).
struct Streams {
  UniqueFd in;
  UniqueFd out;
  UniqueFd err;  // invalid when stderr goes to `out`

  int err_fd() const noexcept { return err ? err.get() : out.get(); }
};

Streams open_streams(const std::filesystem::path& dir, const ChildOptions& options) {
  Streams streams;
  if (options.input) {
    write_file(dir / "stdin", *options.input);
    streams.in = open_or_throw(dir / "stdin", O_RDONLY);
  } else {
    streams.in = open_or_throw("/dev/null", O_RDONLY);
  }
  streams.out = open_or_throw(dir / "stdout", O_WRONLY | O_CREAT | O_TRUNC);
  if (options.stderr_path) {
    streams.err = open_or_throw(*options.stderr_path, O_RDWR | O_NOCTTY);
  } else if (!options.merge_output) {
    streams.err = open_or_throw(dir / "stderr", O_WRONLY | O_CREAT | O_TRUNC);
  }
  return streams;
}

// This process's environment as `options` changes it, "NAME=value" each.
std::vector<std::string> environment(const ChildOptions& options) {
  std::vector<std::string> entries;
  for (char** variable = environ; variable != nullptr && *variable != nullptr; ++variable) {
    const std::string_view entry(*variable);
    const auto name = entry.substr(0, entry.find('=') + 1);  // "NAME="
    const auto starts_with = [&](std::string_view prefix) { return entry.substr(0, prefix.size()) == prefix; };
    const bool dropped = std::any_of(options.drop_env.begin(), options.drop_env.end(), starts_with) ||
                         std::any_of(options.env.begin(), options.env.end(),
                                     [&](const std::string& set) { return set.rfind(name, 0) == 0; });
    if (!dropped) entries.emplace_back(entry);
  }
  entries.insert(entries.end(), options.env.begin(), options.env.end());
  return entries;
}

std::vector<char*> pointers_to(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (auto& string : strings) pointers.push_back(string.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

Child::Child(std::vector<std::string> arguments, ChildOptions options) {
  if (arguments.empty()) throw std::invalid_argument("fanout_test::Child: no program");
  const Streams streams = open_streams(dir_.path(), options);
  std::vector<std::string> variables = environment(options);
  const auto argv = pointers_to(arguments);
  const auto envp = pointers_to(variables);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, streams.in.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, streams.out.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, streams.err_fd(), STDERR_FILENO);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);
  const int error = ::posix_spawn(&pid_, argv[0], &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) throw std::system_error(error, std::generic_category(), "posix_spawn " + arguments[0]);
  process_ = fanout::sys::ChildProcess(pid_, true);
}

Child Child::fork(const std::function<int()>& body, ChildOptions options) {
  Child child;
  const Streams streams = open_streams(child.dir_.path(), options);
  std::fflush(nullptr);  // what this process buffered is printed once, by it
  const pid_t pid = ::fork();
  if (pid < 0) throw os_error("fork");
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(streams.in.get(), STDIN_FILENO);
    ::dup2(streams.out.get(), STDOUT_FILENO);
    ::dup2(streams.err_fd(), STDERR_FILENO);
    int code = 70;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  ::setpgid(pid, pid);  // here too: the group exists whichever of the two runs first
  child.pid_ = pid;
  child.process_ = fanout::sys::ChildProcess(pid, true);
  return child;
}

void Child::signal(int signal) const noexcept {
  if (!status_) process_.signal(signal);
}

void Child::signal_group(int signal) const noexcept {
  if (!status_) process_.signal_group(signal);
}

void Child::kill() noexcept {
  if (status_ || !process_.running()) return;
  process_.signal_group(SIGKILL);
  status_ = process_.wait();
}

std::optional<int> Child::wait_exit(std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    if (status_) return status_;
    if (const auto status = process_.try_reap()) {
      status_ = status;
      return status_;
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    const auto step = std::min(left, std::chrono::milliseconds(100));
    if (process_.pidfd() >= 0) {
      pollfd item{process_.pidfd(), POLLIN, 0};
      ::poll(&item, 1, static_cast<int>(step.count()));
    } else {
      std::this_thread::sleep_for(std::min(step, std::chrono::milliseconds(5)));
    }
  }
}

bool Child::running() { return !wait_exit(std::chrono::milliseconds(0)).has_value(); }

int Child::finish(std::chrono::milliseconds limit) {
  const auto status = wait_exit(limit);
  INFO("stdout:\n" << out() << "\nstderr:\n" << err());
  REQUIRE_MESSAGE(status.has_value(), "the child did not exit in time");
  REQUIRE(WIFEXITED(*status));
  return WEXITSTATUS(*status);
}

std::string Child::out() const { return read_file(dir_.path() / "stdout"); }
std::string Child::err() const { return read_file(dir_.path() / "stderr"); }

std::string Child::unread() const {
  std::ifstream in(dir_.path() / "stdout", std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset_));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::optional<std::string> Child::read_line(std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    const bool ended = !running();  // first: what it wrote before it ended is in the file then
    const std::string text = unread();
    if (const auto newline = text.find('\n'); newline != std::string::npos) {
      offset_ += newline + 1;
      return text.substr(0, newline);
    }
    if (ended || Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool Child::read_exact(void* into, std::size_t size, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    const bool ended = !running();
    const std::string text = unread();
    if (text.size() >= size) {
      std::memcpy(into, text.data(), size);
      offset_ += size;
      return true;
    }
    if (ended || Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::optional<std::string> Child::wait_for_line(const std::string& prefix, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    const bool ended = !running();
    const std::string text = out();
    // Whole lines only while it runs: the rest of a line may still be on its way.
    for (std::size_t start = 0; start < text.size();) {
      const auto newline = text.find('\n', start);
      if (newline == std::string::npos && !ended) break;
      const auto end = newline == std::string::npos ? text.size() : newline;
      if (text.compare(start, prefix.size(), prefix) == 0 && end - start >= prefix.size()) {
        return text.substr(start + prefix.size(), end - start - prefix.size());
      }
      start = end + 1;
    }
    if (ended || Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Finished run_to_end(std::vector<std::string> arguments, ChildOptions options, std::chrono::milliseconds limit) {
  Child child(std::move(arguments), std::move(options));
  Finished finished;
  if (const auto status = child.wait_exit(limit)) {
    finished.status = *status;
  } else {
    child.kill();
  }
  finished.out = child.out();
  finished.err = child.err();
  return finished;
}

}  // namespace fanout_test
