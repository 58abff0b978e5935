// broker_harness.hpp: a real fanout::broker::Broker on a thread, and fake peers (clients,
// supervisors, executors) that talk to it over real ZeroMQ sockets with hand-built Envelopes.
//
// Every fake peer owns one DEALER and one thread that does all of that socket's I/O: it sends
// what the test queues, records or handles what arrives, and heartbeats once it has said
// something (announce, tasks), as real peers do. Tests only wait on conditions with deadlines.
#pragma once

#include <doctest/doctest.h>

#include <pthread.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fanout/broker/broker.hpp>
#include <kj/exception.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "test_support.hpp"
#include "transport.hpp"

namespace broker_test {

namespace wire = fanout::wire;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Kind = wire::Envelope::Which;

// Heartbeats every 50 ms, dead after 300 ms of silence: liveness tests take well under a second.
inline constexpr auto kBeat = std::chrono::milliseconds(50);
inline constexpr auto kLiveness = std::chrono::milliseconds(300);
// What "soon" means for a condition that should hold after a few broker loop turns. Generous,
// because sanitizer builds on two loaded cores are slow; a passing test never waits it out.
inline constexpr auto kSoon = std::chrono::seconds(10);

inline std::string unique_name(const std::string& stem) {
  static std::atomic<int> counter{0};
  return stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// A test configuration: short heartbeat and liveness, bound to loopback TCP with an OS-chosen port
// (the real transport: frames arrive as the kernel delivers them, small ones inline in the
// zmq_msg_t, which inproc never exercises).
inline fanout::broker::Config test_config() {
  fanout::broker::Config config;
  config.endpoints = {"tcp://127.0.0.1:*"};
  config.heartbeat = kBeat;
  config.liveness = kLiveness;
  return config;
}

// For tests whose fake executors hold several tasks without ever saying how long tasks take: the
// broker takes every task as quick and sends an executor as much as its credit holds (its
// prefetch otherwise sends nothing ahead of a task it has not seen finish).
inline fanout::broker::Config quick_task_config() {
  auto config = test_config();
  config.unknown_task_time = std::chrono::nanoseconds(0);
  return config;
}

// The broker, served on its own thread; stopped and joined at the end of the scope, whatever
// happened. An exception escaping run() (which would be a broker bug) is kept for the test to see.
class RunningBroker {
 public:
  RunningBroker(fanout::broker::Config config, zmq::context_t& context)
      : broker_(std::move(config), context), thread_([this] { serve(); }) {}
  ~RunningBroker() {
    broker_.stop();
    thread_.join();
  }
  RunningBroker(const RunningBroker&) = delete;
  RunningBroker& operator=(const RunningBroker&) = delete;

  const std::string& endpoint() const { return broker_.endpoints().front(); }
  // CPU time the broker's thread has used so far.
  std::chrono::duration<double> cpu_time() {
    clockid_t clock{};
    timespec used{};
    if (::pthread_getcpuclockid(thread_.native_handle(), &clock) != 0 || ::clock_gettime(clock, &used) != 0) return {};
    return std::chrono::seconds(used.tv_sec) + std::chrono::nanoseconds(used.tv_nsec);
  }
  const fanout::broker::Counters& counters() const { return broker_.counters(); }
  // Empty while run() is serving or returned normally; why it died otherwise.
  std::string died() const {
    std::lock_guard lock(mutex_);
    return died_;
  }

 private:
  void serve() {
    try {
      broker_.run();
    } catch (const kj::Exception& error) {
      record(std::string("kj::Exception: ") + error.getDescription().cStr());
    } catch (const std::exception& error) {
      record(std::string("exception: ") + error.what());
    } catch (...) {
      record("unknown exception");
    }
  }
  void record(std::string why) {
    std::lock_guard lock(mutex_);
    died_ = std::move(why);
  }

  fanout::broker::Broker broker_;
  mutable std::mutex mutex_;
  std::string died_;
  std::thread thread_;  // last: starts once everything above exists
};

// ---- building messages ------------------------------------------------------------------------

inline zmq::message_t announce_supervisor(const std::string& worker, std::uint32_t processes, bool draining = false) {
  wire::OutMessage out;
  auto announce = out.envelope().initAnnounce();
  announce.setRole(wire::Announce::Role::SUPERVISOR);
  announce.setWorkerId(worker);
  announce.setHost("testhost");
  announce.setPid(static_cast<std::int32_t>(::getpid()));
  announce.setProcesses(processes);
  announce.setDraining(draining);
  return out.frame();
}

inline zmq::message_t announce_executor(const std::string& executor, const std::string& worker,
                                        const std::vector<std::string>& names, std::uint32_t slots,
                                        bool draining = false) {
  wire::OutMessage out;
  auto announce = out.envelope().initAnnounce();
  announce.setRole(wire::Announce::Role::EXECUTOR);
  announce.setWorkerId(worker);
  announce.setExecutorId(executor);
  auto list = announce.initTaskNames(static_cast<unsigned>(names.size()));
  for (unsigned i = 0; i < names.size(); ++i) list.set(i, names[i]);
  announce.setSlots(slots);
  announce.setDraining(draining);
  return out.frame();
}

// A window of `count` tasks of batch `batch` named `name`, indexes first..first+count-1; each
// task's argument is its index (the fake executors answer index * index).
inline void fill_tasks(wire::TaskBatch::Builder window, std::uint64_t batch, std::uint32_t total,
                       const std::vector<std::pair<std::uint32_t, std::string>>& slots, std::uint32_t timeout_ms) {
  window.setBatchId(batch);
  window.setTotal(total);
  window.setTimeoutMs(timeout_ms);
  auto tasks = window.initTasks(static_cast<unsigned>(slots.size()));
  for (unsigned i = 0; i < slots.size(); ++i) {
    auto task = tasks[i];
    task.setBatchId(batch);
    task.setIndex(slots[i].first);
    task.setName(slots[i].second);
    task.initArgs().initTuple(1)[0].setInt(slots[i].first);
    task.setTimeoutMs(timeout_ms);
  }
}

inline zmq::message_t tasks_window(std::uint64_t batch, std::uint32_t total, std::uint32_t first, std::uint32_t count,
                                   const std::string& name = "square", std::uint32_t timeout_ms = 0) {
  std::vector<std::pair<std::uint32_t, std::string>> slots;
  for (std::uint32_t i = 0; i < count; ++i) slots.emplace_back(first + i, name);
  wire::OutMessage out(64 + count * 16);
  fill_tasks(out.envelope().initTasks(), batch, total, slots, timeout_ms);
  return out.frame();
}

inline zmq::message_t mixed_window(std::uint64_t batch, const std::vector<std::string>& names) {
  std::vector<std::pair<std::uint32_t, std::string>> slots;
  for (std::uint32_t i = 0; i < names.size(); ++i) slots.emplace_back(i, names[i]);
  wire::OutMessage out;
  fill_tasks(out.envelope().initTasks(), batch, static_cast<std::uint32_t>(names.size()), slots, 0);
  return out.frame();
}

struct Answer {
  std::uint64_t batch;
  std::uint32_t index;
  std::uint16_t attempt;
  std::int64_t value;
};

inline zmq::message_t results_message(const std::vector<Answer>& answers, const std::string& ran_on = "fake executor") {
  wire::OutMessage out(static_cast<unsigned>(64 + answers.size() * 12));
  auto list = out.envelope().initResults(static_cast<unsigned>(answers.size()));
  for (unsigned i = 0; i < answers.size(); ++i) {
    auto result = list[i];
    result.setBatchId(answers[i].batch);
    result.setIndex(answers[i].index);
    result.setAttempt(answers[i].attempt);
    result.initValue().setInt(answers[i].value);
    result.setRanOn(ran_on);
  }
  return out.frame();
}

// Results that are all failures: an exception "boom" each.
inline zmq::message_t failures_message(const std::vector<Answer>& answers, const std::string& ran_on) {
  wire::OutMessage out(static_cast<unsigned>(64 + answers.size() * 16));
  auto list = out.envelope().initResults(static_cast<unsigned>(answers.size()));
  for (unsigned i = 0; i < answers.size(); ++i) {
    auto result = list[i];
    result.setBatchId(answers[i].batch);
    result.setIndex(answers[i].index);
    result.setAttempt(answers[i].attempt);
    result.setRanOn(ran_on);
    auto error = result.initError();
    error.setKind(wire::ErrorKind::EXCEPTION);
    error.setRemoteType("std::runtime_error");
    error.setMessage("boom");
    error.setRanOn(ran_on);
  }
  return out.frame();
}

template <class Fill>
zmq::message_t simple_message(Fill fill) {
  wire::OutMessage out;
  fill(out.envelope());
  return out.frame();
}

inline zmq::message_t heartbeat_message() {
  return simple_message([](wire::Envelope::Builder envelope) { envelope.initHeartbeat().setSentUnixMs(wire::unix_ms()); });
}
inline zmq::message_t cancel_message(std::uint64_t batch) {
  return simple_message([&](wire::Envelope::Builder envelope) { envelope.initCancel().setBatchId(batch); });
}
inline zmq::message_t status_request() {
  return simple_message([](wire::Envelope::Builder envelope) { envelope.setStatusRequest(); });
}
inline zmq::message_t bye_message() {
  return simple_message([](wire::Envelope::Builder envelope) { envelope.setBye(); });
}
inline zmq::message_t executor_lost(const std::string& executor, std::optional<std::pair<std::uint64_t, std::uint32_t>> running,
                                    bool stopped_by_broker = false, int signal = 9) {
  return simple_message([&](wire::Envelope::Builder envelope) {
    auto lost = envelope.initExecutorLost();
    lost.setExecutorId(executor);
    lost.setSignal(signal);
    lost.setRunning(running.has_value());
    if (running) {
      lost.setBatchId(running->first);
      lost.setIndex(running->second);
    }
    lost.setStoppedByBroker(stopped_by_broker);
  });
}

inline std::vector<std::uint8_t> bytes_of(const zmq::message_t& frame) {
  const auto* data = static_cast<const std::uint8_t*>(frame.data());
  return {data, data + frame.size()};
}

inline zmq::message_t frame_of(const std::vector<std::uint8_t>& bytes) { return zmq::message_t(bytes.data(), bytes.size()); }

// ---- a fake peer --------------------------------------------------------------------------------

using Received = std::shared_ptr<wire::InMessage>;

struct PeerOptions {
  std::string routing_id{};  // empty: ZeroMQ picks one (clients)
  bool heartbeat = true;   // heartbeat every kBeat once the peer has sent something
  bool record = true;      // keep every message received for the test to inspect
};

class Peer {
 public:
  // Called on the peer's thread for every message received; may call send_now().
  using Handler = std::function<void(Peer&, wire::InMessage&)>;
  // Called on the peer's thread on every turn of its loop (at least every millisecond).
  using Tick = std::function<void(Peer&)>;

  Peer(zmq::context_t& context, std::string endpoint, PeerOptions options = {}, Handler handler = {}, Tick tick = {})
      : context_(context),
        endpoint_(std::move(endpoint)),
        options_(std::move(options)),
        handler_(std::move(handler)),
        tick_(std::move(tick)),
        wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        beating_(options_.heartbeat) {
    REQUIRE(wake_fd_ >= 0);
    std::promise<void> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, &ready] { loop(ready); });
    started.get();  // the socket is connected (or the constructor rethrows why not)
  }
  ~Peer() {
    stop_ = true;
    wake();
    thread_.join();
    ::close(wake_fd_);
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  // Queues a message (one frame, or several for a multi-part message) for the peer's thread.
  void send(zmq::message_t frame) {
    std::vector<zmq::message_t> parts;
    parts.push_back(std::move(frame));
    send_parts(std::move(parts));
  }
  void send_parts(std::vector<zmq::message_t> parts) {
    {
      std::lock_guard lock(mutex_);
      outbox_.push_back(std::move(parts));
    }
    wake();
  }
  // Sends at once; only from a handler or tick (the peer's own thread).
  void send_now(zmq::message_t frame) {
    socket_->send(frame, zmq::send_flags::none);
    spoke_ = true;
  }

  // Heartbeats on or off (a peer that "goes silent" while its socket stays connected).
  void set_heartbeat(bool on) { beating_ = on; }

  // The oldest recorded message of kind `which` not taken yet, waiting up to `limit`; it is taken.
  Received take(Kind which, std::chrono::milliseconds limit = kSoon) {
    std::unique_lock lock(mutex_);
    Received found;
    cv_.wait_for(lock, limit, [&] {
      for (auto& [message, taken] : inbox_) {
        if (!taken && message->envelope().which() == which) {
          taken = true;
          found = message;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  // Waits until `condition()` holds; it is evaluated under mutex() after every message received
  // (so it must be cheap: the peer's thread waits for the lock meanwhile).
  template <class Condition>
  bool wait(Condition condition, std::chrono::milliseconds limit = kSoon) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, limit, condition);
  }

  std::vector<Received> recorded() {
    std::lock_guard lock(mutex_);
    return recorded_locked();
  }
  std::size_t count(Kind which) {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count_if(inbox_.begin(), inbox_.end(), [&](const auto& entry) {
      return entry.first->envelope().which() == which;
    }));
  }
  std::size_t unreadable() const { return unreadable_.load(); }

  // For owners that keep their own state under the peer's lock and notify waiters.
  std::mutex& mutex() { return mutex_; }
  void notify() { cv_.notify_all(); }

 private:
  std::vector<Received> recorded_locked() const {
    std::vector<Received> all;
    all.reserve(inbox_.size());
    for (const auto& entry : inbox_) all.push_back(entry.first);
    return all;
  }

  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(wake_fd_, &one, sizeof(one));
  }

  void loop(std::promise<void>& ready) {
    try {
      socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
      wire::configure_socket(*socket_);
      if (!options_.routing_id.empty()) socket_->set(zmq::sockopt::routing_id, options_.routing_id);
      socket_->connect(endpoint_);
    } catch (...) {
      ready.set_exception(std::current_exception());
      return;
    }
    ready.set_value();
    auto next_beat = Clock::now() + kBeat;
    while (!stop_) {
      zmq::pollitem_t items[] = {{socket_->handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd_, ZMQ_POLLIN, 0}};
      const auto timeout = tick_ ? 1ms : std::chrono::milliseconds(10);
      zmq::poll(items, 2, timeout);
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t value = 0;
        [[maybe_unused]] const auto got = ::read(wake_fd_, &value, sizeof(value));
      }
      std::deque<std::vector<zmq::message_t>> outgoing;
      {
        std::lock_guard lock(mutex_);
        outgoing.swap(outbox_);
      }
      for (auto& parts : outgoing) {
        for (std::size_t i = 0; i < parts.size(); ++i) {
          socket_->send(parts[i], i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
        }
        spoke_ = true;
      }
      for (int n = 0; n < 1024; ++n) {
        if (n % 64 == 63) beat_if_due(next_beat);  // a long burst must not silence the peer
        zmq::message_t frame;
        if (!socket_->recv(frame, zmq::recv_flags::dontwait)) break;
        auto message = wire::InMessage::parse(std::move(frame));
        if (!message) {
          ++unreadable_;
          continue;
        }
        if (handler_) handler_(*this, *message);
        if (options_.record) {
          std::lock_guard lock(mutex_);
          inbox_.emplace_back(std::make_shared<wire::InMessage>(std::move(*message)), false);
        }
        cv_.notify_all();
      }
      if (tick_) tick_(*this);
      beat_if_due(next_beat);
    }
    socket_.reset();
  }

  void beat_if_due(Clock::time_point& next_beat) {
    const auto now = Clock::now();
    if (now < next_beat) return;
    next_beat = now + kBeat;
    if (beating_ && spoke_) send_now(heartbeat_message());
  }

  zmq::context_t& context_;
  std::string endpoint_;
  PeerOptions options_;
  Handler handler_;
  Tick tick_;
  int wake_fd_;
  std::atomic<bool> beating_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> unreadable_{0};
  bool spoke_ = false;  // peer thread only
  std::unique_ptr<zmq::socket_t> socket_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::vector<zmq::message_t>> outbox_;
  std::deque<std::pair<Received, bool>> inbox_;  // (message, taken)
  std::thread thread_;
};

// ---- a fake executor ------------------------------------------------------------------------------

struct HeldTask {
  std::uint64_t batch;
  std::uint32_t index;
  std::uint16_t attempt;
  std::string name;
  std::int64_t argument;
};

struct ExecutorOptions {
  std::string id{};
  std::string worker{};
  std::vector<std::string> names{"square"};
  std::uint32_t slots = 1;
  bool answer = true;                           // answer on its own, else the test calls answer()
  std::chrono::microseconds answer_after{0};    // how long each task "runs" (answering itself)
  std::size_t flush_every = 0;                  // most results per message; 0: no limit
  bool record = false;                          // keep raw messages (tasks frames) for inspection
  bool fail = false;                            // answer every task with an exception ("boom")
  std::atomic<std::uint64_t>* sequence = nullptr;  // a counter shared by executors, to order dispatches
};

// An executor: announces itself with its credit, keeps what it receives, and answers
// argument * argument, either promptly on its own or when the test says so.
class FakeExecutor {
 public:
  struct Stats {
    std::size_t tasks = 0;            // tasks received
    std::size_t answered = 0;         // results sent
    std::size_t max_outstanding = 0;  // most tasks held at once (received, not yet answered)
    std::size_t task_messages = 0;
    std::set<std::string> names;      // task names received
  };
  struct Dispatched {
    std::uint64_t sequence;  // position among every dispatch seen by executors sharing the counter
    std::uint64_t batch;
    std::uint32_t index;
  };

  FakeExecutor(zmq::context_t& context, const std::string& endpoint, ExecutorOptions options)
      : options_(std::move(options)),
        peer_(context, endpoint, PeerOptions{options_.id, true, options_.record},
              [this](Peer&, wire::InMessage& message) { on_message(message); },
              [this](Peer& peer) { on_tick(peer); }) {
    peer_.send(announce_executor(options_.id, options_.worker, options_.names, options_.slots));
  }

  const std::string& id() const { return options_.id; }
  Peer& peer() { return peer_; }

  Stats stats() {
    std::lock_guard lock(peer_.mutex());
    return stats_;
  }
  std::vector<HeldTask> held() {
    std::lock_guard lock(peer_.mutex());
    return {held_.begin(), held_.end()};
  }
  std::vector<Dispatched> dispatched() {
    std::lock_guard lock(peer_.mutex());
    return dispatched_;
  }
  // Waits until it holds at least `count` unanswered tasks.
  bool wait_held(std::size_t count, std::chrono::milliseconds limit = kSoon) {
    return wait_for([&] { return held_.size() >= count; }, limit);
  }
  bool wait_tasks(std::size_t count, std::chrono::milliseconds limit = kSoon) {
    return wait_for([&] { return stats_.tasks >= count; }, limit);
  }
  // Answers the `count` oldest held tasks (in one results message per batch).
  void answer(std::size_t count) {
    {
      std::lock_guard lock(peer_.mutex());
      to_answer_ += count;
    }
    peer_.notify();
  }

 private:
  template <class Condition>
  bool wait_for(Condition condition, std::chrono::milliseconds limit) {
    return peer_.wait(condition, limit);
  }

  void on_message(wire::InMessage& message) {
    const auto envelope = message.envelope();
    if (!envelope.isTasks()) return;
    const auto now = Clock::now();
    std::lock_guard lock(peer_.mutex());
    ++stats_.task_messages;
    for (const auto task : envelope.getTasks().getTasks()) {
      // Fuzzed windows reach fake executors too: read the argument only where it is an int.
      std::int64_t argument = 0;
      if (task.getArgs().isTuple() && task.getArgs().getTuple().size() > 0 && task.getArgs().getTuple()[0].isInt()) {
        argument = task.getArgs().getTuple()[0].getInt();
      }
      held_.push_back(
          HeldTask{task.getBatchId(), task.getIndex(), task.getAttempt(), task.getName().cStr(), argument});
      due_.push_back(now + options_.answer_after);
      stats_.names.insert(task.getName().cStr());
      if (options_.sequence != nullptr) {
        dispatched_.push_back(Dispatched{options_.sequence->fetch_add(1), task.getBatchId(), task.getIndex()});
      }
    }
    stats_.tasks += envelope.getTasks().getTasks().size();
    stats_.max_outstanding = std::max(stats_.max_outstanding, held_.size());
  }

  void on_tick(Peer& peer) {
    std::vector<HeldTask> answering;
    {
      std::lock_guard lock(peer_.mutex());
      const auto now = Clock::now();
      while (!held_.empty()) {
        const bool ordered = to_answer_ > 0;
        const bool due = options_.answer && due_.front() <= now;
        if (!ordered && !due) break;
        if (ordered) --to_answer_;
        answering.push_back(held_.front());
        held_.pop_front();
        due_.pop_front();
      }
      stats_.answered += answering.size();
    }
    // Results messages of one batch each, in order, and (like the real executor) of at most
    // `flush_every` results.
    const std::size_t most = options_.flush_every == 0 ? answering.size() : options_.flush_every;
    std::size_t begin = 0;
    std::vector<Answer> answers;
    while (begin < answering.size()) {
      answers.clear();
      std::size_t end = begin;
      while (end < answering.size() && answering[end].batch == answering[begin].batch && answers.size() < most) {
        const HeldTask& task = answering[end];
        // Fuzzed arguments may be any int64: the square wraps around (unsigned) rather than overflow.
        const auto square = static_cast<std::int64_t>(static_cast<std::uint64_t>(task.argument) *
                                                      static_cast<std::uint64_t>(task.argument));
        answers.push_back(Answer{task.batch, task.index, task.attempt, square});
        ++end;
      }
      peer.send_now(options_.fail ? failures_message(answers, options_.id) : results_message(answers, options_.id));
      begin = end;
    }
    if (!answering.empty()) peer_.notify();
  }

  ExecutorOptions options_;
  // Guarded by peer_.mutex():
  std::deque<HeldTask> held_;
  std::deque<Clock::time_point> due_;
  std::size_t to_answer_ = 0;
  Stats stats_;
  std::vector<Dispatched> dispatched_;
  Peer peer_;  // last: its thread calls back into the members above
};

// ---- a fake client -------------------------------------------------------------------------------

struct Outcome {
  bool ok = false;
  std::int64_t value = 0;
  wire::ErrorKind kind = wire::ErrorKind::EXCEPTION;
  std::string message;
  std::uint16_t attempt = 0;
};

// A client: submits windows, gathers outcomes by (batch, index), counts outcomes it got twice.
class FakeClient {
 public:
  FakeClient(zmq::context_t& context, const std::string& endpoint)
      : peer_(context, endpoint, PeerOptions{}, [this](Peer&, wire::InMessage& message) { on_message(message); }) {}

  Peer& peer() { return peer_; }
  void send(zmq::message_t frame) { peer_.send(std::move(frame)); }

  std::size_t settled(std::uint64_t batch) {
    std::lock_guard lock(peer_.mutex());
    return outcomes_[batch].size();
  }
  bool wait_settled(std::uint64_t batch, std::size_t count, std::chrono::milliseconds limit = kSoon) {
    return peer_.wait([&] { return outcomes_[batch].size() >= count; }, limit);
  }
  std::map<std::uint32_t, Outcome> outcomes(std::uint64_t batch) {
    std::lock_guard lock(peer_.mutex());
    return outcomes_[batch];
  }
  std::size_t twice() {
    std::lock_guard lock(peer_.mutex());
    return twice_;
  }
  // Output chunks received, as (index, text), in arrival order.
  std::vector<std::pair<std::uint32_t, std::string>> output(std::uint64_t batch) {
    std::lock_guard lock(peer_.mutex());
    return output_[batch];
  }
  bool wait_output(std::uint64_t batch, std::size_t chunks, std::chrono::milliseconds limit = kSoon) {
    return peer_.wait([&] { return output_[batch].size() >= chunks; }, limit);
  }
  // The ack of a batch: its receipt, or why it was refused (prefixed "refused: ").
  std::optional<std::string> ack(std::uint64_t batch) {
    std::lock_guard lock(peer_.mutex());
    const auto found = acks_.find(batch);
    if (found == acks_.end()) return std::nullopt;
    return found->second;
  }
  std::optional<std::string> wait_ack(std::uint64_t batch, std::chrono::milliseconds limit = kSoon) {
    peer_.wait([&] { return acks_.count(batch) != 0; }, limit);
    return ack(batch);
  }

 private:
  void on_message(wire::InMessage& message) {
    const auto envelope = message.envelope();
    if (envelope.isAck()) {
      const auto ack = envelope.getAck();
      std::lock_guard lock(peer_.mutex());
      acks_[ack.getBatchId()] = ack.hasRefused() ? "refused: " + std::string(ack.getRefused().getMessage().cStr())
                                                 : std::string(ack.getReceipt().cStr());
      return;
    }
    if (envelope.isOutput()) {
      const auto chunk = envelope.getOutput();
      std::lock_guard lock(peer_.mutex());
      output_[chunk.getBatchId()].emplace_back(
          chunk.getIndex(), std::string(reinterpret_cast<const char*>(chunk.getData().begin()), chunk.getData().size()));
      return;
    }
    if (!envelope.isResults()) return;
    std::lock_guard lock(peer_.mutex());
    for (const auto result : envelope.getResults()) {
      Outcome outcome;
      outcome.attempt = result.getAttempt();
      if (result.isValue()) {
        outcome.ok = true;
        outcome.value = result.getValue().isInt() ? result.getValue().getInt() : 0;
      } else {
        outcome.kind = result.getError().getKind();
        outcome.message = result.getError().getMessage().cStr();
      }
      auto& slots = outcomes_[result.getBatchId()];
      if (!slots.emplace(result.getIndex(), std::move(outcome)).second) ++twice_;
    }
  }

  // Guarded by peer_.mutex():
  std::map<std::uint64_t, std::map<std::uint32_t, Outcome>> outcomes_;
  std::map<std::uint64_t, std::vector<std::pair<std::uint32_t, std::string>>> output_;
  std::map<std::uint64_t, std::string> acks_;
  std::size_t twice_ = 0;
  Peer peer_;  // last
};

// ---- status -------------------------------------------------------------------------------------

struct WorkerInfo {
  std::string id{};
  std::uint32_t executors = 0;
  std::uint32_t free_slots = 0;
  std::vector<std::string> names;
};
struct StatusInfo {
  std::vector<WorkerInfo> workers;
  std::uint64_t queued = 0;
  std::uint64_t running = 0;
  std::uint64_t dropped = 0;
  std::uint64_t deferred_pending = 0;
  std::uint64_t deferred_running = 0;
  std::uint64_t deferred_done = 0;
  std::uint64_t deferred_dead = 0;

  std::uint32_t executors() const {
    std::uint32_t total = 0;
    for (const auto& worker : workers) total += worker.executors;
    return total;
  }
  const WorkerInfo* worker(const std::string& id) const {
    for (const auto& worker : workers) {
      if (worker.id == id) return &worker;
    }
    return nullptr;
  }
};

// Asks the broker for its status over a fresh DEALER; nullopt when it does not answer in time.
inline std::optional<StatusInfo> query_status(zmq::context_t& context, const std::string& endpoint,
                                              std::chrono::milliseconds limit = kSoon) {
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  wire::configure_socket(socket);
  socket.connect(endpoint);
  socket.send(status_request(), zmq::send_flags::none);
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, 10ms);
    zmq::message_t frame;
    if (!socket.recv(frame, zmq::recv_flags::dontwait)) continue;
    auto message = wire::InMessage::parse(std::move(frame));
    if (!message || !message->envelope().isStatus()) continue;
    const auto status = message->envelope().getStatus();
    StatusInfo info;
    info.queued = status.getQueued();
    info.deferred_pending = status.getDeferredPending();
    info.deferred_running = status.getDeferredRunning();
    info.deferred_done = status.getDeferredDone();
    info.deferred_dead = status.getDeferredDead();
    info.running = status.getRunning();
    info.dropped = status.getDroppedMessages();
    for (const auto worker : status.getWorkers()) {
      WorkerInfo entry;
      entry.id = worker.getWorkerId().cStr();
      entry.executors = worker.getProcesses();
      entry.free_slots = worker.getFreeSlots();
      for (const auto name : worker.getTaskNames()) entry.names.emplace_back(name.cStr());
      info.workers.push_back(std::move(entry));
    }
    return info;
  }
  return std::nullopt;
}

