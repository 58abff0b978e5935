#include "retry_backoff.hpp"

#include <algorithm>

namespace fanout::broker {

RetryBackoff::RetryBackoff(std::chrono::milliseconds first, std::chrono::milliseconds most)
    : first_(std::max(first, std::chrono::milliseconds(0))), most_(std::max(most, first_)), random_(std::random_device{}()) {}

std::chrono::milliseconds RetryBackoff::after(std::uint32_t failed) {
  if (first_.count() == 0) return first_;
  // Doubling stops at the cap (no overflow however many attempts an operator allows).
  auto delay = first_;
  for (std::uint32_t n = 1; n < failed && delay < most_; ++n) delay = std::min(delay * 2, most_);
  const auto half = delay.count() / 2;
  std::uniform_int_distribution<std::chrono::milliseconds::rep> jitter(0, delay.count() - half);
  return std::chrono::milliseconds(half + jitter(random_));
}

}  // namespace fanout::broker
