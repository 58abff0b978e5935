// child.cpp
#include "child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>

extern char** environ;

namespace fanout_bench {

namespace {

// Variables that choose a fanout process's role or mode; a child gets only those we set.
constexpr std::array<std::string_view, 5> kModeVariables{"FANOUT_BROKER", "FANOUT_WORKER", "FANOUT_LOCAL_WORKER",
                                                         "FANOUT_PROCESSES", "FANOUT_DRIVER"};

std::string_view name_of(std::string_view entry) { return entry.substr(0, entry.find('=')); }

// Whether an inherited variable stays: not one of ours, and not one the child gets a value for.
bool inherited(const char* entry, const std::vector<std::string>& replaced) {
  const std::string_view name = name_of(entry);
  if (std::find(kModeVariables.begin(), kModeVariables.end(), name) != kModeVariables.end()) return false;
  return std::none_of(replaced.begin(), replaced.end(), [&](const std::string& set) { return name_of(set) == name; });
}

std::runtime_error system_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

}  // namespace

Child::Child(const Spawn& spawn) {
  // Everything the child needs is made before fork: after it, only async-signal-safe calls.
  std::vector<std::string> arguments{spawn.path};
  arguments.insert(arguments.end(), spawn.arguments.begin(), spawn.arguments.end());
  std::vector<char*> argv;
  for (auto& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);
  std::vector<std::string> variables = spawn.environment;
  std::vector<char*> envp;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (inherited(*entry, variables)) envp.push_back(*entry);
  }
  for (auto& variable : variables) envp.push_back(variable.data());
  envp.push_back(nullptr);

  int pipe_ends[2] = {-1, -1};
  if (spawn.output == Spawn::Output::pipe && ::pipe2(pipe_ends, O_CLOEXEC) != 0) throw system_error("pipe");
  const int null_fd = spawn.output == Spawn::Output::null ? ::open("/dev/null", O_WRONLY | O_CLOEXEC) : -1;

  std::fflush(nullptr);  // nothing buffered here may be written twice
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (pipe_ends[1] >= 0) ::dup2(pipe_ends[1], STDOUT_FILENO);
    if (null_fd >= 0) ::dup2(null_fd, STDOUT_FILENO);
    ::execve(argv[0], argv.data(), envp.data());
    static constexpr char kMessage[] = "fanout-bench: cannot execute a child process\n";
    [[maybe_unused]] const auto ignored = ::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
    ::_exit(127);
  }
  const int fork_errno = errno;
  if (pipe_ends[1] >= 0) ::close(pipe_ends[1]);
  if (null_fd >= 0) ::close(null_fd);
  if (pid < 0) {
    if (pipe_ends[0] >= 0) ::close(pipe_ends[0]);
    errno = fork_errno;
    throw system_error("fork");
  }
  pid_ = pid;
  out_ = pipe_ends[0];
}

Child::~Child() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (out_ >= 0) ::close(out_);
}

std::optional<int> Child::try_reap() {
  if (status_) return status_;
  int status = 0;
  const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
  if (reaped == pid_) status_ = status;
  return status_;
}

std::string Child::read_line(Clock::time_point deadline, const std::string& what) {
  if (auto line = next_line(deadline, what)) return std::move(*line);
  // End of file: the child and everything it started are gone, or the child exited.
  const int status = wait(std::chrono::milliseconds(2000));
  throw std::runtime_error("no " + what + ": the child " + describe_status(status));
}

std::optional<std::string> Child::next_line(Clock::time_point deadline, const std::string& what) {
  if (out_ < 0) throw std::logic_error("next_line on a child whose stdout is not a pipe");
  bool exited = false;
  for (;;) {
    if (const auto newline = buffered_.find('\n'); newline != std::string::npos) {
      std::string line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      return line;
    }
    const auto now = Clock::now();
    if (now >= deadline) throw std::runtime_error("timed out waiting for " + what);
    // Wake up now and then to notice a child that died while something else holds the pipe open.
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    pollfd item{out_, POLLIN, 0};
    const int ready = ::poll(&item, 1, static_cast<int>(std::min<long long>(left, 100)));
    if (ready < 0 && errno != EINTR) throw system_error("poll");
    if (ready > 0) {
      char chunk[4096];
      const ssize_t got = ::read(out_, chunk, sizeof(chunk));
      if (got > 0) {
        buffered_.append(chunk, static_cast<std::size_t>(got));
        continue;
      }
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) throw system_error("read");
      break;  // end of file
    }
    // Exited, and the pipe stayed quiet for one more poll after that: whatever it wrote last was
    // read (a write that raced with the exit had that poll to arrive).
    if (exited) break;
    exited = ready == 0 && try_reap().has_value();
  }
  if (buffered_.empty()) return std::nullopt;
  return std::exchange(buffered_, {});
}

