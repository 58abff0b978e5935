// fanout-bench: the project's benchmark. One table, one row per way of running a batch (sync, fork,
// process driver in local mode, process driver in remote mode over tcp loopback), optionally next
// to Python peers measured in the same run (bench/peers.py). Workloads, columns and goals are
// described in bench/README.md; the reference figures are in /work/shared/anchors.md.
//
//   fanout-bench                        # full run, median of 3
//   fanout-bench --peers                # plus the Python peers
//   fanout-bench --quick                # a few iterations, for smoke tests
//   fanout-bench --rows process-local   # only some rows (e.g. under perf)
//
// Every row is measured in a child process of its own (this program re-run with --measure-row),
// so that its peak RSS is its own and the process driver's mode, chosen once per process, is the
// row's. For process-remote the benchmark also starts a fanout-broker on tcp://127.0.0.1:* and a
// worker (this program again, with FANOUT_WORKER set), and stops both afterwards.
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fanout/fanout.hpp>

#include "bench_common.hpp"
#include "child.hpp"
#include "perf_window.hpp"
#include "report.hpp"
#include "rows.hpp"

namespace {

using namespace fanout_bench;  // NOLINT: the benchmark's own helpers

// At namespace scope so that they are registered in every process that may run them (local
// workers and the remote worker are this program), as a real program's tasks are.
const fanout::Task twice{"bench.twice", [](int i) { return i * 2; }};
const fanout::Task payload_size{"bench.size",
                                [](const fanout::Bytes& data) { return static_cast<std::uint64_t>(data.size()); }};

// The remote worker runs this many executors (fanout-worker --processes 2).
constexpr int kRemoteProcesses = 2;
// What the cold-start child computes: twice(21).
constexpr int kColdStartArgument = 21;

// ---- measurements inside a row's own process ------------------------------------------------------

std::vector<fanout::Call<int>> twice_calls(int count) {
  std::vector<fanout::Call<int>> calls;
  calls.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) calls.push_back(twice(i));
  return calls;
}

void check_twice(const std::vector<int>& results, int count, const std::string& what) {
  if (results.size() != static_cast<std::size_t>(count)) {
    throw WrongResult(what + ": " + std::to_string(results.size()) + " results for " + std::to_string(count) + " tasks");
  }
  for (int i = 0; i < count; ++i) {
    if (results[static_cast<std::size_t>(i)] != i * 2) {
      throw WrongResult(what + ": slot " + std::to_string(i) + " holds " +
                        std::to_string(results[static_cast<std::size_t>(i)]) + ", expected " + std::to_string(i * 2));
    }
  }
}

// W1: a batch of three trivial tasks, results in order. Building the calls is inside the timed
// region because a caller pays for it on every batch.
void measure_w1(const fanout::Driver& driver, const Settings& settings, Row& row) {
  const auto one_batch = [&] {
    const auto [a, b, c] = driver.run(twice(0), twice(1), twice(2));
    if (a != 0 || b != 2 || c != 4) {
      throw WrongResult("W1 on " + row.system + ": got (" + std::to_string(a) + ", " + std::to_string(b) + ", " +
                        std::to_string(c) + "), expected (0, 2, 4)");
    }
  };
  for (int i = 0; i < settings.w1_warmup; ++i) one_batch();

  std::vector<double> batch_us;
  batch_us.reserve(static_cast<std::size_t>(settings.w1_batches));
  const fanout_bench::PerfWindow profiled;
  for (int i = 0; i < settings.w1_batches; ++i) {
    const auto start = Clock::now();
    one_batch();
    batch_us.push_back(micros_since(start));
  }
  row.figures["w1_p50_us"] = percentile(batch_us, 0.50);
  row.figures["w1_p99_us"] = percentile(batch_us, 0.99);
}

