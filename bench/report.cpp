// report.cpp: the table fanout-bench prints, and its verdicts against the goals.
#include "report.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>

namespace fanout_bench {

namespace {

std::string format_memory(const Row& row, const std::string& prefix) {
  const auto before = row.get(prefix + "rss_before_mib");
  const auto peak = row.get(prefix + "rss_peak_mib");
  if (!before || !peak) return "—";
  return format_figure(before) + " → " + format_figure(peak);
}

const Row* find_row(const std::vector<Row>& rows, std::string_view name) {
  const auto found = std::find_if(rows.begin(), rows.end(), [&](const Row& row) { return row.system == row_title(name); });
  return found == rows.end() ? nullptr : &*found;
}

// "231 µs, MISSED" against an upper (`at_most`) or lower bound.
std::string verdict(std::optional<double> value, double goal, bool at_most, const std::string& unit,
                    std::string (*format)(std::optional<double>)) {
  if (!value) return "not measured";
  const bool met = at_most ? *value <= goal : *value >= goal;
  return format(value) + " " + unit + ", " + (met ? "met" : "MISSED");
}

void print_goal(const char* what, std::optional<double> value, double goal, bool at_most, const std::string& unit,
                std::string (*format)(std::optional<double>)) {
  std::cout << "- " << what << ' ' << (at_most ? "<= " : ">= ") << format(goal) << ' ' << unit << ": "
            << verdict(value, goal, at_most, unit, format) << "\n";
}

}  // namespace

std::string format_figure(std::optional<double> value) {
  if (!value) return "—";
  if (*value < 10) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.1f", *value);
    return text;
  }
  return with_commas(std::llround(*value));
}

std::string format_rate(std::optional<double> value) {
  if (!value) return "—";
  if (*value < 1000) return format_figure(value);
  const double magnitude = std::pow(10.0, std::floor(std::log10(*value)) - 2);
  return with_commas(std::llround(std::round(*value / magnitude) * magnitude));
}

std::string format_ms(std::optional<double> value) {
  if (!value) return "—";
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f", *value);
  return text;
}

// The 1-minute load average: figures taken while other work runs on the machine are slower.
std::string load_average() {
  std::ifstream file("/proc/loadavg");
  std::string first;
  file >> first;
  return first.empty() ? "unknown" : first;
}

