// histogram.hpp: a Prometheus-style histogram as plain data (cumulative bucket counts are made at
// rendering): bucket bounds in seconds, a count per bucket, the sum and the number of samples.
//
// Owns no lock and allocates nothing: the thread that observes owns it, and publishes a copy (the
// broker's loop every heartbeat, the journal's writer under its stats lock). Copying is a few
// dozen words.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace fanout::ops {

class Histogram {
 public:
  static constexpr std::size_t kMaxBuckets = 20;

  // `bounds`: increasing upper bounds in seconds (at most kMaxBuckets), with static storage
  // duration; +Inf is implied.
  explicit Histogram(std::span<const double> bounds) noexcept
      : bounds_(bounds.first(std::min(bounds.size(), kMaxBuckets))) {}

  // `count` samples of `seconds` each.
  void observe(double seconds, std::uint64_t count = 1) noexcept {
    // The first bound at or above the sample (Prometheus buckets are `le`, less than or equal).
    const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), seconds) - bounds_.begin();
    counts_[static_cast<std::size_t>(bucket)] += count;
    sum_ += seconds * static_cast<double>(count);
    samples_ += count;
  }

  std::span<const double> bounds() const noexcept { return bounds_; }
  // Samples in each bucket alone (not cumulative), bounds().size() + 1 of them (the last is +Inf).
  std::span<const std::uint64_t> counts() const noexcept { return {counts_.data(), bounds_.size() + 1}; }
  double sum() const noexcept { return sum_; }
  std::uint64_t samples() const noexcept { return samples_; }

 private:
  std::span<const double> bounds_;
  std::array<std::uint64_t, kMaxBuckets + 1> counts_{};
  double sum_ = 0;
  std::uint64_t samples_ = 0;
};

// Bounds for run and wait times of tasks: 100 µs to 5 min.
inline constexpr std::array<double, 16> kTaskSecondsBounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                           0.05,   0.1,     0.25,   0.5,   1,      5,     30,   300};
// Bounds for disk syncs: 50 µs to 2.5 s.
inline constexpr std::array<double, 12> kSyncSecondsBounds{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                           0.005,   0.01,   0.025,   0.1,    0.5,   2.5};

}  // namespace fanout::ops
