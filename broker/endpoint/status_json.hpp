// status_json.hpp: /status.json of fanout-broker --metrics, the figures the status page (`/`)
// shows: workers and executors, queue depth by task name, recent throughput and latency, running
// batches, deferred tasks with the dead ones' errors, outcome and refusal counters, the version.
//
// Built from a published MetricsSnapshot only (never the loop's structures). Peer text is made
// printable (printable.hpp: controls, bidirectional overrides and broken UTF-8 escaped) before it
// is put in a JSON string; the page puts it in the document as text, never as markup.
//
// The fields are documented in docs/operations.md ("The status page"); add fields, never rename.
#pragma once

#include <string>

#include <fanout/broker/metrics.hpp>

namespace fanout::broker {

std::string status_json(const MetricsSnapshot& snapshot);

}  // namespace fanout::broker
