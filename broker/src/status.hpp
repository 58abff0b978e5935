// status.hpp: asking a running broker what it serves (`fanout-broker --status ADDR`).
#pragma once

#include <chrono>
#include <string>

#include <zmq.hpp>

namespace fanout::broker {

// Asks the broker at `endpoint` for its status and renders it as text: workers, their executors
// and free slots, queue depth, counters. Throws fanout::Error when the broker does not answer
// within `timeout`.
std::string status_report(zmq::context_t& context, const std::string& endpoint, std::chrono::milliseconds timeout);

}  // namespace fanout::broker
