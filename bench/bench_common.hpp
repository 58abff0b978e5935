// bench_common.hpp: what fanout-bench's parts share: its settings, a row of figures, the goals it
// prints verdicts against, and the statistics and formatting of figures.
#pragma once

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "child.hpp"

namespace fanout_bench {

// Goals. Issue 2 (fork driver) and issue 3 (process driver); spatie/fork is Laravel's fork driver.
constexpr double kForkW1GoalUs = 400;
constexpr double kForkW6GoalUs = 200;
constexpr double kSpatieForkW1Us = 2210;
constexpr double kSpatieForkW6Us = 1007;
constexpr double kLocalW1GoalUs = 150;
constexpr double kLocalW2Goal = 4'000'000;
constexpr double kLocalW3GoalMBps = 1000;
constexpr double kLocalW4GoalMs = 15;
constexpr double kRemoteW1GoalUs = 300;
constexpr double kRemoteW2Goal = 2'000'000;
// Issue 10, point 7: against Python's multiprocessing.Pool(2) measured in the same run.
constexpr double kLocalW2VsPool = 1.0;   // W2 small, calls built in the timed region: at least
constexpr double kRemoteW2VsPool = 0.6;  // the same over tcp loopback: at least
constexpr double kLocalW1VsPool = 0.5;   // W1 p50 against Pool's apply_async x3: at most

const std::vector<std::string> kRowNames{"sync", "fork", "process-local", "process-remote"};

struct Settings {
  int w1_warmup = 30;
  int w1_batches = 300;
  int w2_small = 10'000;
  int w2_small_runs = 5;  // the figure is their median (fork: one run, 10,000 forks are slow)
  int w2_large = 1'000'000;
  int w3_tasks = 100;
  int w3_bytes = 1 << 20;
  int w4_trials = 5;
  int w6_tasks = 2000;
  int repeat = 3;
  bool peers = false;
  bool quick = false;
  std::vector<std::string> workloads{"w1", "w2", "w3", "w4", "w6"};  // --workloads: what is measured

  bool runs(std::string_view workload) const {
    return std::find(workloads.begin(), workloads.end(), workload) != workloads.end();
  }

  void make_quick() {
    quick = true;
    w1_warmup = 5;
    w1_batches = 30;
    w2_small = 1000;
    w2_small_runs = 2;
    w2_large = 20'000;
    w3_tasks = 10;
    w4_trials = 1;
    w6_tasks = 100;
  }
};

// One system's figures by name (see kColumns and the keys below); a workload a system does not
// have is absent. The same keys travel as JSON from row children and from peers.py.
struct Row {
  std::string system;
  std::map<std::string, double> figures;

  std::optional<double> get(const std::string& key) const {
    const auto found = figures.find(key);
    if (found == figures.end()) return std::nullopt;
    return found->second;
  }
};

inline double micros_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

inline double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Nearest-rank percentile, the same definition peers.py uses.
inline double percentile(std::vector<double> samples, double fraction) {
  std::sort(samples.begin(), samples.end());
  const auto rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(samples.size())));
  return samples[std::clamp<std::size_t>(rank, 1, samples.size()) - 1];
}

inline double median(std::vector<double> values) { return percentile(std::move(values), 0.5); }

inline std::string with_commas(long long value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  for (std::size_t at = digits.size(); at > 3; at -= 3) digits.insert(at - 3, ",");
  return (value < 0 ? "-" : "") + digits;
}

inline std::string row_title(std::string_view row) {
  if (row == "process-local") return "fanout process driver, local mode";
  if (row == "process-remote") return "fanout process driver, remote (tcp loopback)";
  return "fanout " + std::string(row) + " driver";
}

inline unsigned available_cores() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
  return std::max(1U, std::thread::hardware_concurrency());
}

}  // namespace fanout_bench
