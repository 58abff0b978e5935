// executor.cpp
//
// The hot path: a received `tasks` frame is queued as it came (no copy, its tasks are read in
// place), each task runs through the registry with its arguments read in place, and its outcome is
// written straight into the `results` message that goes back. A results message holds results of
// one received frame (so of one batch), up to kMaxResultsPerMessage of them. Results travel
// together only while they come fast: a message leaves once its first result has waited
// kResultDelay, and before a task that is not known to be quick here (TaskDurations), so that no
// result waits for a slow task queued behind it. Nothing on the path logs or allocates per task
// beyond the result itself.
//
// Liveness: the broker hears from an executor through its messages and heartbeats. A task may run
// longer than the broker's liveness period, so a second thread heartbeats while tasks run. The
// socket is guarded by a mutex the main thread holds at all times except while it runs tasks
// (released once per frame, not per task): the heartbeat thread only ever gets the socket then,
// and the mutex is the memory barrier ZeroMQ asks for when a socket changes threads.
#include "executor.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <kj/exception.h>
#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include <fanout/task.hpp>

#include "child_table.hpp"
#include "failure.hpp"
#include "system/poll_timeout.hpp"
#include "system/signals.hpp"
#include "system/unique_fd.hpp"
#include "task_durations.hpp"
#include "transport.hpp"
#include "wire_kinds.hpp"

namespace fanout::worker {

namespace {

using Clock = std::chrono::steady_clock;

constexpr unsigned kMaxResultsPerMessage = 1024;
// Results wait for the next ones at most this long: together while tasks are quick, at once when
// they are not.
constexpr auto kResultDelay = std::chrono::milliseconds(1);
constexpr std::string_view kShellTask = wire::kShellTaskName;
// While draining, an executor with nothing left waits this long for tasks the broker sent before
// it learnt about the drain, so that they are answered here instead of bounced to another worker.
constexpr auto kDrainQuietPeriod = std::chrono::milliseconds(250);
// How long results (and the last announce) may take to leave when the executor exits.
constexpr int kExitLingerMs = 5000;
// Per result: the Result struct, ranOn and a small value, in words; bigger ones grow the message.
constexpr unsigned kWordsPerResult = 24;

// Calls `beat` every `interval` on its own thread until destroyed.
class Ticker {
 public:
  Ticker(std::chrono::milliseconds interval, std::function<void()> beat)
      : interval_(interval), beat_(std::move(beat)), thread_([this] { loop(); }) {}
  ~Ticker() {
    {
      const std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, interval_, [this] { return stop_; })) beat_();
  }

  const std::chrono::milliseconds interval_;
  const std::function<void()> beat_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once everything it uses exists
};

// The registered tasks, plus shell commands on a worker that allows them.
std::vector<std::string> names_served(const ExecutorConfig& config) {
  std::vector<std::string> names = detail::registered_task_names();
  if (config.allow_shell) names.emplace_back(kShellTask);
  return names;
}

// A shell command task as a process spec (fanout::Process pools sent it).
detail::ProcessSpec shell_spec(wire::Task::Reader task) {
  const auto shell = task.getShell();
  detail::ProcessSpec spec;
  if (shell.getUseShell()) {
    spec.command.emplace(std::string(shell.getScript().cStr(), shell.getScript().size()));
  } else {
    std::vector<std::string> argv;
    for (const auto word : shell.getArgv()) argv.emplace_back(word.cStr(), word.size());
    spec.command.emplace(std::move(argv));
  }
  if (shell.getWorkingDirectory().size() > 0) spec.path = std::string(shell.getWorkingDirectory().cStr());
  for (const auto variable : shell.getEnv()) {
    std::string name(variable.getName().cStr(), variable.getName().size());
    if (variable.getUnset()) {
      spec.env.emplace_back(std::move(name), std::nullopt);
    } else {
      spec.env.emplace_back(std::move(name), std::string(variable.getValue().cStr(), variable.getValue().size()));
    }
  }
  if (shell.getHasInput()) {
    const auto input = shell.getInput();
    spec.input.emplace(reinterpret_cast<const char*>(input.begin()), input.size());
  }
  spec.timeout = std::chrono::milliseconds(task.getTimeoutMs());
  spec.idle_timeout = std::chrono::milliseconds(shell.getIdleTimeoutMs());
  spec.quiet = shell.getQuiet();
  return spec;
}

class Executor {
 public:
  explicit Executor(const ExecutorConfig& config)
      : config_(config),
        ran_on_("worker " + config.worker_id + " pid " + std::to_string(::getpid())),
        task_names_(names_served(config)),
        context_(1),
        socket_(context_, zmq::socket_type::dealer) {
    signals_ = sys::open_signalfd({SIGTERM, SIGINT, SIGUSR1});
    wire::configure_socket(socket_);
    socket_.set(zmq::sockopt::routing_id, config_.executor_id);
    socket_.connect(config_.broker);
  }

