// supervisor.cpp
//
// One thread, one poll loop over the DEALER to the broker and a signalfd (SIGCHLD, SIGTERM,
// SIGINT), plus timers (heartbeat, broker liveness, delayed restarts, drain deadline). An
// executor's death wakes the loop at once through SIGCHLD; what it was running is read from the
// shared RunningTable, since a dead process cannot say it.
//
// Fork hygiene: the first executors are forked before the supervisor's ZeroMQ context exists.
// Replacements are forked later, from a process whose context has I/O threads and sockets: the
// child never touches that context (it creates its own) and closes every descriptor the supervisor
// opened after loading the task libraries, so that it cannot keep the supervisor's connection to
// the broker open or read its signals.
#include "supervisor.hpp"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <kj/exception.h>
#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include <fanout/task.hpp>
#include <fanout/version.hpp>

#include "backoff.hpp"
#include "executor.hpp"
#include "printable.hpp"
#include "running_table.hpp"
#include "system/child_process.hpp"
#include "system/descriptors.hpp"
#include "system/machine.hpp"
#include "system/os_error.hpp"
#include "system/poll_timeout.hpp"
#include "system/signals.hpp"
#include "system/unique_fd.hpp"
#include "keys.hpp"
#include "transport.hpp"

namespace fanout::worker {

namespace {

// Peer text in a log line: escaped and bounded (printable.hpp).
std::string shown(std::string_view text) { return wire::printable(text, wire::kLogTextLimit); }

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// An executor that dies this soon after starting, without running a task and without being told
// to, is probably failing to start at all: its replacement waits (with backoff) instead of
// spinning on fork.
constexpr auto kQuickDeath = std::chrono::seconds(1);
constexpr milliseconds kBackoffInitial{100};
constexpr milliseconds kBackoffLimit{5000};
constexpr double kBackoffJitter = 0.5;
// Reconnecting to a silent broker backs off to at most this: an attempt costs one fresh
// connection (a SYN), and after a partition heals the worker is back within about this long.
constexpr milliseconds kReconnectLimit{500};
// How long the final `bye` may take to leave.
constexpr int kByeLingerMs = 1000;
// Messages handled per wake-up before timers get a turn.
constexpr unsigned kMaxMessagesPerWakeup = 1024;

std::uint64_t random_seed() {
  std::random_device device;
  return (std::uint64_t{device()} << 32) ^ device() ^ static_cast<std::uint64_t>(::getpid());
}

// Runs in the freshly forked child; never returns.
[[noreturn]] void become_executor(const ExecutorConfig& config, pid_t supervisor, const std::vector<int>& keep,
                                  const sigset_t& mask) noexcept {
  int code = kExecutorFailed;
  try {
    ::setpgid(0, 0);  // its own group, so that stopping it also stops what its task started
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() == supervisor) {  // else the supervisor died before prctl could watch it
      sys::close_descriptors_except(keep);
      ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
      code = run_executor(config);
    }
  } catch (...) {
    code = kExecutorFailed;
  }
  std::fflush(nullptr);  // what tasks printed; _exit drops stdio buffers
  ::_exit(code);
}

struct ExecutorSlot {
  unsigned number = 0;
  unsigned generation = 0;  // of the next executor started in this slot
  std::string id;           // of the current (or last) executor
  sys::ChildProcess process;
  Clock::time_point started{};
  bool stop_requested = false;  // killed on the broker's stopExecutor
  bool drain_expired = false;   // killed because the worker's drain took too long
  Clock::time_point restart_at = Clock::time_point::max();
  Backoff restart_backoff;
  bool extra = false;    // started because the broker asked to grow: leaves when idle, never replaced
  bool retired = false;  // an extra that left: the slot waits for the next growth
};

enum class Link {
  connecting,  // announced on a fresh socket, not heard from the broker yet
  live,        // heard from the broker within the liveness period
  lost,        // silent for too long: reconnecting with backoff
};

}  // namespace

