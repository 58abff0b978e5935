// sched_report.cpp
#include "sched_report.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "report.hpp"
#include "rows.hpp"

namespace fanout_bench {

namespace {

// Timestamps are rounded to µs on the way (ns / 1e6 as doubles): this much slack in the checks.
constexpr double kSlackMs = 0.01;
// Issue 10, point 1: slow tasks finish within this factor of a good list scheduler's makespan.
constexpr double kGoalRatio = 1.25;

std::string timing_key(const SchedWorkload& workload, std::size_t index, const char* what) {
  return workload.name + "." + std::to_string(index) + "." + what;
}

double required(const Row& raw, const std::string& key) {
  const auto value = raw.get(key);
  if (!value) throw WrongResult(raw.system + " reported no " + key + ": a task's result is missing");
  return *value;
}

// The most tasks running at the same time, from their start and end times. An end and a start at
// the same instant do not overlap.
double peak_running(const std::vector<TaskTiming>& tasks) {
  std::vector<std::pair<double, int>> events;
  for (const auto& task : tasks) {
    events.emplace_back(task.start_ms, +1);
    events.emplace_back(task.end_ms, -1);
  }
  std::sort(events.begin(), events.end());  // at equal times -1 sorts before +1
  int running = 0;
  int peak = 0;
  for (const auto& [time, change] : events) peak = std::max(peak, running += change);
  return peak;
}

double us_to_ms(std::int64_t us) { return static_cast<double>(us) / 1000.0; }

// Milliseconds with one decimal and thousands separated: "3,410.9".
std::string format_time(std::optional<double> value) {
  if (!value) return "—";
  const long long tenths = std::llround(*value * 10);
  return with_commas(tenths / 10) + "." + std::to_string(std::abs(tenths % 10));
}

std::string format_count(std::optional<double> value) { return value ? with_commas(std::llround(*value)) : "—"; }

std::string format_ratio(std::optional<double> value) {
  if (!value) return "—";
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f×", *value);
  return text;
}

bool is_fanout_row(const Row& row) { return row.system.rfind("fanout", 0) == 0; }

std::size_t longest_index(const SchedWorkload& workload) {
  const auto& durations = workload.durations_us;
  return static_cast<std::size_t>(std::max_element(durations.begin(), durations.end()) - durations.begin());
}

// The ideal first and last short results of first-result on `slots` slots (0: as wide as the batch).
std::pair<double, double> ideal_first_and_last_short(const SchedWorkload& workload, std::size_t slots) {
  const auto finish = list_schedule(workload.durations_us, slots);
  const std::size_t longest = longest_index(workload);
  double first = us_to_ms(*std::min_element(finish.begin(), finish.end()));
  double last_short = 0;
  for (std::size_t i = 0; i < finish.size(); ++i) {
    if (i != longest) last_short = std::max(last_short, us_to_ms(finish[i]));
  }
  return {first, last_short};
}

std::string slots_of(const Row& row) {
  const auto slots = row.get("slots");
  if (!slots) return "—";
  if (*slots == 0) return "as many as tasks";
  return format_count(*slots) + (row.system.rfind("Python", 0) == 0 ? " processes" : " executors");
}

void print_verdict(const Row& row, const char* what, double value, double goal) {
  std::cout << "- " << row.system << ", " << what << ": " << format_time(value) << " ms, " << format_ratio(value / goal)
            << " of the ideal, " << (value <= goal * kGoalRatio ? "met" : "MISSED") << "\n";
}

void print_capped(const std::vector<Row>& rows, const SchedWorkload& workload) {
  const auto& durations = workload.durations_us;
  const auto in_order = list_schedule(durations, workload.cap);
  const double ideal = us_to_ms(lpt_makespan(durations, workload.cap));
  std::cout << "Ideal: " << format_time(ideal) << " ms (list scheduling longest first on " << workload.cap
            << " slots); list scheduling in batch order: "
            << format_time(us_to_ms(*std::max_element(in_order.begin(), in_order.end())))
            << " ms; lower bound max(longest, sum / " << workload.cap
            << "): " << format_time(us_to_ms(makespan_lower_bound(durations, workload.cap))) << " ms.\n\n";
  std::cout << "| system | makespan (ms) | × ideal | most at once | slowest delivery (ms) |\n";
  std::cout << "| --- | ---: | ---: | ---: | ---: |\n";
  for (const auto& row : rows) {
    const auto makespan = row.get(workload.name + "_makespan_ms");
    if (!makespan) continue;
    std::cout << "| " << row.system << " | " << format_time(makespan) << " | " << format_ratio(*makespan / ideal)
              << " | " << format_count(row.get(workload.name + "_peak")) << " | "
              << format_time(row.get(workload.name + "_lag_ms")) << " |\n";
  }
  std::cout << "\nIssue 10 (makespan within " << format_ratio(kGoalRatio) << " of the ideal; never more than "
            << workload.cap << " at once):\n";
  for (const auto& row : rows) {
    const auto makespan = row.get(workload.name + "_makespan_ms");
    if (!makespan || !is_fanout_row(row)) continue;
    print_verdict(row, "makespan", *makespan, ideal);
    const auto peak = row.get(workload.name + "_peak");
    if (peak && *peak > static_cast<double>(workload.cap)) {
      std::cout << "- " << row.system << ": " << format_count(peak) << " tasks ran at once, over the cap of "
                << workload.cap << ": MISSED\n";
    }
  }
}

void print_first_result(const std::vector<Row>& rows, const SchedWorkload& workload) {
  const std::size_t longest = longest_index(workload);
  const std::string long_title = duration_text(workload.durations_us[longest]);
  const std::string short_title = duration_text(workload.durations_us[longest == 0 ? 1 : 0]);
  std::cout << "When each result reached the caller (the per-result callback; for Python, the iterator), with the "
               "ideal on the system's slots (list scheduling in batch order).\n\n";
  std::cout << "| system | slots with no cap | first result (ms) | ideal | last " << short_title
            << " result (ms) | ideal | the " << long_title
            << " result (ms) | makespan (ms) | most at once | slowest delivery (ms) |\n";
  std::cout << "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& row : rows) {
    const auto makespan = row.get(workload.name + "_makespan_ms");
    if (!makespan) continue;
    std::string ideal_first = "—";
    std::string ideal_last_short = "—";
    if (const auto slots = row.get("slots")) {
      const auto [first, last_short] = ideal_first_and_last_short(workload, static_cast<std::size_t>(*slots));
      ideal_first = format_time(first);
      ideal_last_short = format_time(last_short);
    }
    std::cout << "| " << row.system << " | " << slots_of(row) << " | "
              << format_time(row.get(workload.name + "_first_ms")) << " | " << ideal_first << " | "
              << format_time(row.get(workload.name + "_last_short_ms")) << " | " << ideal_last_short << " | "
              << format_time(row.get(workload.name + "_long_ms")) << " | " << format_time(makespan) << " | "
              << format_count(row.get(workload.name + "_peak")) << " | "
              << format_time(row.get(workload.name + "_lag_ms")) << " |\n";
  }
  std::cout << "\nIssue 10 (with no cap the fork driver and local mode start every task of a small batch at once; "
               "the last short result within "
            << format_ratio(kGoalRatio) << " of the ideal on the row's slots):\n";
  for (const auto& row : rows) {
    const auto last_short = row.get(workload.name + "_last_short_ms");
    const auto slots = row.get("slots");
    if (!last_short || !slots || !is_fanout_row(row)) continue;
    print_verdict(row, "last short result", *last_short,
                  ideal_first_and_last_short(workload, static_cast<std::size_t>(*slots)).second);
  }
}

}  // namespace

