// metrics.hpp: what the broker counts for operators (fanout-broker --metrics), and how the
// numbers leave the loop's thread.
//
// Owns the counters by label (outcomes, refusals) and the histograms of run and wait times, which
// the parts record into as things happen (Batches: outcomes and run times, Dispatch: wait times,
// Outbox: refusals), and the last published MetricsSnapshot. Once per heartbeat the loop calls
// publish(), which adds the gauges it reads from the parts (queue depth by task name, executors,
// workers, clients, deferred tasks, the journal's syncs, and the status page's view:
// status_view.hpp) and swaps the snapshot in under a mutex
// held for a pointer's copy.
//
// Threads: every recording call and publish() on the loop's thread only (plain integers, no
// atomics, no allocation); snapshot(), the pulse and ready() from any thread.
//
// Promises: an HTTP thread never reads a structure of the loop; a scrape costs the loop nothing
// but the once-per-heartbeat publish. Does not: render anything (the endpoint does).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>

#include <fanout/broker/broker.hpp>
#include <fanout/broker/metrics.hpp>

#include "ops/histogram.hpp"
#include "ops/loop_pulse.hpp"
#include "records.hpp"
#include "refusal.hpp"
#include "status_view.hpp"

namespace fanout::broker {

class Peers;
class Batches;
class DeferredLedger;

class Metrics {
 public:
  // ---- recorded by the parts, on the loop's thread ----
  void completed_ok(std::uint64_t count = 1) noexcept { successes_ += count; }
  void completed(wire::ErrorKind kind, std::uint64_t count = 1) noexcept;
  // A message refused or dropped (the outbox counts each one it answers).
  void refused(Refusal reason) noexcept { ++refusals_[static_cast<std::size_t>(reason)]; }
  void ran(std::chrono::microseconds elapsed) noexcept {
    task_seconds_.observe(std::chrono::duration<double>(elapsed).count());
  }
  // `count` tasks waited `wait` at the broker before their first dispatch.
  void waited(Clock::duration wait, std::uint64_t count = 1) noexcept {
    queue_wait_.observe(std::chrono::duration<double>(wait).count(), count);
  }

  // ---- the loop ----
  // Builds a snapshot of the parts' state and the counters and makes it the one snapshot() gives.
  void publish(const Peers& peers, const Batches& batches, const DeferredLedger& ledger, const Counters& counters);
  ops::LoopPulse& pulse() noexcept { return pulse_; }
  void set_ready() noexcept { ready_.store(true, std::memory_order_release); }

  // ---- any thread ----
  std::shared_ptr<const MetricsSnapshot> snapshot() const;
  const ops::LoopPulse& pulse() const noexcept { return pulse_; }
  bool ready() const noexcept { return ready_.load(std::memory_order_acquire); }

 private:
  static constexpr std::size_t kKinds = 16;  // more than wire::ErrorKind has

  std::uint64_t successes_ = 0;
  std::array<std::uint64_t, kKinds> failures_{};  // by wire::ErrorKind
  std::array<std::uint64_t, kRefusals> refusals_{};  // by Refusal
  ops::Histogram task_seconds_{ops::kTaskSecondsBounds};
  ops::Histogram queue_wait_{ops::kTaskSecondsBounds};
  RecentRates recent_;                      // for the status page's throughput and latency
  Clock::time_point started_ = Clock::now();

  ops::LoopPulse pulse_;
  std::atomic<bool> ready_{false};
  mutable std::mutex mutex_;  // guards published_ (held for a pointer copy)
  std::shared_ptr<const MetricsSnapshot> published_ = std::make_shared<MetricsSnapshot>();
};

// The snake_case name of an error kind, as in labels: "worker_lost", "unknown_task"...
std::string_view kind_label(wire::ErrorKind kind) noexcept;

}  // namespace fanout::broker
