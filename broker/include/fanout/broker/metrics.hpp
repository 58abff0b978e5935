// <fanout/broker/metrics.hpp>: what the broker tells an operations endpoint (fanout-broker
// --metrics): a snapshot of its state and counters, which its loop publishes every heartbeat, and
// the labels under which they are counted. Plain data: rendering it (Prometheus text) is the
// endpoint's business (broker/endpoint/).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fanout/broker/status_view.hpp>

#include "ops/histogram.hpp"

namespace fanout::broker {

struct MetricsSnapshot {
  using Counts = std::vector<std::pair<std::string, std::uint64_t>>;  // (label value, count), sorted

  // Gauges: the state at the moment of the snapshot.
  Counts queued_by_task;       // tasks waiting at the broker, by task name (names with none left out)
  std::uint64_t running = 0;   // tasks at executors
  std::uint64_t executors = 0;
  std::uint64_t workers = 0;   // supervisors
  std::uint64_t clients = 0;   // clients with batches or heard from within the liveness period
  std::uint64_t batches = 0;   // batches held (deferred ones included)
  std::uint64_t deferred_pending = 0, deferred_running = 0, deferred_done = 0, deferred_dead = 0;

  // Counters since start.
  // Settled slots by outcome: "success", or the error kind in snake_case ("exception", "timeout",
  // "worker_lost", "cancelled", "unknown_task", "refused", ...). A deferred task counts once, when
  // it finishes or is recorded as dead, not per failed attempt.
  Counts completed;
  // Messages refused or dropped, by reason: "bad_message", "refused", "unknown_peer", ...
  Counts refused;
  std::uint64_t tasks_received = 0;
  std::uint64_t requeued_tasks = 0;
  std::uint64_t duplicate_results = 0;
  std::uint64_t executors_lost = 0;

  // Histograms, in seconds.
  ops::Histogram task_seconds{ops::kTaskSecondsBounds};        // run time at the executor (elapsedUs)
  ops::Histogram queue_wait_seconds{ops::kTaskSecondsBounds};  // arrival at the broker to first dispatch
  std::optional<ops::Histogram> journal_fsync_seconds;         // with a journal only

  // What the status page shows beyond the figures above (status_view.hpp).
  StatusView status;
};

}  // namespace fanout::broker