void record_timings(Row& raw, const SchedWorkload& workload, const std::vector<TaskTiming>& tasks, double makespan_ms) {
  raw.figures[workload.name + ".makespan_ms"] = makespan_ms;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    raw.figures[timing_key(workload, i, "start_ms")] = tasks[i].start_ms;
    raw.figures[timing_key(workload, i, "end_ms")] = tasks[i].end_ms;
    raw.figures[timing_key(workload, i, "reached_ms")] = tasks[i].reached_ms;
  }
}

Row sched_figures(const Row& raw, const std::vector<SchedWorkload>& workloads) {
  Row row{raw.system, {}};
  if (const auto slots = raw.get("slots")) row.figures["slots"] = *slots;
  for (const auto& workload : workloads) {
    const auto makespan = raw.get(workload.name + ".makespan_ms");
    if (!makespan) continue;  // not measured in this run
    std::vector<TaskTiming> tasks;
    double lag = 0;
    for (std::size_t i = 0; i < workload.durations_us.size(); ++i) {
      const TaskTiming task{required(raw, timing_key(workload, i, "start_ms")),
                            required(raw, timing_key(workload, i, "end_ms")),
                            required(raw, timing_key(workload, i, "reached_ms"))};
      const std::string which = raw.system + ", " + workload.name + " task " + std::to_string(i);
      if (task.end_ms - task.start_ms + kSlackMs < us_to_ms(workload.durations_us[i])) {
        throw WrongResult(which + " slept " + format_time(task.end_ms - task.start_ms) + " ms, less than its " +
                          duration_text(workload.durations_us[i]));
      }
      if (task.reached_ms + kSlackMs < task.end_ms || *makespan + kSlackMs < task.reached_ms) {
        throw WrongResult(which + ": its result reached the caller at " + format_time(task.reached_ms) +
                          " ms, outside the task's end and the batch's (" + format_time(task.end_ms) + ", " +
                          format_time(*makespan) + " ms)");
      }
      lag = std::max(lag, task.reached_ms - task.end_ms);
      tasks.push_back(task);
    }
    row.figures[workload.name + "_makespan_ms"] = *makespan;
    row.figures[workload.name + "_peak"] = peak_running(tasks);
    row.figures[workload.name + "_lag_ms"] = lag;
    if (workload.cap == 0) {
      const std::size_t longest = longest_index(workload);
      double first = *makespan;
      double last_short = 0;
      for (std::size_t i = 0; i < tasks.size(); ++i) {
        first = std::min(first, tasks[i].reached_ms);
        if (i != longest) last_short = std::max(last_short, tasks[i].reached_ms);
      }
      row.figures[workload.name + "_first_ms"] = first;
      row.figures[workload.name + "_last_short_ms"] = last_short;
      row.figures[workload.name + "_long_ms"] = tasks[longest].reached_ms;
    }
  }
  return row;
}

void print_sched_report(const std::vector<Row>& rows, const std::vector<SchedWorkload>& workloads,
                        const SchedRunInfo& info) {
  std::cout << "W7 scheduling: tasks that sleep, `" << info.command << "`"
            << (info.quick ? " (quick: durations ÷ 10)" : "") << ". Every figure is the median of " << info.repeat
            << " run(s) (most at once: the largest); " << available_cores() << " CPUs; load average "
            << info.load_average
            << " when the run began. Makespan: from before run() to its return. Most at once: tasks whose "
               "sleeps overlapped, from their own clocks. Slowest delivery: the longest a result took from the "
               "end of its task to the caller.\n";
  for (const auto& workload : workloads) {
    const bool measured = std::any_of(
        rows.begin(), rows.end(), [&](const Row& row) { return row.get(workload.name + "_makespan_ms").has_value(); });
    if (!measured) continue;
    std::cout << "\n### " << workload.title << "\n\n";
    if (workload.cap == 0) {
      print_first_result(rows, workload);
    } else {
      print_capped(rows, workload);
    }
  }
}

}  // namespace fanout_bench
