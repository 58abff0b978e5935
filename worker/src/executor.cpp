// executor.cpp
//
// The hot path: a received `tasks` frame is queued as it came (TaskQueue: no copy, its tasks are
// read in place), each task runs through the registry with its arguments read in place, and its
// outcome is written straight into the `results` message that goes back. A results message holds
// results of one received frame (so of one batch), up to kMaxResultsPerMessage of them. Results
// travel together only while they come fast: a message leaves once its first result has waited
// kResultDelay, and before a task that is not known to be quick here (TaskDurations), so that no
// result waits for a slow task queued behind it. Nothing on the path logs or allocates per task
// beyond the result itself.
//
// Two threads share the socket, guarded by a mutex (also the memory barrier ZeroMQ asks for when
// a socket changes threads). The main thread holds it at all times except while it runs tasks. A
// second thread takes it while tasks run, every kBusyTick: it heartbeats (a task may run longer
// than the broker's liveness period), reads what arrived, and acts on it at once, however long
// the running task takes: a drain (SIGTERM) or the broker's reclaim hands back the tasks not
// started yet.
#include "executor.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <capnp/any.h>
#include <kj/exception.h>
#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include <fanout/task.hpp>

#include "failure.hpp"
#include "printable.hpp"
#include "shell_task.hpp"
#include "system/poll_timeout.hpp"
#include "system/signals.hpp"
#include "system/unique_fd.hpp"
#include "task_durations.hpp"
#include "task_queue.hpp"
#include "keys.hpp"
#include "limits.hpp"
#include "transport.hpp"
#include "wire_kinds.hpp"

namespace fanout::worker {

namespace {

// Peer text in a log line: escaped and bounded (printable.hpp).
std::string shown(std::string_view text) { return wire::printable(text, wire::kLogTextLimit); }

using Clock = std::chrono::steady_clock;

constexpr unsigned kMaxResultsPerMessage = 1024;
// Results wait for the next ones at most this long: together while tasks are quick, at once when
// they are not.
constexpr auto kResultDelay = std::chrono::milliseconds(1);
constexpr std::string_view kShellTask = wire::kShellTaskName;
// While tasks run, how often the second thread looks at the socket and the signals: how soon a
// drain or a reclaim hands work back during a long task.
constexpr auto kBusyTick = std::chrono::milliseconds(20);
// While draining, an executor with nothing left waits this long for tasks the broker sent before
// it learnt about the drain, so that they are handed back at once rather than found lost.
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

// A `results` message being filled: up to `capacity` results, sent with as many as it holds.
class ResultsMessage {
 public:
  explicit ResultsMessage(unsigned capacity)
      : out_(std::make_unique<wire::OutMessage>(capacity * kWordsPerResult + 16)),
        results_(out_->envelope().initResults(capacity)),
        capacity_(capacity) {}

  unsigned count() const noexcept { return count_; }
  bool full() const noexcept { return count_ == capacity_; }
  wire::Result::Builder next() noexcept { return results_[count_++]; }
  wire::Result::Builder at(unsigned index) noexcept { return results_[index]; }
  // What the message takes so far (reserved room included).
  std::size_t bytes() const { return out_->builder().sizeInWords() * sizeof(capnp::word); }

  // The last result made the message larger than a frame may be (limits.hpp): it becomes a
  // `badResult` error that says so. Its value has to leave the message, which capnp cannot
  // shrink, so the others are copied into a new one.
  void refuse_last(std::size_t limit) {
    const auto old = results_.asReader();
    const auto last = old[count_ - 1];
    const std::size_t value_bytes = last.totalSize().wordCount * sizeof(capnp::word);
    auto fresh = std::make_unique<wire::OutMessage>(capacity_ * kWordsPerResult + 16);
    auto list = fresh->envelope().initResults(capacity_);
    for (unsigned i = 0; i + 1 < count_; ++i) list.setWithCaveats(i, old[i]);
    auto result = list[count_ - 1];
    result.setBatchId(last.getBatchId());
    result.setIndex(last.getIndex());
    result.setAttempt(last.getAttempt());
    result.setElapsedUs(last.getElapsedUs());
    result.setRanOn(last.getRanOn());
    auto error = result.initError();
    error.setKind(wire::ErrorKind::BAD_RESULT);
    error.setMessage("the result takes " + std::to_string(value_bytes) + " bytes, more than the " +
                     std::to_string(limit) + " a message may carry (FANOUT_MAX_FRAME_BYTES, --max-frame-bytes)");
    error.setRanOn(last.getRanOn());
    out_ = std::move(fresh);
    results_ = list;
  }

