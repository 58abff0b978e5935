// status_view.hpp: how the broker's loop fills the status page's view (<fanout/broker/status_view.hpp>)
// from its parts, and the recent throughput and latency it shows.
//
// Owns only RecentRates' marks. Threads: the loop's thread (Metrics::publish, every heartbeat).
//
// Promises: reads the same records `fanout status` reads (status_reply.cpp), through const views,
// and changes nothing; the cost is one pass over workers, executors and batches per heartbeat, and
// over deferred tasks, as the deferred counts already make. Lists are capped (StatusView's limits),
// and peer text is cut to StatusView::kViewTextLimit bytes. Does not: escape anything (renderers do).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <vector>

#include <fanout/broker/status_view.hpp>

#include "records.hpp"

namespace fanout::broker {

class Peers;
class Batches;
class DeferredState;

// Workers, batches and dead deferred tasks as they are `now` (recent and uptime left empty).
StatusView status_view(const Peers& peers, const Batches& batches, const DeferredState& deferred,
                       Clock::time_point now);

// Throughput and latency over the last few minutes, from the loop's cumulative counts: a mark
// every kStretch, kStretches of them kept.
class RecentRates {
 public:
  static constexpr auto kStretch = std::chrono::seconds(10);
  static constexpr std::size_t kStretches = 30;  // five minutes

  // The counts since start as they are `now`: slots settled, and the sum and number of task run
  // times that came back.
  void record(Clock::time_point now, std::uint64_t completed, double run_seconds, std::uint64_t runs);
  // Oldest first; the last one is the stretch in progress (from the last mark to the last record).
  std::vector<RecentRate> rates() const;

 private:
  struct Mark {
    Clock::time_point at{};
    std::uint64_t completed = 0;
    double run_seconds = 0;
    std::uint64_t runs = 0;
  };
  std::deque<Mark> marks_;
  Mark latest_;
};

}  // namespace fanout::broker
