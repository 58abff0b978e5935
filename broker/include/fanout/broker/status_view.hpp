// <fanout/broker/status_view.hpp>: what the broker's status page (`/` and `/status.json` of
// fanout-broker --metrics) shows beyond the metrics: each worker with its executors, each running
// batch with its progress, the dead deferred tasks with their errors, and throughput and latency
// over the last minutes. Plain data, published with the metrics snapshot every heartbeat
// (MetricsSnapshot::status), so the page never reads the loop's structures.
//
// Peer text (worker ids, hosts, task names, errors) is kept as the peer sent it, cut to
// kViewTextLimit bytes; whoever renders it escapes it for its medium (JSON, HTML, a terminal).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fanout::broker {

struct WorkerView {
  std::string id;    // as the worker announced it (default host/pid)
  std::string host;
  std::string version;  // the fanout release it announced; empty from a worker too old to say
  std::int32_t pid = 0;
  std::uint32_t executors = 0;  // connected executors of this worker
  std::uint32_t busy = 0;       // executors with at least one task in flight
  std::uint32_t running = 0;    // tasks in flight at its executors (credit used)
  std::uint32_t credit = 0;     // tasks its executors may hold at once (slots), busy or not
  std::uint32_t max_processes = 0;
  std::uint64_t restarts = 0;  // executors lost while the worker stayed connected
  std::uint32_t last_seen_ms = 0;
  bool draining = false;
  bool allow_shell = false;
  std::vector<std::string> task_names;  // sorted, distinct
};

struct BatchView {
  std::uint64_t id = 0;
  std::string client;  // the client's connection, in hex; "deferred" for the broker's own
  bool deferred = false;
  bool open_ended = false;  // `fanout run` reading its input: no total yet
  std::uint32_t total = 0, received = 0, settled = 0, queued = 0, running = 0, succeeded = 0, failed = 0;
  double age_seconds = 0;
};

struct DeadTaskView {
  std::uint64_t receipt = 0;
  std::uint32_t index = 0;
  std::uint32_t attempts = 0;
  std::string error;
};

// One stretch of the recent past: tasks that settled in it and their mean run time.
struct RecentRate {
  double ago_seconds = 0;        // how long ago the stretch ended (0: the one in progress)
  double length_seconds = 0;
  std::uint64_t completed = 0;   // slots settled, any outcome
  double tasks_per_second = 0;
  double mean_task_seconds = 0;  // of the tasks whose run time came back in it; 0 when none
};

struct StatusView {
  static constexpr std::size_t kBatchLimit = 50;      // the oldest running batches shown
  static constexpr std::size_t kDeadLimit = 50;       // dead deferred tasks shown
  static constexpr std::size_t kViewTextLimit = 512;  // bytes of any peer text kept

  double uptime_seconds = 0;
  std::vector<WorkerView> workers;  // by id
  std::vector<BatchView> batches;   // oldest first, at most kBatchLimit
  std::uint64_t batches_total = 0;
  std::vector<DeadTaskView> dead;   // by receipt and index, at most kDeadLimit
  std::uint64_t dead_total = 0;
  std::vector<RecentRate> recent;   // oldest first, the last few minutes
};

}  // namespace fanout::broker