// W2, small batch: tasks/s of building the calls and run(calls), as a caller pays for both on
// every batch (issue 10; the cost of building alone is reported apart, from the large batch). The
// median of a few runs: one batch is a few ms.
void measure_w2_small(const fanout::Driver& driver, const Settings& settings, int runs, Row& row) {
  std::vector<double> rates;
  for (int run = 0; run < runs; ++run) {
    std::optional<fanout_bench::PerfWindow> profiled(std::in_place);
    const auto start = Clock::now();
    const std::vector<int> results = driver.run(twice_calls(settings.w2_small));
    const double seconds = seconds_since(start);
    profiled.reset();
    check_twice(results, settings.w2_small, "W2 on " + row.system);
    rates.push_back(settings.w2_small / seconds);
  }
  row.figures["w2_small_tps"] = median(std::move(rates));
}

// W2, large batch, with the memory it takes: RSS of this process (and of the broker, when it is
// another process) just before run() and its peak during run(). The peaks are reset right before,
// so they are the batch's own, not those of earlier workloads.
void measure_w2_large(const fanout::Driver& driver, const Settings& settings, pid_t broker_pid, Row& row) {
  const auto build_start = Clock::now();
  auto calls = twice_calls(settings.w2_large);
  row.figures["w2_build_ns_per_call"] = micros_since(build_start) * 1000.0 / settings.w2_large;

  const bool reset = fanout_bench::reset_peak(0) && (broker_pid == 0 || fanout_bench::reset_peak(broker_pid));
  const auto before = fanout_bench::memory_of(0);
  const auto broker_before = broker_pid != 0 ? fanout_bench::memory_of(broker_pid) : fanout_bench::Memory{};

  std::optional<fanout_bench::PerfWindow> profiled(std::in_place);
  const auto start = Clock::now();
  const std::vector<int> results = driver.run(calls);
  const double seconds = seconds_since(start);
  profiled.reset();

  const auto after = fanout_bench::memory_of(0);
  const auto broker_after = broker_pid != 0 ? fanout_bench::memory_of(broker_pid) : fanout_bench::Memory{};
  check_twice(results, settings.w2_large, "W2 (large batch) on " + row.system);
  row.figures["w2_large_tps"] = settings.w2_large / seconds;
  row.figures["rss_before_mib"] = before.rss_mib;
  row.figures["rss_peak_mib"] = after.peak_mib;
  if (broker_pid != 0) {
    row.figures["broker_rss_before_mib"] = broker_before.rss_mib;
    row.figures["broker_rss_peak_mib"] = broker_after.peak_mib;
  }
  if (!reset) row.figures["rss_peak_is_lifetime"] = 1;  // clear_refs refused: the peak is since start
}

// W3: tasks with a large bytes argument, each returning its size; MB/s of run(calls) (10^6 bytes).
void measure_w3(const fanout::Driver& driver, const Settings& settings, Row& row) {
  const auto bytes = static_cast<std::size_t>(settings.w3_bytes);
  const fanout::Bytes payload(bytes, std::byte{0x5a});
  const auto build = [&](int count) {
    std::vector<fanout::Call<std::uint64_t>> calls;
    calls.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) calls.push_back(payload_size(payload));
    return calls;
  };
  const auto check = [&](const std::vector<std::uint64_t>& sizes, int count) {
    if (sizes.size() != static_cast<std::size_t>(count) ||
        std::any_of(sizes.begin(), sizes.end(), [&](std::uint64_t size) { return size != bytes; })) {
      throw WrongResult("W3 on " + row.system + ": a task saw the wrong payload size");
    }
  };
  // A small batch first, so that allocators and sockets have seen payloads of this size.
  const int warmup = std::min(settings.w3_tasks, 4);
  check(driver.run(build(warmup)), warmup);

  const auto build_start = Clock::now();
  const auto calls = build(settings.w3_tasks);
  row.figures["w3_build_ms"] = micros_since(build_start) / 1000.0;
  std::optional<fanout_bench::PerfWindow> profiled(std::in_place);
  const auto start = Clock::now();
  const auto sizes = driver.run(calls);
  const double seconds = seconds_since(start);
  profiled.reset();
  check(sizes, settings.w3_tasks);
  row.figures["w3_mbps"] = static_cast<double>(bytes) * settings.w3_tasks / 1e6 / seconds;
}