  // The frame to send. A message sent before it is full has its list cut in place (what was
  // reserved for the rest travels as zeroes).
  zmq::message_t frame() {
    if (count_ < capacity_) {
      auto results = out_->envelope().disownResults();
      results.truncate(count_);
      out_->envelope().adoptResults(kj::mv(results));
    }
    return out_->frame();
  }

 private:
  std::unique_ptr<wire::OutMessage> out_;
  capnp::List<wire::Result>::Builder results_;
  unsigned capacity_;
  unsigned count_ = 0;
};

class Executor {
 public:
  explicit Executor(const ExecutorConfig& config)
      : config_(config),
        ran_on_("worker " + config.worker_id + " pid " + std::to_string(::getpid())),
        task_names_(names_served(config)),
        shell_("worker " + config.worker_id, *config.running, config.pass_env),
        context_(1),
        socket_(context_, zmq::socket_type::dealer),
        signals_(sys::open_signalfd({SIGTERM, SIGINT, SIGUSR1, SIGUSR2})) {
    wire::configure_socket(socket_, config_.max_frame_bytes);
    socket_.set(zmq::sockopt::routing_id, config_.executor_id);
    wire::connect_to_broker(socket_, config_.broker);
  }

  int run() {
    announce();
    ticker_.emplace(kBusyTick, [this] { while_busy(); });
    next_heartbeat_ = Clock::now() + config_.heartbeat;
    auto busy_until = Clock::now();  // when it last had work
    for (;;) {
      receive_available();
      const auto now = Clock::now();
      if (signal_ready_ || now - signals_read_ >= kBusyTick) {
        signal_ready_ = false;
        signals_read_ = now;
        handle_signals();
      }
      heartbeat_if_due(now);
      if (TaskQueue::Frame* frame = queue_.front()) {
        run_some(*frame);
        busy_until = Clock::now();
        continue;
      }
      // An extra executor with nothing to do for a while leaves: drained like on SIGTERM, then bye.
      const auto idle_deadline = config_.idle_exit.count() > 0 ? busy_until + config_.idle_exit : Clock::time_point::max();
      if (!draining_ && now >= idle_deadline) {
        leaving_ = true;
        begin_drain();
      }
      if (draining_ && now >= quiet_until_) break;
      wait_for_input(std::min({next_heartbeat_, draining_ ? quiet_until_ : Clock::time_point::max(), idle_deadline}));
    }
    if (leaving_) {
      wire::OutMessage out(16);
      out.envelope().setBye();
      send(out.frame());
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
  // Everything below that touches the socket runs with socket_mutex_ held, by whichever thread.

  void announce(bool fresh = false) {
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
    announce.setFresh(fresh);
    announce.setExtra(config_.idle_exit.count() > 0);
    send(out.frame());
    last_announce_ = Clock::now();
  }

  // A fresh socket under the same routing id (the broker's ROUTER hands the name over). What the
  // old one still held is dropped: the broker requeues what it does not hear about.
  void reconnect() {
    socket_.close();
    socket_ = zmq::socket_t(context_, zmq::socket_type::dealer);
    wire::configure_socket(socket_, config_.max_frame_bytes);
    socket_.set(zmq::sockopt::routing_id, config_.executor_id);
    wire::connect_to_broker(socket_, config_.broker);
  }

  void heartbeat_if_due(Clock::time_point now) {
    if (now < next_heartbeat_) return;
    next_heartbeat_ = now + config_.heartbeat;
    send_heartbeat();
  }

  void send_heartbeat() {
    wire::OutMessage out;
    out.envelope().initHeartbeat().setSentUnixMs(wire::unix_ms());
    send(out.frame());
  }

  // On the ticker's thread, every kBusyTick. When the main thread holds the socket it is between
  // tasks or idle, and does all of this itself; when it runs tasks, the socket is free and this
  // thread reads what arrived, acts on signals and heartbeats when nothing was sent for a while.
  void while_busy() {
    ticks_.fetch_add(1, std::memory_order_relaxed);
    const std::unique_lock socket(socket_mutex_, std::try_to_lock);
    if (!socket.owns_lock()) return;
    receive_available();
    handle_signals();
    if (Clock::now() - last_sent_ >= config_.heartbeat) send_heartbeat();
  }

  // A frame that cannot leave now (the broker has been unreachable long enough to fill the
  // high-water mark) is dropped: the broker requeues what it does not hear about.
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
    const int ready = ::zmq_poll(items, 2, sys::poll_timeout_ms(until));
    if (ready < 0 && ::zmq_errno() != EINTR) throw zmq::error_t();
    signal_ready_ = ready < 0 || (items[1].revents & ZMQ_POLLIN) != 0;
  }

  void handle_signals() {
    for (const int signal : sys::read_signals(signals_.get())) {
      if (signal == SIGUSR1) {  // the broker restarted and does not know it
        announce();
      } else if (signal == SIGUSR2) {
        // Its supervisor reconnected after a silence (a partition): so does it, on a fresh
        // connection, rather than wait for the old one to be found dead.
        reconnect();
        announce(/*fresh=*/true);
      } else if (!draining_) {  // SIGTERM or SIGINT
        begin_drain();
      }
    }
  }

  // Stops taking work: announces it (the broker sends nothing more), hands back at once every task
  // not started, and lets the running one finish.
  void begin_drain() {
    draining_ = true;
    quiet_until_ = Clock::now() + kDrainQuietPeriod;
    announce();
    hand_back(std::numeric_limits<std::size_t>::max(), /*answer_even_if_empty=*/false);
  }

  // Gives up to `count` tasks not started back to the broker, which queues them again.
  void hand_back(std::size_t count, bool answer_even_if_empty) {
    const std::vector<TaskQueue::Ref> returned = queue_.hand_back(count);
    if (returned.empty() && !answer_even_if_empty) return;
    wire::OutMessage out(static_cast<unsigned>(16 + returned.size() * 2));
    auto tasks = out.envelope().initHandBack().initTasks(static_cast<unsigned>(returned.size()));
    for (unsigned i = 0; i < tasks.size(); ++i) {
      tasks[i].setBatchId(returned[i].batch_id);
      tasks[i].setIndex(returned[i].index);
    }
    send(out.frame());
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
    auto message = wire::InMessage::parse(std::move(frame), &why, config_.max_frame_bytes);
    if (!message) return drop(why);
    try {
      const auto envelope = message->envelope();
      switch (envelope.which()) {
        case wire::Envelope::TASKS: {
          const auto batch = envelope.getTasks();
          const auto tasks = batch.getTasks();  // validates the list pointer now, not mid-run
          if (tasks.size() == 0) return;
          const std::uint64_t batch_id = batch.getBatchId();
          queue_.push(std::move(*message), tasks, batch_id);
          if (draining_) {
            // Sent before the broker learnt about the drain, or by a broker that lost track of it:
            // straight back, with the drain said again, so that the same work does not come back.
            quiet_until_ = Clock::now() + kDrainQuietPeriod;
            announce();
            hand_back(std::numeric_limits<std::size_t>::max(), false);
          }
          return;
        }
        case wire::Envelope::RECLAIM:
          return hand_back(envelope.getReclaim().getCount(), /*answer_even_if_empty=*/true);
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
      spdlog::warn("executor {}: the broker complained: {}", config_.executor_id, shown(message));
      return;
    }
    if (Clock::now() - last_announce_ < config_.heartbeat) return;
    spdlog::info("executor {}: the broker refused us ({}); announcing again", config_.executor_id,
                 shown(message));
    announce();
  }

  void drop(const std::string& why) {
    ++dropped_frames_;
    // Logged with backoff (1st, 2nd, 4th, 8th...): a peer spraying garbage cannot flood the log.
    if ((dropped_frames_ & (dropped_frames_ - 1)) == 0) {
      spdlog::warn("executor {}: dropped {} ({} so far)", config_.executor_id, why, dropped_frames_);
    }
  }

  // Runs up to kMaxResultsPerMessage tasks of `frame` and sends their results: together while
  // they come fast, each as soon as it exists otherwise (see TaskDurations). Called with the
  // socket held; releases it while the tasks run.
  void run_some(TaskQueue::Frame& frame) {
    auto results = std::make_optional<ResultsMessage>(std::min(kMaxResultsPerMessage, TaskQueue::unclaimed(frame)));
    // The clock is read once per group of tasks of one name, each task's end being the next one's
    // start: a group is one task, or a few quick ones timed together (TaskDurations), whose time
    // is split evenly among them once the group ends.
    auto clock = Clock::now();
    auto first_done = clock;
    std::string_view group_name;
    unsigned group_first = 0;  // the group's first result in `results`
    unsigned group_left = 0;   // tasks the open group may still take
    std::uint32_t group_tick = 0;  // ticks_ when the open group began
    std::uint32_t group_slots = 1;  // slots per task of the group: a unit is a group of its own
    const auto end_group = [&] {
      if (results->count() == group_first) return;
      const auto started = std::exchange(clock, Clock::now());
      const auto each = (clock - started) / (results->count() - group_first);
      const auto each_us = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(each).count());
      for (unsigned i = group_first; i < results->count(); ++i) {
        results->at(i).setElapsedUs(each_us);
        durations_.record(group_name, each / group_slots);  // what one slot of the name takes
      }
      if (group_first == 0) first_done = clock;
      group_first = results->count();
      group_left = 0;
    };
    socket_lock_.unlock();  // the ticker may heartbeat and hand back while the tasks run
    while (!results->full()) {
      const auto position = TaskQueue::claim(frame);
      if (!position) break;  // the rest was handed back
      const auto task = frame.tasks[*position];
      // The name is read once per task, here: the quick-task rule, the registry and the record of
      // durations all take it from this view into the frame.
      const std::string_view name = name_of(task);
      const std::uint32_t slots = std::max<std::uint32_t>(task.getSlots(), 1);
      if (group_left == 0 || name != group_name || slots > 1 || group_slots > 1) end_group();
      if (results->count() > 0 && (clock - first_done >= kResultDelay || !durations_.known_quick(name) ||
                                   results->bytes() >= wire::kResultsFlushBytes)) {
        end_group();
        // The results so far leave now rather than wait for this task.
        {
          const std::lock_guard socket(socket_mutex_);
          send(results->frame());
        }
        results.emplace(std::min(kMaxResultsPerMessage, TaskQueue::unclaimed(frame) + 1));
        group_first = 0;
      }
      if (group_left == 0) {
        group_name = name;
        group_left = name == kShellTask || slots > 1 ? 1 : durations_.timed_together(name);
        group_slots = slots;
        group_tick = ticks_.load(std::memory_order_relaxed);
      }
      run_task(task, name, frame.batch_id, results->next(), *results);
      --group_left;
      // Room for the envelope around the results, as the broker counts the frame.
      if (results->bytes() + 1024 > config_.max_frame_bytes) {
        end_group();
        results->refuse_last(config_.max_frame_bytes);
      }
      // A tick during the group: its tasks may have turned slow; the clock says, and the rule for
      // tasks not known to be quick applies again before the next one.
      if (group_left == 0 || results->full() || ticks_.load(std::memory_order_relaxed) != group_tick) end_group();
    }
    end_group();
    socket_lock_.lock();
    if (results->count() > 0) send(results->frame());
  }

  // The task's name as a view into its frame; a view with no data when the name cannot be read
  // (run_call then says why).
  static std::string_view name_of(wire::Task::Reader task) noexcept {
    try {
      const auto text = task.getName();
      return {text.cStr(), text.size()};
    } catch (...) {
      return {};
    }
  }

  // Runs one task into `result`, the last of `message` (its run time is set when its group ends:
  // run_some).
  void run_task(wire::Task::Reader task, std::string_view name, std::uint64_t batch_id, wire::Result::Builder result,
                const ResultsMessage& message) {
    // Data fields of a list element are read without following pointers, so they never throw.
    const std::uint32_t index = task.getIndex();
    result.setBatchId(batch_id);
    result.setIndex(index);
    result.setAttempt(task.getAttempt());
    result.setRanOn(ran_on_);
    config_.running->begin(batch_id, index);
    try {
      run_call(task, name, result, message);
    } catch (...) {
      const FailureInfo failure = detail::failure_from_current_exception(ran_on_);
      fail(result, failure.kind, failure.remote_type, failure.message);
    }
    config_.running->end();
  }

  void run_call(wire::Task::Reader task, std::string_view name, wire::Result::Builder result,
                const ResultsMessage& message) {
    wire::Value::Reader args;
    try {
      if (name.data() == nullptr) task.getName();  // unreadable: read again, for what is wrong
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
      // Live output goes to the broker as it comes; each chunk takes the socket for its send.
      return shell_.run(task, result, [&](OutputType type, std::string_view text) {
        wire::OutMessage out(static_cast<unsigned>(16 + text.size() / 8));
        auto chunk = out.envelope().initOutput();
        chunk.setBatchId(task.getBatchId());
        chunk.setIndex(task.getIndex());
        chunk.setStream(type == OutputType::out ? wire::OutputChunk::Stream::OUT : wire::OutputChunk::Stream::ERR);
        chunk.setData(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(text.data()), text.size()));
        const std::lock_guard socket(socket_mutex_);
        send(out.frame());
      });
    }
    if (const std::uint32_t slots = task.getSlots(); slots > 0) {
      if (task.hasScalarArgs() || task.hasScalarKinds()) return run_scalar_unit(task, slots, name, result, message);
      return run_unit(args, slots, name, result, message);
    }
    registered(name)(wire::wrap(args), wire::wrap(result.initValue()));
  }