  int run() {
    announce();
    ticker_.emplace(config_.heartbeat, [this] { heartbeat_while_busy(); });
    next_heartbeat_ = Clock::now() + config_.heartbeat;
    for (;;) {
      if (inbox_.empty()) receive_available();
      if (!inbox_.empty()) {
        Inbox& front = inbox_.front();
        run_some(front);
        if (front.next == front.tasks.size()) inbox_.pop_front();
        // Between frames: cheap checks, so that a long queue does not starve heartbeats or a
        // request to re-announce.
        handle_signals();
        heartbeat_if_due(Clock::now());
        continue;
      }
      handle_signals();
      const auto now = Clock::now();
      heartbeat_if_due(now);
      if (draining_ && now >= quiet_until_) break;
      wait_for_input(std::min(next_heartbeat_, draining_ ? quiet_until_ : Clock::time_point::max()));
    }
    ticker_.reset();
    // Results and announcements still queued in the socket get a bounded time to leave.
    socket_.set(zmq::sockopt::linger, kExitLingerMs);
    socket_.close();
    context_.close();
    if (dropped_frames_ > 0) {
      spdlog::info("executor {}: dropped {} malformed or unexpected frame(s)", config_.executor_id, dropped_frames_);
    }
    return kExecutorDrained;
  }

 private:
  // One received `tasks` frame and how far it has been run. The frame stays alive (and its tasks
  // are read in place) until every task in it has been answered.
  struct Inbox {
    wire::InMessage message;
    capnp::List<wire::Task>::Reader tasks;
    std::uint64_t batch_id = 0;
    unsigned next = 0;
  };

  void announce() {
    wire::OutMessage out;
    auto announce = out.envelope().initAnnounce();
    announce.setRole(wire::Announce::Role::EXECUTOR);
    announce.setWorkerId(config_.worker_id);
    announce.setExecutorId(config_.executor_id);
    auto names = announce.initTaskNames(static_cast<unsigned>(task_names_.size()));
    for (unsigned i = 0; i < names.size(); ++i) names.set(i, task_names_[i]);
    announce.setSlots(config_.slots);
    announce.setProcesses(config_.processes);
    announce.setAllowShell(config_.allow_shell);
    announce.setHost(config_.host);
    announce.setPid(::getpid());
    announce.setDraining(draining_);
    send(out.frame());
    last_announce_ = Clock::now();
  }

  void heartbeat_if_due(Clock::time_point now) {
    if (now < next_heartbeat_) return;
    next_heartbeat_ = now + config_.heartbeat;
    wire::OutMessage out;
    out.envelope().initHeartbeat().setSentUnixMs(wire::unix_ms());
    send(out.frame());
  }

  // On the ticker's thread: a heartbeat when the main thread is busy running tasks (it has
  // released the socket) and nothing was sent for a heartbeat interval. When the main thread holds
  // the socket it is between tasks or idle, and heartbeats by itself.
  void heartbeat_while_busy() {
    const std::unique_lock socket(socket_mutex_, std::try_to_lock);
    if (!socket.owns_lock() || Clock::now() - last_sent_ < config_.heartbeat) return;
    wire::OutMessage out;
    out.envelope().initHeartbeat().setSentUnixMs(wire::unix_ms());
    send(out.frame());
  }

