// sched_workloads.cpp
#include "sched_workloads.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numbers>
#include <numeric>
#include <queue>
#include <random>

namespace fanout_bench {

namespace {

constexpr std::int64_t kMillisecond = 1000;

// Heavy-tailed durations: log-normal with this median and shape, from this seed. The seed was
// picked for a set like the tails of real work: median 50 ms, the longest 1,123 ms, four of them
// 500 ms or more, 6.6 s in all.
constexpr int kHeavyTasks = 40;
constexpr double kHeavyMedianMs = 50;
constexpr double kHeavySigma = 1.4;
constexpr std::uint64_t kHeavySeed = 1;
// Bounds on one heavy-tailed task, so that no seed or scale yields a zero or a minutes-long sleep.
constexpr double kHeavyMinMs = 2;
constexpr double kHeavyMaxMs = 2000;

// equal-after-fast: this many quick tasks first, enough for an average that follows the last few
// tasks of a name (the broker's moves 1/8 of the way per task) to forget a history of slow ones.
constexpr int kFastTasksBefore = 50;

// A uniform number in (0, 1] from the 53 high bits of a draw: std::mt19937_64's sequence is fixed
// by the standard, the distributions of <random> are not, so the durations are the same wherever
// the benchmark is built.
double uniform(std::mt19937_64& bits) { return static_cast<double>((bits() >> 11) + 1) * 0x1.0p-53; }

std::vector<std::int64_t> heavy_tailed_ms() {
  std::mt19937_64 bits(kHeavySeed);
  std::vector<std::int64_t> durations;
  for (int i = 0; i < kHeavyTasks; ++i) {
    // Box-Muller: a standard normal from two uniforms.
    const double normal = std::sqrt(-2.0 * std::log(uniform(bits))) * std::cos(2.0 * std::numbers::pi * uniform(bits));
    const double ms = std::clamp(kHeavyMedianMs * std::exp(kHeavySigma * normal), kHeavyMinMs, kHeavyMaxMs);
    durations.push_back(std::llround(ms));
  }
  return durations;
}

std::vector<std::int64_t> scaled(const std::vector<std::int64_t>& durations_ms, double scale) {
  std::vector<std::int64_t> durations_us;
  durations_us.reserve(durations_ms.size());
  for (const auto ms : durations_ms) {
    durations_us.push_back(std::max<std::int64_t>(1, std::llround(static_cast<double>(ms * kMillisecond) * scale)));
  }
  return durations_us;
}

}  // namespace

std::string duration_text(std::int64_t us) {
  if (us >= 1'000'000 && us % 1'000'000 == 0) return std::to_string(us / 1'000'000) + " s";
  if (us % 1000 == 0) return std::to_string(us / 1000) + " ms";
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f ms", static_cast<double>(us) / 1000.0);
  return text;
}

std::vector<SchedWorkload> sched_workloads(double scale) {
  std::vector<std::int64_t> uneven{900};
  uneven.insert(uneven.end(), 9, 100);
  std::vector<SchedWorkload> workloads{
      {"equal", "", scaled(std::vector<std::int64_t>(6, 300), scale), 2, {}},
      {"uneven", "", scaled(uneven, scale), 2, {}},
      {"heavy-tailed", "", scaled(heavy_tailed_ms(), scale), 2, {}},
      {"first-result", "", scaled({1000, 100, 100, 100}, scale), 0, {}},
      {"equal-after-fast", "", scaled(std::vector<std::int64_t>(6, 300), scale), 2,
       scaled(std::vector<std::int64_t>(kFastTasksBefore, 1), scale)},
  };
  const auto d = [&](std::size_t workload, std::size_t task) {
    return duration_text(workloads[workload].durations_us[task]);
  };
  workloads[0].title = "Equal: 6 tasks of " + d(0, 0) + ", max_concurrency(2)";
  workloads[1].title = "Uneven: one task of " + d(1, 0) + " first, then nine of " + d(1, 1) + ", max_concurrency(2)";
  workloads[2].title = "Heavy-tailed: 40 log-normal durations (median " +
                       duration_text(std::llround(kHeavyMedianMs * 1000 * scale)) +
                       ", sigma 1.4, seed 1), max_concurrency(2)";
  workloads[3].title = "Time to results: one task of " + d(3, 0) + " first, then three of " + d(3, 1) + ", no cap";
  workloads[4].title = "Equal after fast ones: " + std::to_string(kFastTasksBefore) + " tasks of " +
                       duration_text(workloads[4].before_us[0]) + " (untimed), then 6 tasks of " + d(4, 0) +
                       " of the same task, max_concurrency(2)";
  return workloads;
}

std::vector<std::int64_t> list_schedule(const std::vector<std::int64_t>& durations_us, std::size_t slots) {
  if (slots == 0) slots = std::max<std::size_t>(1, durations_us.size());
  // The times at which each slot is next free, earliest first.
  std::priority_queue<std::int64_t, std::vector<std::int64_t>, std::greater<>> free_at;
  for (std::size_t i = 0; i < slots; ++i) free_at.push(0);
  std::vector<std::int64_t> finish;
  finish.reserve(durations_us.size());
  for (const auto duration : durations_us) {
    const std::int64_t start = free_at.top();
    free_at.pop();
    finish.push_back(start + duration);
    free_at.push(start + duration);
  }
  return finish;
}

std::int64_t lpt_makespan(std::vector<std::int64_t> durations_us, std::size_t slots) {
  std::sort(durations_us.begin(), durations_us.end(), std::greater<>());
  const auto finish = list_schedule(durations_us, slots);
  return finish.empty() ? 0 : *std::max_element(finish.begin(), finish.end());
}

std::int64_t makespan_lower_bound(const std::vector<std::int64_t>& durations_us, std::size_t slots) {
  if (durations_us.empty()) return 0;
  if (slots == 0) slots = durations_us.size();
  const std::int64_t total = std::accumulate(durations_us.begin(), durations_us.end(), std::int64_t{0});
  const auto share =
      static_cast<std::int64_t>((total + static_cast<std::int64_t>(slots) - 1) / static_cast<std::int64_t>(slots));
  return std::max(*std::max_element(durations_us.begin(), durations_us.end()), share);
}

nlohmann::json to_json(const std::vector<SchedWorkload>& workloads) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& workload : workloads) {
    list.push_back({{"name", workload.name},
                    {"cap", workload.cap},
                    {"durations_us", workload.durations_us},
                    {"before_us", workload.before_us}});
  }
  return list;
}

}  // namespace fanout_bench
