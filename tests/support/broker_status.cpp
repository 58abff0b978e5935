// broker_status.cpp
#include "broker_status.hpp"

#include <thread>

namespace fanout_test {

std::optional<StatusCounts> wait_for_status(zmq::context_t& context, const std::string& endpoint,
                                            const std::function<bool(const StatusCounts&)>& condition,
                                            std::chrono::milliseconds limit) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + limit;
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    const auto counts = fanout::link::query_counts(context, endpoint, left);
    if (counts && condition(*counts)) return counts;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace fanout_test