  // Needs the socket (socket_mutex_ held). A frame that cannot leave now (the broker has been
  // unreachable long enough to fill the high-water mark) is dropped: the broker requeues what it
  // does not hear about.
  void send(zmq::message_t&& frame) {
    last_sent_ = Clock::now();
    if (!socket_.send(frame, zmq::send_flags::dontwait)) {
      ++unsent_frames_;
      if ((unsent_frames_ & (unsent_frames_ - 1)) == 0) {
        spdlog::warn("executor {}: the broker is not taking messages; {} dropped so far", config_.executor_id,
                     unsent_frames_);
      }
    }
  }

  void wait_for_input(Clock::time_point until) {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, signals_.get(), ZMQ_POLLIN, 0}};
    if (::zmq_poll(items, 2, sys::poll_timeout_ms(until)) < 0 && ::zmq_errno() != EINTR) throw zmq::error_t();
  }

  void handle_signals() {
    for (const int signal : sys::read_signals(signals_.get())) {
      if (signal == SIGUSR1) {
        announce();
      } else if (!draining_) {  // SIGTERM or SIGINT
        draining_ = true;
        quiet_until_ = Clock::now() + kDrainQuietPeriod;
        announce();  // with draining set: the broker sends nothing more
      }
    }
  }

  // Takes every frame that has arrived, without waiting.
  void receive_available() {
    for (;;) {
      zmq::message_t frame;
      if (!socket_.recv(frame, zmq::recv_flags::dontwait)) return;
      if (frame.more()) {  // a broker sends one frame per message: drop the whole multipart message
        while (frame.more() && socket_.recv(frame, zmq::recv_flags::dontwait)) {
        }
        drop("a multipart message");
        continue;
      }
      accept(std::move(frame));
    }
  }

  void accept(zmq::message_t&& frame) {
    std::string why;
    auto message = wire::InMessage::parse(std::move(frame), &why);
    if (!message) return drop(why);
    try {
      const auto envelope = message->envelope();
      switch (envelope.which()) {
        case wire::Envelope::TASKS: {
          const auto batch = envelope.getTasks();
          const auto tasks = batch.getTasks();  // validates the list pointer now, not mid-run
          if (tasks.size() == 0) return;
          const std::uint64_t batch_id = batch.getBatchId();
          inbox_.push_back(Inbox{std::move(*message), tasks, batch_id, 0});
          if (draining_) quiet_until_ = Clock::now() + kDrainQuietPeriod;
          return;
        }
        case wire::Envelope::HEARTBEAT:
          return;
        case wire::Envelope::ERROR:
          return on_broker_error(envelope.getError());
        default:
          return drop("an envelope an executor does not accept");
      }
    } catch (const kj::Exception& error) {
      drop(std::string("unreadable envelope: ") + error.getDescription().cStr());
    }
  }

  // The broker answers `refused` to a peer it does not know, e.g. after it restarted: announce
  // again, at most once per heartbeat interval so that a broker that keeps refusing the announce
  // itself is not flooded.
  void on_broker_error(wire::TaskError::Reader error) {
    const std::string message = error.getMessage();
    if (error.getKind() != wire::ErrorKind::REFUSED) {
      spdlog::warn("executor {}: the broker complained: {}", config_.executor_id, message);
      return;
    }
    if (Clock::now() - last_announce_ < config_.heartbeat) return;
    spdlog::info("executor {}: the broker refused us ({}); announcing again", config_.executor_id, message);
    announce();
  }

  void drop(const std::string& why) {
    ++dropped_frames_;
    // Logged with backoff (1st, 2nd, 4th, 8th...): a peer spraying garbage cannot flood the log.
    if ((dropped_frames_ & (dropped_frames_ - 1)) == 0) {
      spdlog::warn("executor {}: dropped {} ({} so far)", config_.executor_id, why, dropped_frames_);
    }
  }

  // Runs up to kMaxResultsPerMessage tasks of `inbox` and sends their results: together while
  // they come fast, each as soon as it exists otherwise (see TaskDurations).
  void run_some(Inbox& inbox) {
    unsigned count = std::min<unsigned>(kMaxResultsPerMessage, inbox.tasks.size() - inbox.next);
    auto out = std::make_unique<wire::OutMessage>(count * kWordsPerResult + 16);
    auto results = out->envelope().initResults(count);
    unsigned done = 0;  // results written into `out`
    // One clock read per task: a task's end is the next one's start.
    auto clock = Clock::now();
    auto first_done = clock;
    socket_lock_.unlock();  // the ticker may heartbeat while the tasks run
    for (unsigned i = 0; i < count; ++i) {
      const auto task = inbox.tasks[inbox.next + i];
      if (done > 0 && (clock - first_done >= kResultDelay || !durations_.known_quick(task))) {
        // The results so far leave now rather than wait for this task.
        socket_lock_.lock();
        send(truncated(*out, done));
        socket_lock_.unlock();
        out = std::make_unique<wire::OutMessage>((count - i) * kWordsPerResult + 16);
        results = out->envelope().initResults(count - i);
        count -= i;
        inbox.next += i;
        i = 0;
        done = 0;
      }
      const auto started = clock;
      run_task(task, inbox.batch_id, results[done], clock);
      durations_.record(task, clock - started);
      if (done++ == 0) first_done = clock;
    }
    socket_lock_.lock();
    inbox.next += count;
    send(out->frame());
  }

  // The message with only its first `count` results (the list is cut in place; what was reserved
  // for the rest is sent as zeroes).
  static zmq::message_t truncated(wire::OutMessage& out, unsigned count) {
    auto results = out.envelope().disownResults();
    results.truncate(count);
    out.envelope().adoptResults(kj::mv(results));
    return out.frame();
  }

  // Runs one task into `result`; `clock` is the time it starts and becomes the time it ended.
  void run_task(wire::Task::Reader task, std::uint64_t batch_id, wire::Result::Builder result,
                Clock::time_point& clock) {
    // Data fields of a list element are read without following pointers, so they never throw.
    const std::uint32_t index = task.getIndex();
    result.setBatchId(batch_id);
    result.setIndex(index);
    result.setAttempt(task.getAttempt());
    result.setRanOn(ran_on_);
    config_.running->begin(batch_id, index);
    try {
      run_call(task, result);
    } catch (...) {
      const FailureInfo failure = detail::failure_from_current_exception(ran_on_);
      fail(result, failure.kind, failure.remote_type, failure.message);
    }
    config_.running->end();
    const auto started = std::exchange(clock, Clock::now());
    result.setElapsedUs(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(clock - started).count()));
  }

  void run_call(wire::Task::Reader task, wire::Result::Builder result) {
    std::string_view name;
    wire::Value::Reader args;
    try {
      const auto text = task.getName();
      name = std::string_view(text.cStr(), text.size());
      args = task.getArgs();
    } catch (const kj::Exception& error) {
      return fail(result, ErrorKind::bad_message, "",
                  std::string("the task could not be read: ") + error.getDescription().cStr());
    }
    if (name == kShellTask) {
      if (!config_.allow_shell) {
        return fail(result, ErrorKind::refused, "",
                    "this worker does not run shell commands: it was started without --allow-shell");
      }
      return run_shell(task, result);
    }
    detail::invoke_registered(name, wire::wrap(args), wire::wrap(result.initValue()));
  }

  // Runs a shell command to its end (or its timeout) and writes how it ended into `result`. While
  // it runs, its output goes to the broker as it comes when the client asked for it (stream).
  // The main thread has released the socket (the ticker heartbeats meanwhile): each chunk takes
  // it for its send.
  void run_shell(wire::Task::Reader task, wire::Result::Builder result) {
    const detail::ProcessSpec spec = shell_spec(task);
    const bool stream = task.getShell().getStream() && !spec.quiet;
    const std::uint64_t batch_id = task.getBatchId();
    const std::uint32_t index = task.getIndex();
    if (!environment_) environment_ = detail::Environment::capture();
    std::optional<detail::ProcessOutcome> outcome;
    detail::ChildTable children(
        [&](std::size_t, OutputType type, std::string_view text) {
          if (!stream) return;
          wire::OutMessage out(static_cast<unsigned>(16 + text.size() / 8));
          auto chunk = out.envelope().initOutput();
          chunk.setBatchId(batch_id);
          chunk.setIndex(index);
          chunk.setStream(type == OutputType::out ? wire::OutputChunk::Stream::OUT : wire::OutputChunk::Stream::ERR);
          chunk.setData(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(text.data()), text.size()));
          const std::lock_guard socket(socket_mutex_);
          send(out.frame());
        },
        [&](std::size_t, detail::ProcessOutcome ended) { outcome = std::move(ended); }, "worker " + config_.worker_id);
    children.start(0, spec, *environment_);
    if (const auto pid = children.pid_of(0)) config_.running->set_shell_group(*pid);
    std::vector<pollfd> fds;
    while (!outcome) {
      fds.clear();
      const auto until = children.prepare(fds);
      if (::poll(fds.data(), fds.size(), sys::poll_timeout_ms(until)) < 0 && errno != EINTR) {
        children.stop_all(std::chrono::milliseconds(0));
      }
      children.handle(fds, 0);
    }
    config_.running->set_shell_group(0);
    auto shell = result.initShell();
    shell.setExitCode(outcome->exit_code);
    shell.setSignal(outcome->signal);
    shell.setTimedOut(outcome->timed_out);
    shell.setIdleTimedOut(outcome->idle_timed_out);
    shell.setStarted(outcome->started);
    shell.setOutput(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(outcome->output.data()), outcome->output.size()));
    shell.setErrorOutput(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(outcome->error_output.data()), outcome->error_output.size()));
    result.setExitCode(outcome->exit_code);
    result.initValue();  // `none`: the outcome is in `shell`
    result.setRanOn(outcome->ran_on);
  }

  // Replaces whatever the task wrote with an error (the union's value becomes unreachable).
  void fail(wire::Result::Builder result, ErrorKind kind, const std::string& remote_type, const std::string& message) {
    auto error = result.initError();
    error.setKind(detail::to_wire(kind));
    error.setRemoteType(remote_type);
    error.setMessage(message);
    error.setRanOn(ran_on_);
  }

  const ExecutorConfig& config_;
  const std::string ran_on_;
  const std::vector<std::string> task_names_;
  zmq::context_t context_;
  zmq::socket_t socket_;
  sys::UniqueFd signals_;
  std::deque<Inbox> inbox_;
  TaskDurations durations_;
  std::shared_ptr<const detail::Environment> environment_;  // captured at the first shell command
  bool draining_ = false;
  Clock::time_point quiet_until_ = Clock::time_point::max();
  Clock::time_point next_heartbeat_;
  Clock::time_point last_announce_;
  std::uint64_t dropped_frames_ = 0;
  std::uint64_t unsent_frames_ = 0;
  std::mutex socket_mutex_;
  std::unique_lock<std::mutex> socket_lock_{socket_mutex_};  // the main thread's hold on the socket
  Clock::time_point last_sent_;                              // guarded by socket_mutex_
  std::optional<Ticker> ticker_;  // last: stopped before anything it uses goes
};

}  // namespace

int run_executor(const ExecutorConfig& config) {
  try {
    Executor executor(config);
    return executor.run();
  } catch (const std::exception& error) {
    spdlog::error("executor {}: {}", config.executor_id, error.what());
    return kExecutorFailed;
  }
}

}  // namespace fanout::worker
