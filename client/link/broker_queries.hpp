// broker_queries.hpp: asking a running broker one question, as the tools and the local service do
// (`fanout status`, `fanout deferred`, `fanout-broker --status`, the local service's idle check).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "transport.hpp"

namespace fanout::link {

// Sends `request` to the broker at `endpoint` from a fresh socket and returns its first answer of
// kind `reply`, or an `error` answer (the broker refused the request); skips anything else (a
// heartbeat). nullopt when neither comes within `timeout`. Throws fanout::Error for an answer that
// does not parse. For the tools that ask a broker one question: status, deferred.
std::optional<wire::InMessage> ask_broker(zmq::context_t& context, const std::string& endpoint,
                                          zmq::message_t&& request, wire::Envelope::Which reply,
                                          std::chrono::milliseconds timeout);

// The broker's counters, for programs that act on them (the local service's idle check, tests
// that wait for workers to connect).
struct StatusCounts {
  std::uint64_t queued = 0;
  std::uint64_t running = 0;
  std::uint64_t deferred_pending = 0;
  std::uint64_t deferred_running = 0;
  std::uint64_t deferred_done = 0;
  std::uint64_t deferred_dead = 0;
  std::size_t workers = 0;
  std::size_t executors = 0;  // connected executors, over every worker
  std::uint64_t clients = 0;  // clients with batches, or heard from within the liveness period
};

// Asks the broker at `endpoint` for its status; nullopt when it does not answer within `timeout`.
std::optional<StatusCounts> query_counts(zmq::context_t& context, const std::string& endpoint,
                                        std::chrono::milliseconds timeout);

// One worker as the broker sees it. Text is as the worker announced it: escape it to show it.
struct WorkerState {
  std::string id;
  std::string host;
  std::string version;  // empty: a worker older than the field
  std::uint32_t executors = 0;
  std::uint32_t busy = 0;        // executors with work
  std::uint32_t running = 0;     // tasks at its executors
  std::uint32_t credit = 0;      // tasks its executors may hold at once (prefetch included)
  std::uint32_t free_slots = 0;  // credit not used (0 while draining)
  std::uint64_t restarts = 0;    // executors lost while it stayed
  std::uint32_t last_seen_ms = 0;
  std::vector<std::string> task_names;
};

// What `fanout status` shows of a broker.
struct BrokerStatus {
  std::string endpoint;
  std::string version;  // empty: a broker older than the field
  std::uint64_t queued = 0, running = 0, clients = 0;
  std::uint64_t deferred_pending = 0, deferred_running = 0, deferred_done = 0, deferred_dead = 0;
  std::uint64_t dropped_messages = 0;
  std::vector<std::pair<std::string, std::uint64_t>> refused;  // by reason; empty from an older broker
  std::vector<WorkerState> workers;
};

// Asks the broker at `endpoint` for its status. Throws fanout::Error when it does not answer
// within `timeout`, refuses, or answers in another protocol version (the error names both).
BrokerStatus query_status(zmq::context_t& context, const std::string& endpoint, std::chrono::milliseconds timeout);

// The status as text for a terminal: peer text escaped (printable.hpp), executors counted as
// executors and their credit shown apart, each refusal with its reason.
std::string status_text(const BrokerStatus& status);

// status_text(query_status(...)).
std::string status_report(zmq::context_t& context, const std::string& endpoint, std::chrono::milliseconds timeout);

}  // namespace fanout::link