// W6: many trivial tasks, two at a time; wall time per task. The calls are built before the clock
// starts: the figure is the driver's cost per task, not the cost of encoding an int.
void measure_w6(const fanout::Driver& driver, const Settings& settings, Row& row) {
  const auto calls = twice_calls(settings.w6_tasks);
  std::optional<fanout_bench::PerfWindow> profiled(std::in_place);
  const auto start = Clock::now();
  const std::vector<int> results = driver.max_concurrency(2).run(calls);
  const double elapsed_us = micros_since(start);
  profiled.reset();
  check_twice(results, settings.w6_tasks, "W6 on " + row.system);
  row.figures["w6_us_per_task"] = elapsed_us / settings.w6_tasks;
}

// Everything but W4 (measured by the parent, from outside) for one row, in this process.
Row measure_row_here(const std::string& name, const Settings& settings, pid_t broker_pid) {
  Row row{row_title(name), {}};
  const fanout::Driver driver = driver_for(name);
  if (is_process_row(name)) {
    wait_for_executors(driver, name == "process-remote" ? kRemoteProcesses : available_cores(), name);
  }
  if (settings.runs("w1")) measure_w1(driver, settings, row);
  if (settings.runs("w2")) measure_w2_small(driver, settings, name == "fork" ? 1 : settings.w2_small_runs, row);
  // Before the workloads that leave this process big (the allocator keeps some of the 1,000,000
  // calls and of the 100 MiB of W3 arguments): a fork copies the page tables of its parent.
  if (settings.runs("w6") && !is_process_row(name)) measure_w6(driver, settings, row);
  // A fork per task: 1,000,000 of them would take minutes (the report says so).
  if (settings.runs("w2") && name != "fork") measure_w2_large(driver, settings, broker_pid, row);
  if (settings.runs("w3")) measure_w3(driver, settings, row);
  return row;
}

// The cold-start child: one task, then a line with its result and the time since main() began.
int run_cold_start(const std::string& name, Clock::time_point main_started) {
  const auto [value] = driver_for(name).run(twice(kColdStartArgument));
  std::printf("cold-start %d %.1f\n", value, micros_since(main_started));
  std::fflush(stdout);
  return 0;
}

// ---- the parent: children per row, the broker and worker for remote mode, W4 -------------------

// What a row child needs to know of the settings: --quick (the counts) and --workloads.
std::vector<std::string> child_arguments(const Settings& settings) {
  std::vector<std::string> arguments;
  if (settings.quick) arguments.emplace_back("--quick");
  std::string workloads;
  for (const auto& workload : settings.workloads) workloads += (workloads.empty() ? "" : ",") + workload;
  arguments.insert(arguments.end(), {"--workloads", workloads});
  return arguments;
}

Row measure_in_child(const std::string& name, const Settings& settings, const std::vector<std::string>& environment,
                     pid_t broker_pid) {
  std::vector<std::string> arguments{"--measure-row", name};
  for (auto& argument : child_arguments(settings)) arguments.push_back(std::move(argument));
  if (broker_pid != 0) arguments.insert(arguments.end(), {"--broker-pid", std::to_string(broker_pid)});
  return fanout_bench::measure_in_child(arguments, environment, std::chrono::minutes(settings.quick ? 1 : 10), name);
}

