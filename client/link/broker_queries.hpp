// broker_queries.hpp: asking a running broker one question, as the tools and the local service do
// (`fanout status`, `fanout deferred`, `fanout-broker --status`, the local service's idle check).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

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
};

// Asks the broker at `endpoint` for its status; nullopt when it does not answer within `timeout`.
std::optional<StatusCounts> query_counts(zmq::context_t& context, const std::string& endpoint,
                                        std::chrono::milliseconds timeout);

// Asks the broker at `endpoint` for its status and renders it as text: workers, their executors
// and free slots, queue depth, counters. Throws fanout::Error when the broker does not answer
// within `timeout`.
std::string status_report(zmq::context_t& context, const std::string& endpoint, std::chrono::milliseconds timeout);

}  // namespace fanout::link