class Supervisor::State {
 public:
  explicit State(const Config& config)
      : config_(config),
        frame_limit_(config.max_frame_bytes != 0 ? config.max_frame_bytes : wire::max_frame_bytes()),
        host_(sys::host_name()),
        // Taken before the supervisor opens anything: what executors keep (see the file comment).
        inherited_fds_(sys::open_descriptors()),
        blocked_({SIGTERM, SIGINT, SIGCHLD, SIGUSR1, SIGUSR2}),
        signals_(sys::open_signalfd(blocked_.blocked())),
        running_(config.max_processes),  // mapped before any fork: growth needs its slots too
        reconnect_backoff_(kBackoffInitial, kReconnectLimit, kBackoffJitter, random_seed()) {
    // Executors keep SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 blocked (they read them from their own
    // signalfd between tasks, so a task is never interrupted); SIGCHLD is as it was.
    executor_mask_ = blocked_.previous();
    for (const int signal : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2}) ::sigaddset(&executor_mask_, signal);
    const std::uint64_t seed = random_seed();
    slots_.reserve(config.max_processes);
    for (unsigned n = 0; n < config.max_processes; ++n) {
      slots_.push_back(ExecutorSlot{n, 0, {}, sys::ChildProcess(), {}, false, false, Clock::time_point::max(),
                                    Backoff(kBackoffInitial, kBackoffLimit, kBackoffJitter, seed + n), n >= config.processes,
                                    n >= config.processes});
    }
  }

  ~State() {
    for (const auto& slot : slots_) stop_shell_command(slot);
  }
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  int run() {
    // The first executors are forked while this process has one thread: before any ZeroMQ
    // context exists, and before on_setup starts the operations endpoint's threads. A fork while
    // another thread holds a lock the child then takes (an allocator's that does not guard fork,
    // as ASan's in GCC 12 does not) leaves the executor hung before it ever announces.
    for (auto& slot : slots_) {
      if (!slot.retired) start_executor(slot);
    }
    if (config_.on_setup) config_.on_setup();
    context_.emplace(1);
    connect();
    next_heartbeat_ = Clock::now() + config_.heartbeat;
    next_attempt_ = Clock::now() + config_.liveness;  // the first connection gets a whole liveness period
    spdlog::info("worker {}: {} executor(s) with {} slot(s) each (up to {} when asked to grow), connecting to {}",
                 config_.worker_id, config_.processes, config_.slots_per_executor, config_.max_processes,
                 config_.broker);
    while (!(draining_ && live_executors() == 0)) {
      report_status();
      wait();
      handle_signals();
      receive();
      run_timers();
    }
    leave();
    return forced_ ? kExitFailure : kExitClean;
  }

 private:
  // ---- executors ------------------------------------------------------------------------------

  void start_executor(ExecutorSlot& slot) {
    // Its routing id at the broker ends in 64 random bits: ZeroMQ's handover (which lets an
    // executor rejoin after a partition) gives a live routing id's connection, and the tasks sent
    // to it, to whoever connects under it next, and a listed key of another worker must not be
    // able to guess one (docs/security.md).
    char nonce[17];
    std::snprintf(nonce, sizeof nonce, "%016llx", static_cast<unsigned long long>(random_seed()));
    slot.id = config_.worker_id + "/" + std::to_string(slot.number) + "/" + std::to_string(slot.generation) + "/" + nonce;
    running_[slot.number].reset();
    const ExecutorConfig executor{config_.broker,       config_.worker_id,  slot.id,
                                  host_,                config_.slots_per_executor, config_.allow_shell,
                                  config_.heartbeat,    &running_[slot.number],
                                  static_cast<unsigned>(executors_wanted()),
                                  slot.extra ? config_.extra_idle : std::chrono::milliseconds(0),
                                  config_.pass_env,     frame_limit_};
    std::fflush(nullptr);  // unflushed output would be printed again by the child
    const pid_t supervisor = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) sys::throw_os_error("fork of executor " + slot.id);
    if (pid == 0) become_executor(executor, supervisor, inherited_fds_, executor_mask_);
    ::setpgid(pid, pid);  // both sides set it, so the group exists before either relies on it
    slot.process = sys::ChildProcess(pid);
    slot.started = Clock::now();
    slot.stop_requested = false;
    slot.restart_at = Clock::time_point::max();
    ++slot.generation;
    spdlog::debug("worker {}: started executor {} (pid {})", config_.worker_id, slot.id, pid);
  }

  void start_replacement(ExecutorSlot& slot) {
    try {
      start_executor(slot);
    } catch (const std::system_error& error) {
      slot.restart_at = Clock::now() + slot.restart_backoff.next();
      spdlog::error("worker {}: {}; trying again later", config_.worker_id, error.what());
    }
  }

  // The executors this worker runs, or restarts: every slot but the retired extras.
  std::size_t executors_wanted() const {
    return static_cast<std::size_t>(
        std::count_if(slots_.begin(), slots_.end(), [](const ExecutorSlot& slot) { return !slot.retired; }));
  }

  // The broker's Grow: up to `count` more executors, in retired slots, as far as max_processes allows.
  void grow(std::uint32_t count) {
    if (draining_) return;
    std::uint32_t started = 0;
    for (auto& slot : slots_) {
      if (started == count) break;
      if (!slot.retired) continue;
      slot.retired = false;
      start_replacement(slot);
      ++started;
    }
    if (started > 0) {
      spdlog::info("worker {}: {} more executor(s) at the broker's request ({} now)", config_.worker_id, started,
                   executors_wanted());
    }
    announce();  // the new number, also when it could not grow: the broker stops waiting for it
  }

  // For the operations endpoint (Config::status): once per turn of the loop.
  void report_status() {
    if (config_.status == nullptr) return;
    Status& status = *config_.status;
    status.pulse.beat();
    std::uint32_t alive = 0, busy = 0;
    for (const auto& slot : slots_) {
      if (!slot.process.running()) continue;
      ++alive;
      busy += running_[slot.number].read().running ? 1 : 0;
    }
    status.executors.store(alive, std::memory_order_relaxed);
    status.tasks_running.store(busy, std::memory_order_relaxed);
  }

  std::size_t live_executors() const {
    return static_cast<std::size_t>(
        std::count_if(slots_.begin(), slots_.end(), [](const ExecutorSlot& slot) { return slot.process.running(); }));
  }

  void reap_executors() {
    for (auto& slot : slots_) {
      const auto status = slot.process.try_reap(/*kill_group=*/true);
      if (!status) continue;
      stop_shell_command(slot);
      on_executor_exit(slot, *status);
    }
  }

  // A shell command outlives an executor that dies while it runs (it is in a process group of
  // its own): stop it here.
  void stop_shell_command(const ExecutorSlot& slot) noexcept {
    if (const std::int32_t group = running_[slot.number].read_shell_group(); group > 0) ::kill(-group, SIGKILL);
  }

  void on_executor_exit(ExecutorSlot& slot, int status) {
    const RunningSlot::Snapshot running = running_[slot.number].read();
    if (slot.extra && !draining_ && WIFEXITED(status) && WEXITSTATUS(status) == kExecutorDrained) {
      // An extra executor that had nothing to do left (it said bye): the slot waits for the next growth.
      slot.retired = true;
      spdlog::debug("worker {}: extra executor {} left, idle", config_.worker_id, slot.id);
      announce();
      return;
    }
    if (draining_ && WIFEXITED(status) && WEXITSTATUS(status) == kExecutorDrained) {
      spdlog::debug("worker {}: executor {} drained", config_.worker_id, slot.id);
      return;
    }
    report_lost(slot, status, running);
    if (running.running) {
      spdlog::warn("worker {}: executor {} ended ({}) while running task {} of batch {}", config_.worker_id, slot.id,
                   sys::describe_wait_status(status), running.index, running.batch_id);
    } else {
      spdlog::log(slot.stop_requested ? spdlog::level::info : spdlog::level::warn, "worker {}: executor {} ended ({})",
                  config_.worker_id, slot.id, sys::describe_wait_status(status));
    }
    if (draining_) return;
    if (config_.status != nullptr) config_.status->executor_restarts.fetch_add(1, std::memory_order_relaxed);
    const auto now = Clock::now();
    if (now - slot.started < kQuickDeath && !running.running && !slot.stop_requested) {
      slot.restart_at = now + slot.restart_backoff.next();
      return;
    }
    slot.restart_backoff.reset();
    start_replacement(slot);
  }

  void report_lost(const ExecutorSlot& slot, int status, const RunningSlot::Snapshot& running) {
    wire::OutMessage out;
    auto lost = out.envelope().initExecutorLost();
    lost.setExecutorId(slot.id);
    lost.setSignal(WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    lost.setExitCode(WIFEXITED(status) ? WEXITSTATUS(status) : 0);
    lost.setRunning(running.running);
    if (running.running) {
      lost.setBatchId(running.batch_id);
      lost.setIndex(running.index);
    }
    lost.setStoppedByBroker(slot.stop_requested);
    lost.setDrained(slot.drain_expired);
    send(out.frame());
  }

  void stop_executor(wire::StopExecutor::Reader stop) {
    const std::string id = stop.getExecutorId();
    const auto found = std::find_if(slots_.begin(), slots_.end(),
                                    [&](const ExecutorSlot& slot) { return slot.id == id && slot.process.running(); });
    if (found == slots_.end()) {
      spdlog::debug("worker {}: stopExecutor for {}, which is not running here", config_.worker_id, id);
      return;
    }
    spdlog::info("worker {}: stopping executor {} for the broker: {}", config_.worker_id, shown(id),
                 wire::printable(std::string(stop.getReason()), wire::kLogTextLimit));
    found->stop_requested = true;
    found->process.signal_group(SIGKILL);  // its death is reported (and it is replaced) on SIGCHLD
  }

  // SIGUSR1: announce again (the broker restarted and does not know them); SIGUSR2: reconnect on
  // a fresh connection first (after a silence: their old connections may be dead too).
  void tell_executors_to_announce(bool reconnect = false) {
    for (const auto& slot : slots_) slot.process.signal(reconnect ? SIGUSR2 : SIGUSR1);
  }

  // ---- the broker -----------------------------------------------------------------------------

  // A fresh socket, then an announce. A new socket (rather than ZeroMQ's own reconnection) also
  // gets past a connection that is dead without either side having been told (a vanished host).
  void connect() {
    socket_.reset();
    socket_.emplace(*context_, zmq::socket_type::dealer);
    wire::configure_socket(*socket_, frame_limit_);
    wire::connect_to_broker(*socket_, config_.broker);
    announce();
  }

  void reconnect() {
    link_ = Link::lost;
    if (config_.status != nullptr) config_.status->registered = false;
    connect();
    const auto delay = reconnect_backoff_.next();
    next_attempt_ = Clock::now() + delay;
    spdlog::info("worker {}: the broker at {} is silent; reconnected and announced (next try in {} ms)",
                 config_.worker_id, config_.broker, delay.count());
  }

  void announce() {
    wire::OutMessage out;
    auto announce = out.envelope().initAnnounce();
    announce.setRole(wire::Announce::Role::SUPERVISOR);
    announce.setWorkerId(config_.worker_id);
    announce.setHost(host_);
    announce.setPid(::getpid());
    announce.setProcesses(static_cast<std::uint32_t>(executors_wanted()));
    announce.setMaxProcesses(config_.max_processes);
    announce.setAllowShell(config_.allow_shell);
    announce.setVersion(FANOUT_VERSION);
    announce.setDraining(draining_);
    const auto names = detail::registered_task_names();
    auto list = announce.initTaskNames(static_cast<unsigned>(names.size()));
    for (unsigned i = 0; i < list.size(); ++i) list.set(i, names[i]);
    send(out.frame());
    last_announce_ = Clock::now();
  }

  void send(zmq::message_t&& frame) {
    if (!socket_->send(frame, zmq::send_flags::dontwait)) {
      spdlog::debug("worker {}: a message to the broker could not be queued", config_.worker_id);
    }
  }

  void receive() {
    for (unsigned i = 0; i < kMaxMessagesPerWakeup; ++i) {
      zmq::message_t frame;
      if (!socket_->recv(frame, zmq::recv_flags::dontwait)) return;
      if (frame.more()) {
        while (frame.more() && socket_->recv(frame, zmq::recv_flags::dontwait)) {
        }
        drop("a multipart message");
        continue;
      }
      std::string why;
      auto message = wire::InMessage::parse(std::move(frame), &why, frame_limit_);
      if (!message) {
        drop(why);
        continue;
      }
      heard_from_broker();
      try {
        const auto envelope = message->envelope();
        switch (envelope.which()) {
          case wire::Envelope::HEARTBEAT:
            break;
          case wire::Envelope::STOP_EXECUTOR:
            stop_executor(envelope.getStopExecutor());
            break;
          case wire::Envelope::GROW:
            grow(envelope.getGrow().getExecutors());
            break;
          case wire::Envelope::ERROR:
            on_broker_error(envelope.getError());
            break;
          default:
            drop("an envelope a supervisor does not accept");
        }
      } catch (const kj::Exception& error) {
        drop(std::string("unreadable envelope: ") + error.getDescription().cStr());
      }
    }
  }

  void heard_from_broker() {
    last_heard_ = Clock::now();
    if (link_ == Link::live) return;
    if (config_.status != nullptr) config_.status->registered = true;
    const bool recovered = link_ == Link::lost;
    link_ = Link::live;
    reconnect_backoff_.reset();
    if (recovered) {
      // After a silence the executors' connections may be as dead as the supervisor's was: they
      // reconnect afresh rather than wait for TCP to give up on them, and announce themselves.
      spdlog::info("worker {}: the broker answers again; executors reconnect and announce themselves", config_.worker_id);
      tell_executors_to_announce(/*reconnect=*/true);
    } else {
      spdlog::info("worker {}: connected to the broker at {}", config_.worker_id, config_.broker);
    }
  }

  // `refused` is the broker's "who are you?" (it restarted, or declared us dead): announce again,
  // executors too, at most once per heartbeat interval.
  void on_broker_error(wire::TaskError::Reader error) {
    const std::string message = error.getMessage();
    if (error.getKind() != wire::ErrorKind::REFUSED) {
      spdlog::warn("worker {}: the broker complained: {}", config_.worker_id, shown(message));
      return;
    }
    if (Clock::now() - last_announce_ < config_.heartbeat) return;
    spdlog::info("worker {}: the broker refused us ({}); announcing again", config_.worker_id,
                 shown(message));
    announce();
    tell_executors_to_announce();
  }

  void drop(const std::string& why) {
    ++dropped_frames_;
    if ((dropped_frames_ & (dropped_frames_ - 1)) == 0) {
      spdlog::warn("worker {}: dropped {} from the broker ({} so far)", config_.worker_id, why, dropped_frames_);
    }
  }

  // ---- loop -----------------------------------------------------------------------------------

  void wait() {
    auto until = next_heartbeat_;
    until = std::min(until, link_ == Link::live ? last_heard_ + config_.liveness : next_attempt_);
    if (draining_ && !killed_at_deadline_) until = std::min(until, drain_deadline_);
    for (const auto& slot : slots_) until = std::min(until, slot.restart_at);
    zmq::pollitem_t items[] = {{socket_->handle(), 0, ZMQ_POLLIN, 0}, {nullptr, signals_.get(), ZMQ_POLLIN, 0}};
    if (::zmq_poll(items, 2, sys::poll_timeout_ms(until)) < 0 && ::zmq_errno() != EINTR) throw zmq::error_t();
  }

  void handle_signals() {
    bool child_ended = false;
    for (const int signal : sys::read_signals(signals_.get())) {
      if (signal == SIGCHLD) {
        child_ended = true;
      } else if (signal == SIGTERM || signal == SIGINT) {
        if (!draining_) {
          begin_drain(signal);
        } else if (!forced_) {
          force_stop(signal);
        }
      }
    }
    if (child_ended) reap_executors();
  }

  void begin_drain(int signal) {
    draining_ = true;
    drain_deadline_ = Clock::now() + config_.drain_timeout;
    spdlog::info("worker {}: SIG{} received; draining (executors hand back what they have not started and finish "
                 "what runs, at most {} ms)",
                 config_.worker_id, ::sigabbrev_np(signal), config_.drain_timeout.count());
    announce();  // with draining set: the broker sends nothing new
    for (auto& slot : slots_) {
      slot.restart_at = Clock::time_point::max();
      slot.process.signal(SIGTERM);
    }
  }

  void force_stop(int signal) {
    forced_ = true;
    spdlog::warn("worker {}: second SIG{} while draining; killing the executors", config_.worker_id,
                 ::sigabbrev_np(signal));
    for (const auto& slot : slots_) slot.process.signal_group(SIGKILL);
  }

  void run_timers() {
    const auto now = Clock::now();
    if (now >= next_heartbeat_) {
      next_heartbeat_ = now + config_.heartbeat;
      wire::OutMessage out;
      out.envelope().initHeartbeat().setSentUnixMs(wire::unix_ms());
      send(out.frame());
    }
    if (link_ == Link::live ? now - last_heard_ >= config_.liveness : now >= next_attempt_) reconnect();
    if (!draining_) {
      for (auto& slot : slots_) {
        if (!slot.process.running() && now >= slot.restart_at) start_replacement(slot);
      }
    } else if (!killed_at_deadline_ && now >= drain_deadline_) {
      killed_at_deadline_ = true;
      spdlog::warn("worker {}: {} executor(s) still busy after {} ms; killing them (their tasks run again elsewhere)",
                   config_.worker_id, live_executors(), config_.drain_timeout.count());
      for (auto& slot : slots_) {
        slot.drain_expired = slot.process.running();
        slot.process.signal_group(SIGKILL);
      }
    }
  }

  void leave() {
    wire::OutMessage out;
    out.envelope().setBye();
    send(out.frame());
    socket_->set(zmq::sockopt::linger, kByeLingerMs);
    socket_.reset();
    context_.reset();  // waits (at most the linger) for the bye to leave
    if (dropped_frames_ > 0) spdlog::info("worker {}: dropped {} malformed frame(s)", config_.worker_id, dropped_frames_);
    spdlog::info("worker {}: stopped", config_.worker_id);
  }

  const Config config_;
  const std::size_t frame_limit_;  // the largest frame in or out (Config::max_frame_bytes, resolved)
  const std::string host_;
  const std::vector<int> inherited_fds_;
  sys::BlockedSignals blocked_;
  sys::UniqueFd signals_;
  sigset_t executor_mask_{};
  RunningTable running_;
  std::vector<ExecutorSlot> slots_;
  // Declared after the executors: the socket closes before the context, and both before the
  // executors are killed and reaped by their sys::ChildProcess destructors.
  std::optional<zmq::context_t> context_;
  std::optional<zmq::socket_t> socket_;

  Link link_ = Link::connecting;
  Backoff reconnect_backoff_;
  Clock::time_point last_heard_{};
  Clock::time_point next_attempt_{};
  Clock::time_point last_announce_{};
  Clock::time_point next_heartbeat_{};
  bool draining_ = false;
  bool forced_ = false;
  bool killed_at_deadline_ = false;
  Clock::time_point drain_deadline_ = Clock::time_point::max();
  std::uint64_t dropped_frames_ = 0;
};

Supervisor::Supervisor(const Config& config) : state_(std::make_unique<State>(config)) {}
Supervisor::~Supervisor() = default;
int Supervisor::run() { return state_->run(); }

}  // namespace fanout::worker