// Polls the broker's status until `condition` holds; returns the last status seen.
template <class Condition>
std::optional<StatusInfo> wait_status(zmq::context_t& context, const std::string& endpoint, Condition condition,
                                      std::chrono::milliseconds limit = kSoon) {
  const auto deadline = Clock::now() + limit;
  std::optional<StatusInfo> last;
  while (Clock::now() < deadline) {
    last = query_status(context, endpoint, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    if (last && condition(*last)) return last;
    std::this_thread::sleep_for(5ms);
  }
  return std::nullopt;
}

// Waits until the broker lists `count` executors in total.
inline bool wait_executors(zmq::context_t& context, const std::string& endpoint, std::uint32_t count) {
  return wait_status(context, endpoint, [&](const StatusInfo& status) { return status.executors() == count; }).has_value();
}

// A worker supervisor: announces, heartbeats, records what the broker tells it (stopExecutor).
inline std::unique_ptr<Peer> make_supervisor(zmq::context_t& context, const std::string& endpoint, const std::string& worker,
                                             std::uint32_t processes) {
  auto peer = std::make_unique<Peer>(context, endpoint, PeerOptions{"supervisor:" + worker});
  peer->send(announce_supervisor(worker, processes));
  return peer;
}

// The text of an `error` envelope, or of an ack's refusal.
inline std::string error_text(const Received& message) {
  if (!message) return "(no message)";
  const auto envelope = message->envelope();
  if (envelope.isError()) return envelope.getError().getMessage().cStr();
  if (envelope.isAck() && envelope.getAck().hasRefused()) return envelope.getAck().getRefused().getMessage().cStr();
  return "(not an error)";
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace broker_test
