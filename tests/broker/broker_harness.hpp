// broker_harness.hpp: what the broker tests share: a real fanout::broker::Broker on a thread
// (fanout_test::RunningBroker) with short heartbeats, fake peers that talk to it over real ZeroMQ
// sockets with hand-built Envelopes (fake_peer.hpp, fake_executor.hpp, fake_client.hpp,
// broker_messages.hpp), and what the broker says in its status.
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fanout/broker/broker.hpp>
#include <zmq.hpp>

#include "broker_messages.hpp"
#include "broker_status.hpp"
#include "broker_thread.hpp"
#include "fake_client.hpp"
#include "fake_executor.hpp"
#include "fake_peer.hpp"
#include "test_support.hpp"
#include "transport.hpp"

namespace broker_test {

using fanout_test::RunningBroker;
using fanout_test::StatusCounts;

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

// ---- status -------------------------------------------------------------------------------------

// What the broker's status says of each worker and of its queues, for tests of the status reply
// itself. Waiting for a state of the broker goes through wait_status (the status API's counts).
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

// Polls the broker's counts (fanout_test::wait_for_status) until `condition` holds; those counts,
// or nullopt at the deadline.
template <class Condition>
std::optional<StatusCounts> wait_status(zmq::context_t& context, const std::string& endpoint, Condition condition,
                                        std::chrono::milliseconds limit = kSoon) {
  return fanout_test::wait_for_status(context, endpoint, condition, limit);
}

// Waits until the broker lists `count` executors in total.
inline bool wait_executors(zmq::context_t& context, const std::string& endpoint, std::uint32_t count) {
  return wait_status(context, endpoint, [&](const StatusCounts& status) { return status.executors == count; }).has_value();
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
