// sched_workloads.hpp: the workloads of fanout-bench-sched (W7 of /work/shared/anchors.md) and the
// schedules its figures are compared with. Pure computation: no processes, no clocks.
//
// Every task sleeps for its duration; a workload is the durations in batch order and the cap the
// batch runs with. The ideal schedules assume tasks that cost nothing but their sleep.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fanout_bench {

struct SchedWorkload {
  std::string name;                        // "equal", "uneven", "heavy-tailed", "first-result": keys and --workloads
  std::string title;                       // what the report calls it
  std::vector<std::int64_t> durations_us;  // one task per entry, in batch order
  std::size_t cap = 2;                     // max_concurrency(cap); 0: no cap
  // A batch of the same task run right before, untimed, at the same cap: what a scheduler that
  // learns durations by task name has seen of it. Empty for most workloads.
  std::vector<std::int64_t> before_us;
};

inline const std::vector<std::string> kSchedWorkloadNames{"equal", "uneven", "heavy-tailed", "first-result",
                                                          "equal-after-fast"};

// The four workloads with every duration multiplied by `scale` (1 for the full run, 0.1 for
// --quick), in the order of kSchedWorkloadNames:
//   equal         6 tasks of 300 ms, cap 2 (ideal 900 ms)
//   uneven        one task of 900 ms, then nine of 100 ms, cap 2 (ideal 900 ms)
//   heavy-tailed  40 log-normal durations (median 50 ms, sigma 1.4, seed 1: the same on every
//                 machine and standard library; the longest 1,123 ms, 6.6 s in all), cap 2
//   first-result  one task of 1 s, then three of 100 ms, no cap
//   equal-after-fast  equal again, right after an untimed batch of 50 tasks of 1 ms of the same
//                 task: a task whose duration depends on its arguments (the process driver's
//                 broker sizes prefetch from how long tasks of a name took)
// A row runs them one after the other in this order, in one process, as a program's batches come.
std::vector<SchedWorkload> sched_workloads(double scale);

// "900 ms", "1 s", "12.5 ms".
std::string duration_text(std::int64_t us);

// Greedy list scheduling on `slots` slots: tasks in batch order, each started the moment a slot is
// free, no prefetch and no overhead (what anchors.md calls the reference). Each task's finish time
// in µs from the start, by index. `slots` 0 means as many slots as tasks.
std::vector<std::int64_t> list_schedule(const std::vector<std::int64_t>& durations_us, std::size_t slots);

// The makespan of list scheduling longest task first (LPT), within 4/3 of the optimum on any input
// and optimal on these workloads' equal and uneven ones.
std::int64_t lpt_makespan(std::vector<std::int64_t> durations_us, std::size_t slots);

// No schedule on `slots` slots can end before max(longest task, total / slots).
std::int64_t makespan_lower_bound(const std::vector<std::int64_t>& durations_us, std::size_t slots);

// The workloads as bench/peers.py --sched reads them:
// [{"name": ..., "cap": 2, "durations_us": [...], "before_us": [...]}, ...]; cap 0 means no cap.
nlohmann::json to_json(const std::vector<SchedWorkload>& workloads);

}  // namespace fanout_bench
