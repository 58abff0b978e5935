// status_reply.hpp: the broker's answer to a `statusRequest` (`fanout status`, the local
// service's idle check): workers with their executors, free slots, credit, versions and task
// names, queue depth, tasks running, deferred counts, refusals by reason and the broker's version; and the deferred counts the metrics share.
//
// Owns nothing: it reads the parts' state as it is at that moment, on the loop's thread, and
// encodes it. Asking for it and rendering it is the client side's
// (client/link/broker_queries.hpp).
//
// Promises: one `status` envelope per call, built from const views only (asking changes nothing).
// Does not: send it (the loop does), or keep history (every figure is "now" or "since start").
#pragma once

#include <cstdint>

#include <zmq.hpp>

#include <fanout/broker/broker.hpp>
#include <fanout/broker/metrics.hpp>

#include "batches.hpp"
#include "deferred_store.hpp"
#include "peers.hpp"

namespace fanout::broker {

// Deferred tasks by state: pending (waiting, not at an executor), running, done since start, dead.
struct DeferredCounts {
  std::uint64_t pending = 0, running = 0, done = 0, dead = 0;
};
DeferredCounts deferred_counts(const DeferredState& deferred, const Batches& batches, const Counters& counters);

// The `status` envelope for the broker whose parts these are, as one frame.
// Refusals by reason come from `metrics` (the loop's last published snapshot).
zmq::message_t status_reply(const Peers& peers, const Batches& batches, const DeferredState& deferred,
                            const Counters& counters, const MetricsSnapshot& metrics);

}  // namespace fanout::broker
