// retry_backoff.hpp: how long a failed deferred task waits before its next attempt. Exponential
// (the first delay, doubled after each failed attempt, up to a most) with jitter: the second half
// of each delay is random, so tasks that failed together (a dependency went down) do not all come
// back at the same moment, and a task that fails at once does not run back to back.
//
// Owns its random generator (seeded per broker). Threads: the loop's only.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace fanout::broker {

class RetryBackoff {
 public:
  RetryBackoff(std::chrono::milliseconds first, std::chrono::milliseconds most);

  // The wait before the attempt that follows `failed` failed attempts (1 or more): between half
  // and all of first * 2^(failed - 1), capped at `most`. Zero when `first` is zero.
  std::chrono::milliseconds after(std::uint32_t failed);

 private:
  std::chrono::milliseconds first_;
  std::chrono::milliseconds most_;
  std::mt19937_64 random_;
};

}  // namespace fanout::broker
