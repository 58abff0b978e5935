#include "metrics.hpp"

#include <map>
#include <string>

#include "batches.hpp"
#include "deferred_ledger.hpp"
#include "peers.hpp"
#include "status_reply.hpp"

namespace fanout::broker {

namespace {

std::size_t slot_of(wire::ErrorKind kind) noexcept { return static_cast<std::size_t>(kind); }

}  // namespace

std::string_view kind_label(wire::ErrorKind kind) noexcept {
  switch (kind) {
    case wire::ErrorKind::EXCEPTION: return "exception";
    case wire::ErrorKind::UNKNOWN_TASK: return "unknown_task";
    case wire::ErrorKind::BAD_ARGUMENTS: return "bad_arguments";
    case wire::ErrorKind::CRASHED: return "crashed";
    case wire::ErrorKind::TIMEOUT: return "timeout";
    case wire::ErrorKind::WORKER_LOST: return "worker_lost";
    case wire::ErrorKind::CANCELLED: return "cancelled";
    case wire::ErrorKind::BAD_RESULT: return "bad_result";
    case wire::ErrorKind::REFUSED: return "refused";
    case wire::ErrorKind::BAD_MESSAGE: return "bad_message";
    case wire::ErrorKind::UNREACHABLE: return "unreachable";
  }
  return "other";  // a kind of a newer schema
}

void Metrics::completed(wire::ErrorKind kind, std::uint64_t count) noexcept {
  if (slot_of(kind) < kKinds) failures_[slot_of(kind)] += count;
}

void Metrics::publish(const Peers& peers, const Batches& batches, const DeferredLedger& ledger,
                      const Counters& counters) {
  auto snapshot = std::make_shared<MetricsSnapshot>();
  std::map<std::string, std::uint64_t> queued;
  for (const auto& [id, batch] : batches.all()) {
    for (const Pending& pending : batch.queue) queued[pending.name_text()] += pending.end - pending.begin;
  }
  snapshot->queued_by_task.assign(queued.begin(), queued.end());
  for (const Executor& executor : peers.executors()) snapshot->running += executor.in_flight.size();
  snapshot->executors = static_cast<std::uint64_t>(std::ranges::distance(peers.executors()));
  snapshot->workers = peers.supervisor_count();
  snapshot->clients = peers.client_count();
  snapshot->batches = batches.all().size();
  const DeferredCounts deferred = deferred_counts(ledger.state(), batches, counters);
  snapshot->deferred_pending = deferred.pending;
  snapshot->deferred_running = deferred.running;
  snapshot->deferred_done = deferred.done;
  snapshot->deferred_dead = deferred.dead;

  // Every label value appears from the start (at 0), so that a rate over a restart is right and
  // an alert on a count that never happened has a series to look at.
  snapshot->completed.emplace_back("success", successes_);
  for (std::size_t kind = 0; kind <= slot_of(wire::ErrorKind::UNREACHABLE); ++kind) {
    snapshot->completed.emplace_back(kind_label(static_cast<wire::ErrorKind>(kind)), failures_[kind]);
  }
  for (std::size_t reason = 0; reason < kRefusals; ++reason) {
    snapshot->refused.emplace_back(refusal_label(static_cast<Refusal>(reason)), refusals_[reason]);
  }
  snapshot->tasks_received = counters.tasks_received.load(std::memory_order_relaxed);
  snapshot->requeued_tasks = counters.requeued_tasks.load(std::memory_order_relaxed);
  snapshot->duplicate_results = counters.duplicate_results.load(std::memory_order_relaxed);
  snapshot->executors_lost = counters.executors_lost.load(std::memory_order_relaxed);
  snapshot->task_seconds = task_seconds_;
  snapshot->queue_wait_seconds = queue_wait_;
  if (const auto stats = ledger.journal_stats()) snapshot->journal_fsync_seconds = stats->fsync_seconds;

  const auto now = Clock::now();
  std::uint64_t completed = successes_;
  for (const std::uint64_t failures : failures_) completed += failures;
  recent_.record(now, completed, task_seconds_.sum(), task_seconds_.samples());
  snapshot->status = status_view(peers, batches, ledger.state(), now);
  snapshot->status.recent = recent_.rates();
  snapshot->status.uptime_seconds = std::chrono::duration<double>(now - started_).count();

  std::shared_ptr<const MetricsSnapshot> published = std::move(snapshot);
  std::lock_guard lock(mutex_);
  published_.swap(published);
  // The old snapshot is released outside the lock, with `published`.
}

std::shared_ptr<const MetricsSnapshot> Metrics::snapshot() const {
  std::lock_guard lock(mutex_);
  return published_;
}

}  // namespace fanout::broker
