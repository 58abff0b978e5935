// backoff.hpp: exponential backoff with jitter, for reconnecting to a broker.
//
// After a broker restart every worker of a cluster notices within the same liveness period; the
// jitter spreads their reconnections so that the new broker is not hit by all of them at once.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace fanout::worker {

class Backoff {
 public:
  // Delays start at `initial`, double up to `limit`, and each is scaled by a random factor in
  // [1 - jitter, 1 + jitter].
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds limit, double jitter, std::uint64_t seed)
      : initial_(initial), limit_(std::max(limit, initial)), jitter_(std::clamp(jitter, 0.0, 1.0)), current_(initial),
        random_(seed) {}

  // The next delay to wait; the one after it is twice as long (up to the limit).
  std::chrono::milliseconds next() {
    std::uniform_real_distribution<double> factor(1.0 - jitter_, 1.0 + jitter_);
    const auto delay = std::chrono::milliseconds(
        std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(current_.count()) * factor(random_))));
    current_ = std::min(current_ * 2, limit_);
    return delay;
  }

  // Back to the initial delay, after a success.
  void reset() noexcept { current_ = initial_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds limit_;
  double jitter_;
  std::chrono::milliseconds current_;
  std::mt19937_64 random_;
};

}  // namespace fanout::worker