int Child::wait(std::chrono::milliseconds limit) {
  const auto give_up = Clock::now() + limit;
  while (!try_reap()) {
    if (Clock::now() >= give_up) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      status_ = status;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return *status_;
}

int Child::stop(int signal, std::chrono::milliseconds grace) {
  if (!try_reap()) ::kill(pid_, signal);
  return wait(grace);
}

void become_subreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) throw system_error("prctl(PR_SET_CHILD_SUBREAPER)");
}

std::vector<pid_t> reap_leftovers(std::chrono::milliseconds limit) {
  const auto give_up = Clock::now() + limit;
  std::vector<pid_t> killed;
  for (;;) {
    int status = 0;
    const pid_t reaped = ::waitpid(-1, &status, WNOHANG);
    if (reaped > 0) continue;
    if (reaped < 0 && errno == EINTR) continue;
    if (reaped < 0) return killed;  // ECHILD: nothing left
    if (Clock::now() >= give_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Still alive past the limit: find them in /proc (children of ours), kill and reap them.
  const std::string self = std::to_string(::getpid());
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
    std::istringstream rest(line.substr(line.rfind(')') + 1));
    std::string state;
    std::string ppid;
    if (rest >> state >> ppid && ppid == self) {
      const pid_t pid = static_cast<pid_t>(std::stol(name));
      ::kill(pid, SIGKILL);
      killed.push_back(pid);
    }
  }
  while (::waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
  }
  return killed;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  return "ended with wait status " + std::to_string(status);
}

std::string self_path() {
  std::error_code error;
  const auto path = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) throw std::runtime_error("cannot read /proc/self/exe: " + error.message());
  return path.string();
}

Memory memory_of(pid_t pid) {
  const std::string path = pid == 0 ? "/proc/self/status" : "/proc/" + std::to_string(pid) + "/status";
  std::ifstream status(path);
  if (!status) throw std::runtime_error("cannot read " + path);
  Memory memory;
  std::string line;
  while (std::getline(status, line)) {
    const auto kib = [&] { return std::strtod(line.c_str() + line.find(':') + 1, nullptr) / 1024.0; };
    if (line.rfind("VmRSS:", 0) == 0) memory.rss_mib = kib();
    if (line.rfind("VmHWM:", 0) == 0) memory.peak_mib = kib();
  }
  return memory;
}

bool reset_peak(pid_t pid) {
  const std::string path = pid == 0 ? "/proc/self/clear_refs" : "/proc/" + std::to_string(pid) + "/clear_refs";
  std::ofstream clear(path);
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

namespace {

Spawn broker_spawn(const std::string& program, const std::vector<std::string>& arguments) {
  std::vector<std::string> all{"--bind", "tcp://127.0.0.1:*", "--log-level", "warn"};
  all.insert(all.end(), arguments.begin(), arguments.end());
  return Spawn{program, std::move(all), {}, Spawn::Output::pipe};
}

}  // namespace

BrokerProcess::BrokerProcess(const std::string& program, const std::vector<std::string>& arguments)
    : child_(broker_spawn(program, arguments)) {
  constexpr std::string_view kPrefix = "listening ";
  const std::string line = child_.read_line(Clock::now() + std::chrono::seconds(20), "fanout-broker's endpoint");
  if (line.rfind(kPrefix, 0) != 0) throw std::runtime_error("unexpected first line from fanout-broker: " + line);
  endpoint_ = line.substr(kPrefix.size());
}

}  // namespace fanout_bench
