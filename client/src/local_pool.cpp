// local_pool.cpp
#include "local_pool.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fanout/error.hpp>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "broker.hpp"
#include "program.hpp"

extern char** environ;

namespace fanout::detail {

namespace {

std::string unique_suffix() {
  static std::atomic<unsigned> counter{0};
  std::random_device random;
  return std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + std::to_string(random());
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == kForgotInitExitCode) return "stopped: the program's main() does not call fanout::init(argc, argv) first";
  return "exited with code " + std::to_string(code);
}

}  // namespace

LocalPool::LocalPool(zmq::context_t& context, const LocalPoolOptions& options) {
  const std::string suffix = unique_suffix();
  broker::Config config;
  client_endpoint_ = "inproc://fanout-local-" + suffix;
  // Abstract ipc names: no file to clean up, ever, and a second bind of one fails (EADDRINUSE).
  worker_endpoint_ = options.worker_endpoint.empty() ? "ipc://@fanout-local-" + suffix : options.worker_endpoint;
  config.endpoints = {client_endpoint_, worker_endpoint_};
  config.journal = options.journal;
  // The embedded broker is part of the program: what goes wrong reaches the caller as slot
  // failures, so it speaks up only for errors unless FANOUT_LOG_LEVEL asks for more.
  config.logger = std::make_shared<spdlog::logger>("fanout-broker", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  const char* level = std::getenv("FANOUT_LOG_LEVEL");
  config.logger->set_level(level != nullptr && *level != '\0' ? spdlog::level::from_str(level) : spdlog::level::err);
  broker_ = std::make_unique<broker::Broker>(config, context);
  broker_thread_ = std::thread([this] { broker_->run(); });
  // The worker is spawned and reaped by one long-lived thread: PR_SET_PDEATHSIG fires when the
  // *thread* that forked dies, so it must not be a caller's short-lived thread.
  watcher_ = std::thread([this] { watch_worker(); });
}

LocalPool::~LocalPool() {
  stopping_ = true;
  if (const pid_t pid = worker_pid_.load(); pid > 0) {
    // SIGTERM then SIGINT: the worker starts draining and, at the second signal, kills its
    // executors and reaps them before it exits. (Killing the worker outright would leave the
    // executors to init, and not every init reaps.) SIGKILL if that takes too long.
    ::kill(pid, SIGTERM);
    ::kill(pid, SIGINT);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (worker_pid_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (const pid_t still = worker_pid_.load(); still > 0) ::kill(still, SIGKILL);
  }
  if (watcher_.joinable()) watcher_.join();
  broker_->stop();
  if (broker_thread_.joinable()) broker_thread_.join();
}

std::optional<std::string> LocalPool::broken() const {
  const std::lock_guard lock(mutex_);
  return broken_;
}

pid_t LocalPool::spawn_worker() {
  // Everything the child needs is prepared before fork: after it, only exec-safe calls.
  const std::string executable = program_path();
  std::vector<std::string> arguments = program_arguments();
  if (arguments.empty()) arguments.push_back(executable);
  std::vector<char*> argv;
  for (auto& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);
  std::vector<std::string> variables{std::string(kWorkerRoleVariable) + "=" + worker_endpoint_};
  std::vector<char*> envp;
  for (char** variable = environ; *variable != nullptr; ++variable) {
    if (std::strncmp(*variable, kWorkerRoleVariable, std::strlen(kWorkerRoleVariable)) != 0) envp.push_back(*variable);
  }
  for (auto& variable : variables) envp.push_back(variable.data());
  envp.push_back(nullptr);

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::execve(executable.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

void LocalPool::watch_worker() {
  // A worker that dies is restarted, unless it dies young twice in a row: then something is wrong
  // with the program (no fanout::init, a crash at start-up) and batches fail with the reason.
  int quick_deaths = 0;
  while (!stopping_) {
    const auto started = std::chrono::steady_clock::now();
    const pid_t pid = spawn_worker();
    if (pid < 0) {
      const std::lock_guard lock(mutex_);
      broken_ = std::string("cannot start the local worker pool: fork: ") + std::strerror(errno);
      return;
    }
    worker_pid_ = pid;
    if (stopping_) ::kill(pid, SIGKILL);  // the destructor may have looked before the pid was set
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    worker_pid_ = -1;
    if (stopping_) return;
    const std::string how = "the local worker pool " + describe_exit(status);
    std::fprintf(stderr, "fanout: %s\n", how.c_str());
    quick_deaths = std::chrono::steady_clock::now() - started < std::chrono::seconds(2) ? quick_deaths + 1 : 0;
    if (quick_deaths >= 2 || (WIFEXITED(status) && WEXITSTATUS(status) == kForgotInitExitCode)) {
      const std::lock_guard lock(mutex_);
      broken_ = how;
      return;
    }
  }
}

}  // namespace fanout::detail