  // A unit (fanout.capnp, Task.slots): its slots run in turn, each one's failure its own. Only a
  // name that is not registered, or a unit that is not one, fails it whole. Once the values of
  // `message` take half a frame, the slots left are not run but refused (the client sends each
  // alone): a unit's values must never outgrow a frame, which would refuse the whole unit after
  // its slots ran.
  void run_unit(wire::Value::Reader args, std::uint32_t slots, std::string_view name, wire::Result::Builder result,
                const ResultsMessage& message) {
    // Clients send units of at most kMostUnitSlots; a list claims its count in one word, and a list of
    // zero-sized elements could claim millions of runs.
    if (slots > wire::kMostUnitSlots || !args.isList() || args.getList().size() != slots ||
        wire::amplified(capnp::AnyList::Reader(args.getList()))) {
      return fail(result, ErrorKind::bad_message, "",
                  "a unit of " + std::to_string(slots) + " slots (at most " + std::to_string(wire::kMostUnitSlots) +
                      ") without a list of as many argument tuples");
    }
    const auto& run = registered(name);
    const auto tuples = args.getList();
    auto values = result.initValue().initList(slots);
    std::vector<std::pair<std::uint32_t, FailureInfo>> failed;
    // A task of scalars runs on the scalars read from each slot's tuple and writes its result
    // into the slot's Value, which the list holds already: the message does not grow, and
    // its size is looked at again only after a slot that went the general way.
    detail::Scalar scalars[wire::kMostScalarArity];
    const std::size_t arity =
        run.invoke_scalars != nullptr && run.scalar_arity <= wire::kMostScalarArity ? run.scalar_arity : 0;
    bool may_have_grown = true;
    for (std::uint32_t slot = 0; slot < slots; ++slot) {
      if (may_have_grown && half_full(message)) {
        failed.emplace_back(slot, not_run_in_unit());
        continue;
      }
      try {
        const auto tuple = tuples[slot];
        if (arity > 0 && wire::read_scalar_tuple(tuple, std::span(scalars, arity))) {
          detail::Scalar value;
          if (run.invoke_scalars(run.task, std::span(scalars, arity), value)) {
            wire::write_scalar(values[slot], value);
            may_have_grown = false;
            continue;
          }
        }
        may_have_grown = true;
        run(wire::wrap(tuple), wire::wrap(values[slot]));
      } catch (...) {
        values[slot].setNone();  // whatever it wrote before it threw is left unreachable
        failed.emplace_back(slot, detail::failure_from_current_exception(ran_on_));
      }
    }
    write_slot_errors(result, failed);
  }