// W4: from before the spawn of a fresh process of this program to the line with its first result
// (pool start included), and the same as measured inside that process from the start of main().
void measure_w4(const std::string& name, const Settings& settings, const std::vector<std::string>& environment,
                Row& row) {
  const std::string self = fanout_bench::self_path();
  std::vector<double> outside_ms;
  std::vector<double> inside_ms;
  for (int trial = 0; trial < settings.w4_trials; ++trial) {
    std::fflush(nullptr);
    const auto start = Clock::now();
    Child child(Spawn{self, {"--cold-start", name}, environment, Spawn::Output::pipe});
    const std::string line = child.read_line(start + std::chrono::seconds(30), "the cold-start result of " + name);
    outside_ms.push_back(micros_since(start) / 1000.0);

    int value = 0;
    double inside_us = 0;
    std::istringstream fields(line);
    std::string tag;
    if (!(fields >> tag >> value >> inside_us) || tag != "cold-start") {
      throw std::runtime_error("unexpected line from the cold-start child of " + name + ": " + line);
    }
    if (value != kColdStartArgument * 2) {
      throw WrongResult("W4 on " + row.system + ": got " + std::to_string(value) + ", expected " +
                        std::to_string(kColdStartArgument * 2));
    }
    inside_ms.push_back(inside_us / 1000.0);
    check_exit(child.wait(std::chrono::seconds(10)), "the cold-start child of " + name);
  }
  row.figures["w4_ms"] = median(std::move(outside_ms));
  row.figures["w4_inside_ms"] = median(std::move(inside_ms));
}

// process-remote: a fanout-broker on an OS-chosen loopback port and one worker with two executors
// (RemoteCluster), the row measured in a child with FANOUT_BROKER set, and W4 against the same
// broker. The cluster's processes are killed and reaped on every way out of this function.
Row measure_remote(const Settings& settings) {
  RemoteCluster cluster(kRemoteProcesses);
  const std::vector<std::string> client_environment{"FANOUT_BROKER=" + cluster.endpoint()};
  Row row = measure_in_child("process-remote", settings, client_environment, cluster.broker_pid());
  // A fresh client against a broker whose workers are up: what a program using remote mode pays.
  if (settings.runs("w4")) measure_w4("process-remote", settings, client_environment, row);
  cluster.stop();
  return row;
}

Row measure_row(const std::string& name, const Settings& settings) {
  Row row;
  if (name == "process-remote") {
    row = measure_remote(settings);
  } else {
    row = measure_in_child(name, settings, {}, 0);
    if (settings.runs("w4")) measure_w4(name, settings, {}, row);
  }
  // Processes the row's processes left behind (this process is their subreaper) must be gone
  // within a second: anything still alive then is a leak worth knowing about.
  for (const pid_t pid : fanout_bench::reap_leftovers(std::chrono::seconds(1))) {
    std::cerr << "fanout-bench: " << name << " left process " << pid << " behind; killed it\n";
  }
  return row;
}

// Runs peers.py with the same counts as ours; it prints one JSON object per system.
std::vector<Row> measure_peers(const Settings& settings) {
  return fanout_bench::measure_peers(
      {"--warmup", std::to_string(settings.w1_warmup), "--batches", std::to_string(settings.w1_batches), "--tasks",
       std::to_string(settings.w6_tasks), "--w2-tasks", std::to_string(settings.w2_small), "--w2-runs",
       std::to_string(settings.w2_small_runs), "--w2-large", std::to_string(settings.w2_large), "--w3-tasks",
       std::to_string(settings.w3_tasks), "--w3-bytes", std::to_string(settings.w3_bytes), "--w4-trials",
       std::to_string(settings.w4_trials)});
}

