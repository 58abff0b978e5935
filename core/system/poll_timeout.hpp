// poll_timeout.hpp: a deadline as poll()'s timeout argument, for every part's event loop.
#pragma once

#include <algorithm>
#include <chrono>
#include <climits>

namespace fanout::sys {

// Milliseconds from now until `when`, rounded up: 0 when it has passed, -1 (wait without limit)
// for time_point::max().
inline int poll_timeout_ms(std::chrono::steady_clock::time_point when) noexcept {
  if (when == std::chrono::steady_clock::time_point::max()) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(when - std::chrono::steady_clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
}

}  // namespace fanout::sys
