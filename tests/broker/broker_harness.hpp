// broker_harness.hpp: what the broker tests share: a real fanout::broker::Broker on a thread with
// short heartbeats, fake peers that talk to it over real ZeroMQ sockets with hand-built Envelopes
// (fake_peer.hpp, fake_executor.hpp, fake_client.hpp, broker_messages.hpp), and what the broker
// says in its status.
#pragma once

#include <doctest/doctest.h>

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fanout/broker/broker.hpp>
#include <kj/exception.h>
#include <zmq.hpp>

#include "broker_messages.hpp"
#include "fake_client.hpp"
#include "fake_executor.hpp"
#include "fake_peer.hpp"
#include "test_support.hpp"
#include "transport.hpp"

namespace broker_test {

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
