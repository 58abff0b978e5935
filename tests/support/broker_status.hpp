// broker_status.hpp: waiting for a broker to reach a state, read through the status API
// (fanout::link::query_counts, as the local service reads it), never from `fanout status` text.
// For brokers in-process (broker tests) and out (clusters) alike.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include <zmq.hpp>

#include "broker_queries.hpp"

namespace fanout_test {

using fanout::link::StatusCounts;

// Asks the broker at `endpoint` for its counts until `condition` holds of them; the counts that
// satisfied it, or nullopt when none did (or the broker did not answer) before `limit`.
std::optional<StatusCounts> wait_for_status(zmq::context_t& context, const std::string& endpoint,
                                            const std::function<bool(const StatusCounts&)>& condition,
                                            std::chrono::milliseconds limit);

}  // namespace fanout_test