  // A unit whose arguments are laid out together (fanout.capnp, Task.scalarArgs): each slot's
  // scalars are read straight from the two lists, and its values go back the same way
  // (Result.scalarValues) for as long as each slot runs on its scalars as they came
  // (invoke_scalars). A slot that goes the general way (arguments to convert, a task whose
  // result is not a scalar) turns the answer into run_unit's list of Values from then on. Lists that do not describe
  // `slots` slots of 1 to kMostScalarArity bools and numbers fail the unit as unreadable.
  void run_scalar_unit(wire::Task::Reader task, std::uint32_t slots, std::string_view name, wire::Result::Builder result,
                       const ResultsMessage& message) {
    capnp::List<std::uint64_t>::Reader bits;
    capnp::List<std::uint8_t>::Reader kinds;
    try {
      bits = task.getScalarArgs();
      kinds = task.getScalarKinds();
    } catch (const kj::Exception& error) {  // e.g. a list of another element size
      return fail(result, ErrorKind::bad_message, "",
                  std::string("the unit's scalar arguments could not be read: ") + error.getDescription().cStr());
    }
    const std::size_t arity = slots > 0 ? bits.size() / slots : 0;
    if (slots > wire::kMostUnitSlots || kinds.size() != bits.size() || arity == 0 || arity * slots != bits.size() ||
        arity > wire::kMostScalarArity) {
      return fail(result, ErrorKind::bad_message, "",
                  "a unit of " + std::to_string(slots) + " slots with " + std::to_string(bits.size()) +
                      " scalar arguments and " + std::to_string(kinds.size()) + " kinds (1 to " +
                      std::to_string(wire::kMostScalarArity) + " arguments per slot, one kind each)");
    }
    for (const std::uint8_t kind : kinds) {
      if (kind < static_cast<std::uint8_t>(ValueKind::boolean) || kind > static_cast<std::uint8_t>(ValueKind::float64)) {
        return fail(result, ErrorKind::bad_message, "",
                    "a scalar argument of kind " + std::to_string(kind) +
                        " (bool 1, int 2, uint 3, float32 4 and float64 5 only)");
      }
    }
    const auto& run = registered(name);
    scalar_values_.assign(slots, detail::Scalar{ValueKind::none, 0});
    std::optional<capnp::List<wire::Value>::Builder> values;  // once a value is not a scalar
    std::vector<std::pair<std::uint32_t, FailureInfo>> failed;
    detail::Scalar scalars[wire::kMostScalarArity];
    bool may_have_grown = true;
    for (std::uint32_t slot = 0; slot < slots; ++slot) {
      if (may_have_grown && half_full(message)) {
        failed.emplace_back(slot, not_run_in_unit());
        continue;
      }
      for (std::size_t i = 0; i < arity; ++i) {
        scalars[i] = detail::Scalar{static_cast<ValueKind>(kinds[slot * arity + i]), bits[slot * arity + i]};
      }
      const std::span<const detail::Scalar> arguments(scalars, arity);
      try {
        detail::Scalar value;
        if (run.invoke_scalars != nullptr && run.scalar_arity == arity && run.invoke_scalars(run.task, arguments, value)) {
          if (values) {
            wire::write_scalar((*values)[slot], value);
          } else {
            scalar_values_[slot] = value;
          }
          may_have_grown = false;
          continue;
        }
        // The general way: arguments converted (or refused) by the task's decoder, any value.
        if (!values) {
          values = result.initValue().initList(slots);
          for (std::uint32_t done = 0; done < slot; ++done) {
            if (scalar_values_[done].kind != ValueKind::none) wire::write_scalar((*values)[done], scalar_values_[done]);
          }
        }
        may_have_grown = true;
        Payload::of_scalars(arguments).read([&](ValueReader tuple) { run(tuple, wire::wrap((*values)[slot])); });
      } catch (...) {
        if (values) (*values)[slot].setNone();  // whatever it wrote before it threw is left unreachable
        failed.emplace_back(slot, detail::failure_from_current_exception(ran_on_));
      }
    }
    if (!values) {
      auto out_bits = result.initScalarValues(slots);
      auto out_kinds = result.initScalarKinds(slots);
      for (std::uint32_t slot = 0; slot < slots; ++slot) {
        out_bits.set(slot, scalar_values_[slot].bits);
        out_kinds.set(slot, static_cast<std::uint8_t>(scalar_values_[slot].kind));
      }
    }
    write_slot_errors(result, failed);
  }

