// local_pool.cpp
#include "local_pool.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <fanout/broker/broker.hpp>
#include <fanout/error.hpp>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "limits.hpp"
#include "program.hpp"
#include "system/child_process.hpp"
#include "system/exec_image.hpp"
#include "system/os_error.hpp"
#include "system/private_directory.hpp"
#include "system/poll_timeout.hpp"
#include "system/signals.hpp"

namespace fanout::detail {

namespace {

using Clock = std::chrono::steady_clock;

// The local pool's socket files: PREFIX PID-COUNTER-RANDOM.sock in the private runtime directory.
const std::string kPoolSocketPrefix = "pool-";
// How long a stopping worker gets to drain before it is killed.
constexpr auto kStopGrace = std::chrono::seconds(3);
// A worker that dies this young twice in a row is not restarted again.
constexpr auto kYoungDeath = std::chrono::seconds(2);
// Without pidfds (kernels before 5.3), how often the worker is polled for its end.
constexpr int kReapPollMs = 10;

std::string unique_suffix() {
  static std::atomic<unsigned> counter{0};
  std::random_device random;
  return std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + std::to_string(random());
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return "was killed by " + sys::describe_signal(WTERMSIG(status));
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == kForgotInitExitCode) return "stopped: the program's main() does not call fanout::init(argc, argv) first";
  return "exited with code " + std::to_string(code);
}

// Waits until `worker` ends (returns its wait status) or `stop` is notified (returns nullopt),
// whichever comes first, at most until `deadline`.
std::optional<int> wait_for_end(sys::ChildProcess& worker, const sys::EventFd* stop, Clock::time_point deadline) {
  for (;;) {
    if (const auto status = worker.try_reap()) return status;
    pollfd fds[2] = {{worker.pidfd(), POLLIN, 0}, {stop != nullptr ? stop->fd() : -1, POLLIN, 0}};
    int timeout = sys::poll_timeout_ms(deadline);
    if (worker.pidfd() < 0 && (timeout < 0 || timeout > kReapPollMs)) timeout = kReapPollMs;
    if (::poll(fds, 2, timeout) < 0 && errno != EINTR) return std::nullopt;
    if (const auto status = worker.try_reap()) return status;
    if (fds[1].revents != 0 || Clock::now() >= deadline) return std::nullopt;
  }
}

}  // namespace

LocalPool::LocalPool(zmq::context_t& context, const LocalPoolOptions& options) {
  const std::string suffix = unique_suffix();
  broker::Config config;
  client_endpoint_ = "inproc://fanout-local-" + suffix;
  // A socket file in this user's private directory, not an abstract name: any user may connect to
  // an abstract socket, and a stranger's executor would be handed this program's tasks.
  if (options.worker_endpoint.empty()) {
    sys::remove_stale_sockets(kPoolSocketPrefix);
    try {
      worker_endpoint_ = sys::private_ipc_endpoint(kPoolSocketPrefix + suffix + ".sock");
      socket_file_ = worker_endpoint_.substr(std::string_view("ipc://").size());
    } catch (const std::runtime_error& error) {
      throw Error(std::string("cannot start the local worker pool: ") + error.what());
    }
  } else {
    worker_endpoint_ = options.worker_endpoint;
  }
  config.endpoints = {client_endpoint_, worker_endpoint_};
  config.max_frame_bytes = wire::max_frame_bytes();  // as this program's windows and its workers
  config.journal = options.journal;
  // The embedded broker is part of the program: what goes wrong reaches the caller as slot
  // failures, so it speaks up only for errors unless FANOUT_LOG_LEVEL asks for more. The local
  // service (with a journal) is nobody's caller: its deferred tasks' failed attempts and deaths
  // reach only its log (service.log), so it logs at info.
  config.logger = std::make_shared<spdlog::logger>("fanout-broker", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  const char* level = std::getenv("FANOUT_LOG_LEVEL");
  const auto quiet = options.journal.empty() ? spdlog::level::err : spdlog::level::info;
  config.logger->set_level(level != nullptr && *level != '\0' ? spdlog::level::from_str(level) : quiet);
  broker_ = std::make_unique<broker::Broker>(config, context);
  broker_thread_ = std::thread([this] { broker_->run(); });
  // The worker is started and reaped by one long-lived thread: PR_SET_PDEATHSIG fires when the
  // *thread* that forked dies, so it must not be a caller's short-lived thread.
  watcher_ = std::thread([this] { watch_worker(); });
}

LocalPool::~LocalPool() {
  stop();
  // ZeroMQ leaves an ipc socket's file behind when the socket closes.
  if (!socket_file_.empty()) ::unlink(socket_file_.c_str());
}

void LocalPool::stop() {
  stopping_ = true;
  stop_requested_.notify();
  if (watcher_.joinable()) watcher_.join();
  broker_->stop();
  if (broker_thread_.joinable()) broker_thread_.join();
}

std::uint64_t LocalPool::deferred_accepted() const { return broker_->counters().deferred_accepted.load(); }

std::optional<std::string> LocalPool::broken() const {
  const std::lock_guard lock(mutex_);
  return broken_;
}

void LocalPool::set_broken(std::string why) {
  const std::lock_guard lock(mutex_);
  broken_ = std::move(why);
}

void LocalPool::watch_worker() {
  // Everything the child needs is prepared before fork: after it, only exec-safe calls.
  const sys::ExecImage image(program_path(), program_arguments(), {kWorkerRoleVariable},
                             {std::string(kWorkerRoleVariable) + "=" + worker_endpoint_});
  // A worker that dies is restarted, unless it dies young twice in a row: then something is wrong
  // with the program (no fanout::init, a crash at start-up) and batches fail with the reason.
  int quick_deaths = 0;
  while (!stopping_) {
    const auto started = Clock::now();
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) return set_broken(std::string("cannot start the local worker pool: ") + sys::os_error("fork").what());
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      image.exec();
    }
    sys::ChildProcess worker(pid, /*group_leader=*/false);
    const auto status = wait_for_end(worker, &stop_requested_, Clock::time_point::max());
    if (!status) {
      // SIGTERM then SIGINT: the worker starts draining and, at the second signal, kills its
      // executors and reaps them before it exits. (Killing the worker outright would leave the
      // executors to init, and not every init reaps.) SIGKILL, by the destructor, if that takes
      // too long.
      worker.signal(SIGTERM);
      worker.signal(SIGINT);
      wait_for_end(worker, nullptr, Clock::now() + kStopGrace);
      return;
    }
    if (stopping_) return;
    const std::string how = "the local worker pool " + describe_exit(*status);
    std::fprintf(stderr, "fanout: %s\n", how.c_str());
    quick_deaths = Clock::now() - started < kYoungDeath ? quick_deaths + 1 : 0;
    if (quick_deaths >= 2 || (WIFEXITED(*status) && WEXITSTATUS(*status) == kForgotInitExitCode)) {
      return set_broken(how);
    }
  }
}

}  // namespace fanout::detail
