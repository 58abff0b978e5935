// sched_report.hpp: fanout-bench-sched's figures and tables.
//
// A row (a fanout row child, or a Python peer in bench/peers.py --sched) reports raw timings only:
// per workload, when the batch returned, and per task when it started, when it ended (both taken
// inside the task) and when its result reached the caller (the per-result callback, or the peer's
// iterator), all in ms from the moment before the batch was submitted. Every timestamp is of
// CLOCK_MONOTONIC, one clock for every process of the machine. The figures are computed from them
// here, once, the same way for every row, and the raw timings are checked on the way: a task
// missing or shorter than its sleep is a wrong result.
//
// Raw keys: "<workload>.makespan_ms", "<workload>.<index>.start_ms" / ".end_ms" / ".reached_ms", and
// "slots": how many tasks the system can run at once when the batch sets no cap (0: as many as the
// batch has, the fork driver's and local mode's rule).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "sched_workloads.hpp"

namespace fanout_bench {

// One task as the caller saw it, in ms from before the batch was submitted.
struct TaskTiming {
  double start_ms = 0;    // the task began (inside the task)
  double end_ms = 0;      // the task's sleep was over (inside the task)
  double reached_ms = 0;  // its result reached the caller
};

// Adds one workload's raw timings (by task index) to `raw`.
void record_timings(Row& raw, const SchedWorkload& workload, const std::vector<TaskTiming>& tasks, double makespan_ms);

// The figures of one run of one system, keyed "<workload>_<figure>": makespan_ms, peak (most tasks
// running at once), lag_ms (the longest a finished task's result took to reach the caller), and for
// first-result also first_ms, last_short_ms and long_ms (when those results reached the caller).
// Throws WrongResult (rows.hpp) when a task is missing or ended before its duration was over.
Row sched_figures(const Row& raw, const std::vector<SchedWorkload>& workloads);

struct SchedRunInfo {
  std::string command;       // how the run was started, for the header
  std::string load_average;  // when the run began
  int repeat = 1;
  bool quick = false;
};

// A markdown table per workload, with the ideal schedules and the verdicts of issue 10, on stdout.
void print_sched_report(const std::vector<Row>& rows, const std::vector<SchedWorkload>& workloads,
                        const SchedRunInfo& info);

}  // namespace fanout_bench
