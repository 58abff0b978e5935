// loop_pulse.hpp: how an HTTP thread tells whether a loop on another thread is alive. The loop
// calls beat() every turn (one relaxed atomic store); /healthz asks alive(limit). Knows nothing
// of what the loop does, so a health check never depends on a broker being reachable.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

namespace fanout::ops {

class LoopPulse {
 public:
  using Clock = std::chrono::steady_clock;

  // The loop turned now. Any thread; lock-free.
  void beat() noexcept {
    last_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  }

  // How long ago the loop last turned; nullopt before its first turn.
  std::optional<Clock::duration> since_last() const noexcept {
    const auto last = last_.load(std::memory_order_relaxed);
    if (last == 0) return std::nullopt;
    return Clock::now().time_since_epoch() - Clock::duration(last);
  }

  // Whether the loop turned within `limit`.
  bool alive(Clock::duration limit) const noexcept {
    const auto since = since_last();
    return since && *since <= limit;
  }

 private:
  std::atomic<Clock::rep> last_{0};
  static_assert(std::atomic<Clock::rep>::is_always_lock_free);
};

}  // namespace fanout::ops