  // Whether the values of `message` take half a frame: a unit's slots left are then not run.
  bool half_full(const ResultsMessage& message) const noexcept {
    return message.bytes() > config_.max_frame_bytes / 2;
  }

  FailureInfo not_run_in_unit() const {
    return FailureInfo{ErrorKind::refused, "", "not run: its unit's values filled half a message; run it alone",
                       ran_on_};
  }

  // A unit's slots that failed, into its result.
  void write_slot_errors(wire::Result::Builder result, const std::vector<std::pair<std::uint32_t, FailureInfo>>& failed) {
    if (failed.empty()) return;
    auto errors = result.initSlotErrors(static_cast<unsigned>(failed.size()));
    for (unsigned i = 0; i < failed.size(); ++i) {
      errors[i].setSlot(failed[i].first);
      auto error = errors[i].initError();
      const FailureInfo& failure = failed[i].second;
      error.setKind(detail::to_wire(failure.kind));
      error.setRemoteType(failure.remote_type);
      error.setMessage(failure.message);
      error.setRanOn(ran_on_);
    }
  }

  // The registered task `name`: looked up under the registry's lock once per run of tasks of one
  // name, not once per task. Throws UnknownTask (a name not found is not kept).
  const detail::RegisteredTask& registered(std::string_view name) {
    if (!registered_name_ || name != *registered_name_) {
      registered_ = detail::find_registered(name);
      registered_name_.emplace(name);
    }
    return registered_;
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
  ShellTask shell_;
  TaskQueue queue_;
  TaskDurations durations_;  // the main thread's
  // Counts the ticker's ticks: a group of quick tasks (run_some) ends once a tick passed during
  // it, so that tasks of a quick name that turned slow are timed and their results leave.
  std::atomic<std::uint32_t> ticks_{0};
  std::optional<std::string> registered_name_;  // the main thread's: the name registered_ was found by
  detail::RegisteredTask registered_;
  std::vector<detail::Scalar> scalar_values_;  // the main thread's: a scalar unit's values (run_scalar_unit)
  zmq::context_t context_;
  zmq::socket_t socket_;
  sys::UniqueFd signals_;

  // Guarded by socket_mutex_ (whichever thread holds the socket).
  bool draining_ = false;
  bool leaving_ = false;  // drained because it was idle (an extra executor): says bye at the end
  Clock::time_point quiet_until_ = Clock::time_point::max();
  Clock::time_point last_announce_;
  Clock::time_point last_sent_;
  std::uint64_t dropped_frames_ = 0;
  std::uint64_t unsent_frames_ = 0;

  Clock::time_point next_heartbeat_;  // the main thread's
  // The main thread reads the signal descriptor when its wait saw it ready, and at least every
  // kBusyTick while it is busy (the ticker reads it too while tasks run): a read that finds
  // nothing is a system call, over 1 µs on a virtual machine, and a small batch made two.
  bool signal_ready_ = true;
  Clock::time_point signals_read_;
  std::mutex socket_mutex_;
  std::unique_lock<std::mutex> socket_lock_{socket_mutex_};  // the main thread's hold on the socket
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