std::vector<std::string> split_rows(const std::string& list) {
  std::vector<std::string> rows;
  std::string current;
  std::istringstream parts(list);
  while (std::getline(parts, current, ',')) {
    if (current.empty()) continue;
    if (std::find(kRowNames.begin(), kRowNames.end(), current) == kRowNames.end()) {
      throw CLI::ValidationError("--rows", "unknown row '" + current + "' (sync, fork, process-local, process-remote)");
    }
    rows.push_back(current);
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  // First: a local worker of the process driver is this program re-executed, and a remote worker
  // of the benchmark is this program with FANOUT_WORKER set; init() serves tasks there, never returns.
  fanout::init(argc, argv);
  const auto main_started = Clock::now();

  Settings settings;
  bool quick = false;
  std::string rows_option;
  std::string measure_only;
  std::string cold_start;
  pid_t broker_pid = 0;
  CLI::App app{"fanout-bench: latency, throughput, payload, cold start and memory of fanout's drivers"};
  app.footer(
      "Examples:\n"
      "  fanout-bench                          full run, median of 3 (about a minute on 2 cores)\n"
      "  fanout-bench --peers                  also the Python peers (os.fork, multiprocessing, concurrent.futures)\n"
      "  fanout-bench --quick                  smoke test\n"
      "  fanout-bench --rows process-local     some rows only (sync, fork, process-local, process-remote)\n"
      "  fanout-bench --rows process-local --workloads w2,w3 --repeat 1\n"
      "  perf record -g -- fanout-bench --rows process-local --workloads w2 --repeat 1\n"
      "\n"
      "Exit codes: 0 done (a missed goal is not an error), 1 error, 2 a task returned a wrong result.");
  app.add_flag("--quick", quick, "Few iterations and one run: checks that everything works, figures are rough");
  app.add_option("--repeat", settings.repeat, "Runs of every workload; each figure is the median over them")
      ->check(CLI::Range(1, 100));
  app.add_flag("--peers", settings.peers, "Also measure the Python peers (bench/peers.py) in the same run");
  app.add_option("--rows", rows_option, "Comma-separated rows to measure (default: all four)");
  app.add_option("--workloads", settings.workloads, "Comma-separated workloads to measure (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember({"w1", "w2", "w3", "w4", "w6"}));
  // Internal: how the benchmark runs its own children.
  app.add_option("--measure-row", measure_only, "Measure one row in this process, print it as JSON")
      ->group("")
      ->check(CLI::IsMember(kRowNames));
  app.add_option("--cold-start", cold_start, "Run one task on a row's driver, print the result and time")
      ->group("")
      ->check(CLI::IsMember(kRowNames));
  app.add_option("--broker-pid", broker_pid, "The broker process of a process-remote row")->group("");
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    settings.make_quick();
    if (app.count("--repeat") == 0) settings.repeat = 1;
  }

  try {
    if (!cold_start.empty()) return run_cold_start(cold_start, main_started);
    if (!measure_only.empty()) {
      std::cout << to_json(measure_row_here(measure_only, settings, broker_pid)).dump() << std::endl;
      return 0;
    }

    const std::vector<std::string> rows = rows_option.empty() ? kRowNames : split_rows(rows_option);
    const std::string load_at_start = load_average();
    fanout_bench::become_subreaper();
    // Every repeat measures every system once, so drift on this shared machine hits all of them alike.
    std::vector<std::vector<Row>> runs;
    for (int run = 0; run < settings.repeat; ++run) {
      std::vector<Row> measured;
      for (const auto& name : rows) {
        std::cerr << "fanout-bench: run " << run + 1 << "/" << settings.repeat << ": " << name << "\n";
        measured.push_back(measure_row(name, settings));
      }
      if (settings.peers) {
        std::cerr << "fanout-bench: run " << run + 1 << "/" << settings.repeat << ": Python peers\n";
        for (auto& peer : measure_peers(settings)) measured.push_back(std::move(peer));
      }
      runs.push_back(std::move(measured));
    }
    print_report(median_of_runs(runs), settings, load_at_start);
  } catch (const WrongResult& error) {
    std::cerr << "fanout-bench: wrong result: " << error.what() << '\n';
    return kExitWrongResult;
  } catch (const CLI::ValidationError& error) {
    std::cerr << "fanout-bench: " << error.what() << '\n';
    return 1;
  } catch (const std::exception& error) {
    std::cerr << "fanout-bench: " << error.what() << '\n';
    return 1;
  }
  return 0;
}