void print_report(const std::vector<Row>& rows, const Settings& settings, const std::string& load_average) {
  std::cout << "W1: " << settings.w1_batches << " batches of 3 trivial tasks after " << settings.w1_warmup
            << " warm-up. W2: " << with_commas(settings.w2_small) << " and " << with_commas(settings.w2_large)
            << " trivial tasks in one batch. W3: " << settings.w3_tasks << " tasks with a "
            << with_commas(settings.w3_bytes) << "-byte argument. W4: median of " << settings.w4_trials
            << " cold starts. W6: " << with_commas(settings.w6_tasks)
            << " trivial tasks, 2 at a time. Every figure is the median of " << settings.repeat << " run(s); "
            << available_cores() << " CPUs; load average " << load_average << " when the run began.\n\n";
  std::cout << "| system | W1 p50 (µs) | W1 p99 (µs) | W2 " << with_commas(settings.w2_small) << " (tasks/s) | W2 "
            << with_commas(settings.w2_large)
            << " (tasks/s) | W3 (MB/s) | W4 (ms) | W4 in main (ms) | W6 (µs/task) | RSS client, W2 "
            << with_commas(settings.w2_large) << " (MiB) | RSS broker (MiB) |\n";
  std::cout << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& row : rows) {
    std::cout << "| " << row.system << " | " << format_figure(row.get("w1_p50_us")) << " | "
              << format_figure(row.get("w1_p99_us")) << " | " << format_rate(row.get("w2_small_tps")) << " | "
              << format_rate(row.get("w2_large_tps")) << " | " << format_figure(row.get("w3_mbps")) << " | "
              << format_ms(row.get("w4_ms")) << " | " << format_ms(row.get("w4_inside_ms")) << " | "
              << format_figure(row.get("w6_us_per_task")) << " | " << format_memory(row, "") << " | "
              << format_memory(row, "broker_") << " |\n";
  }

  std::cout << "\nW2 " << with_commas(settings.w2_small)
            << " times building the calls and run(calls); W2 " << with_commas(settings.w2_large)
            << " and W3 time run(calls), building the calls (encoding the arguments) comes before the clock";
  for (const char* name : {"sync", "process-local"}) {
    const Row* row = find_row(rows, name);
    if (row == nullptr || !(row->get("w2_build_ns_per_call") || row->get("w3_build_ms"))) continue;
    std::cout << " and costs";
    if (row->get("w2_build_ns_per_call")) {
      std::cout << " " << format_figure(row->get("w2_build_ns_per_call")) << " ns per W2 call";
    }
    if (row->get("w3_build_ms")) {
      std::cout << (row->get("w2_build_ns_per_call") ? " and " : " ") << format_ms(row->get("w3_build_ms"))
                << " ms for the W3 calls";
    }
    std::cout << " (" << name << " row)";
    break;
  }
  std::cout << ". W4 is from before spawning a fresh process of the program to the line with its first "
               "result; \"in main\" is the same child's own measure from the start of main(). For "
               "process-remote, W4 is a fresh client against a broker and worker already running; for "
               "Python, it is pool start to first result in a running interpreter. RSS: the process's "
               "resident set just before the "
            << with_commas(settings.w2_large)
            << "-task run() (the calls already built) → its peak during it (VmHWM, reset right before); in "
               "local mode the broker lives in the client process.";
  if (const Row* fork = find_row(rows, "fork"); fork != nullptr && fork->get("w2_small_tps")) {
    std::cout << " The fork driver's W2 " << with_commas(settings.w2_large) << " is not run: a fork per task, about "
              << format_figure(settings.w2_large / *fork->get("w2_small_tps") / 60.0) << " min at its W2 rate.";
  }
  for (const auto& row : rows) {
    if (row.get("rss_peak_is_lifetime")) std::cout << " (" << row.system << ": RSS peak since process start.)";
  }
  std::cout << "\n";

  const Row* local = find_row(rows, "process-local");
  const Row* remote = find_row(rows, "process-remote");
  const auto figure = [](const Row* row, const char* key) { return row != nullptr ? row->get(key) : std::nullopt; };
  if (local != nullptr || remote != nullptr) {
    std::cout << "\nProcess driver goals (issue 3; W2 on the " << with_commas(settings.w2_small) << "-task batch):\n";
    if (local != nullptr) {
      print_goal("local W1 p50", figure(local, "w1_p50_us"), kLocalW1GoalUs, true, "µs", format_figure);
      print_goal("local W2", figure(local, "w2_small_tps"), kLocalW2Goal, false, "tasks/s", format_rate);
      print_goal("local W3", figure(local, "w3_mbps"), kLocalW3GoalMBps, false, "MB/s", format_figure);
      print_goal("local W4 (spawn → result)", figure(local, "w4_ms"), kLocalW4GoalMs, true, "ms", format_ms);
    }
    if (remote != nullptr) {
      print_goal("remote W1 p50", figure(remote, "w1_p50_us"), kRemoteW1GoalUs, true, "µs", format_figure);
      print_goal("remote W2", figure(remote, "w2_small_tps"), kRemoteW2Goal, false, "tasks/s", format_rate);
    }
  }
  const auto pool = std::find_if(rows.begin(), rows.end(),
                                 [](const Row& row) { return row.system == "Python multiprocessing.Pool(2)"; });
  if (pool != rows.end() && (local != nullptr || remote != nullptr)) {
    // Ratios, so that a busy machine slows both sides of each comparison alike.
    const auto ratio = [](std::optional<double> ours, std::optional<double> theirs) -> std::optional<double> {
      if (!ours || !theirs || *theirs <= 0) return std::nullopt;
      return *ours / *theirs;
    };
    const auto times = [](std::optional<double> value) {
      if (!value) return std::string("—");
      char text[32];
      std::snprintf(text, sizeof(text), "%.2f×", *value);
      return std::string(text);
    };
    std::cout << "\nTiny tasks against multiprocessing.Pool(2) in this run (issue 10, point 7):\n";
    const auto print_ratio = [&](const char* what, std::optional<double> value, double goal, bool at_most) {
      std::cout << "- " << what << ' ' << (at_most ? "<= " : ">= ") << times(goal) << ": ";
      if (!value) {
        std::cout << "not measured\n";
      } else {
        const bool met = at_most ? *value <= goal : *value >= goal;
        std::cout << times(value) << ", " << (met ? "met" : "MISSED") << "\n";
      }
    };
    if (local != nullptr) {
      print_ratio("local W2 / Pool W2", ratio(local->get("w2_small_tps"), pool->get("w2_small_tps")), kLocalW2VsPool, false);
      print_ratio("local W1 p50 / Pool W1 p50", ratio(local->get("w1_p50_us"), pool->get("w1_p50_us")), kLocalW1VsPool, true);
    }
    if (remote != nullptr) {
      print_ratio("remote W2 / Pool W2", ratio(remote->get("w2_small_tps"), pool->get("w2_small_tps")), kRemoteW2VsPool,
                  false);
    }
  }
  if (const Row* fork = find_row(rows, "fork"); fork != nullptr) {
    std::cout << "\nFork driver goals (issue 2; spatie/fork: " << format_figure(kSpatieForkW1Us) << " µs and "
              << format_figure(kSpatieForkW6Us) << " µs):\n";
    print_goal("W1 p50", fork->get("w1_p50_us"), kForkW1GoalUs, true, "µs", format_figure);
    print_goal("W6", fork->get("w6_us_per_task"), kForkW6GoalUs, true, "µs/task", format_figure);
  }
}

}  // namespace fanout_bench
