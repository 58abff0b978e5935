// fanout-bench-sched: W7 of /work/shared/anchors.md, how fanout schedules slow tasks (issue 10,
// point 8). Tasks that sleep, in four workloads (bench/sched_workloads.hpp): the makespan against
// the ideal, the most tasks running at once, and when each result reached the caller, for the fork
// driver and the process driver in local and remote mode, next to multiprocessing.Pool(2) and
// ProcessPoolExecutor(2) measured in the same run (bench/peers.py --sched). bench/README.md says
// what every column means.
//
//   fanout-bench-sched                       # full run, median of 3 (about 2 minutes on 2 cores)
//   fanout-bench-sched --quick               # durations ÷ 10, one run: the smoke test
//   fanout-bench-sched --rows process-local --workloads uneven --repeat 1 --no-peers
//
// Every row is measured in a process of its own (this program re-run with --measure-row), as in
// fanout-bench, so the process driver's mode, chosen once per process, is the row's. For
// process-remote the benchmark also starts a fanout-broker on tcp://127.0.0.1:* and a worker with
// two executors (this program with FANOUT_WORKER set), and stops both afterwards.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <CLI/CLI.hpp>

#include <fanout/fanout.hpp>

#include "bench_common.hpp"
#include "child.hpp"
#include "report.hpp"
#include "rows.hpp"
#include "sched_report.hpp"
#include "sched_workloads.hpp"

namespace {

using namespace fanout_bench;  // NOLINT: the benchmark's own helpers

// What a task reports: its index, and when its sleep began and ended, in ns of steady_clock, which
// is CLOCK_MONOTONIC on Linux: one clock for every process of the machine (Python's
// time.monotonic_ns() reads the same one), so the caller can set the stamps against its own.
using Stamp = std::tuple<std::int64_t, std::int64_t, std::int64_t>;

std::int64_t nanoseconds_of(Clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
}

// At namespace scope so that it is registered in every process that may run it: local workers and
// the remote worker are this program.
const fanout::Task sleeper{"bench.sleep", [](std::int64_t index, std::int64_t micros) {
                             const auto start = Clock::now();
                             std::this_thread::sleep_for(std::chrono::microseconds(micros));
                             return Stamp{index, nanoseconds_of(start), nanoseconds_of(Clock::now())};
                           }};

const std::vector<std::string> kSchedRows{"fork", "process-local", "process-remote"};
// The remote worker runs this many executors (fanout-worker --processes 2).
constexpr int kRemoteProcesses = 2;
// --quick divides every duration by 10.
constexpr double kQuickScale = 0.1;

double ms_between(std::int64_t from_ns, std::int64_t to_ns) { return static_cast<double>(to_ns - from_ns) / 1e6; }

struct Options {
  bool quick = false;
  int repeat = 3;
  bool peers = true;
  std::vector<std::string> rows = kSchedRows;
  std::vector<std::string> workloads = kSchedWorkloadNames;
};

// ---- inside a row's own process -------------------------------------------------------------------

// Runs one workload as a vector batch with the per-result callback, and records when each task ran
// and when its result reached this thread.
void measure_workload(const fanout::Driver& driver, const SchedWorkload& workload, Row& raw) {
  const std::size_t count = workload.durations_us.size();
  std::vector<fanout::Call<Stamp>> calls;
  for (std::size_t i = 0; i < count; ++i) {
    calls.push_back(sleeper(static_cast<std::int64_t>(i), workload.durations_us[i]));
  }
  const fanout::Driver batch_driver = workload.cap > 0 ? driver.max_concurrency(workload.cap) : driver;
  if (!workload.before_us.empty()) {
    std::vector<fanout::Call<Stamp>> before;
    for (std::size_t i = 0; i < workload.before_us.size(); ++i) {
      before.push_back(sleeper(static_cast<std::int64_t>(i), workload.before_us[i]));
    }
    const auto stamps = batch_driver.run(before);
    bool right = stamps.size() == before.size();
    for (std::size_t i = 0; right && i < stamps.size(); ++i) {
      right = std::get<0>(stamps[i]) == static_cast<std::int64_t>(i);
    }
    if (!right) throw WrongResult(raw.system + ", " + workload.name + ": the batch before it returned a wrong result");
  }

  std::vector<std::int64_t> reached_ns(count, -1);
  std::string misdelivered;  // the callback only notes what is wrong: it runs inside the driver
  const auto start = Clock::now();
  const std::vector<Stamp> stamps = batch_driver.run(calls, [&](std::size_t index, fanout::Outcome<Stamp>&& outcome) {
    const std::int64_t now = nanoseconds_of(Clock::now());
    if (index >= count || reached_ns[index] >= 0) {
      misdelivered = "slot " + std::to_string(index) + " delivered twice or out of range";
    } else if (outcome.ok() && std::get<0>(outcome.value()) != static_cast<std::int64_t>(index)) {
      misdelivered = "slot " + std::to_string(index) + " delivered the result of task " +
                     std::to_string(std::get<0>(outcome.value()));
    } else {
      reached_ns[index] = now;
    }
  });
  const std::int64_t end_ns = nanoseconds_of(Clock::now());
  const std::int64_t start_ns = nanoseconds_of(start);

  const std::string what = raw.system + ", " + workload.name + ": ";
  if (!misdelivered.empty()) throw WrongResult(what + misdelivered);
  if (stamps.size() != count) {
    throw WrongResult(what + std::to_string(stamps.size()) + " results for " + std::to_string(count) + " tasks");
  }
  std::vector<TaskTiming> timings;
  for (std::size_t i = 0; i < count; ++i) {
    const auto [index, began, ended] = stamps[i];
    if (index != static_cast<std::int64_t>(i)) {
      throw WrongResult(what + "slot " + std::to_string(i) + " holds task " + std::to_string(index));
    }
    if (reached_ns[i] < 0) throw WrongResult(what + "the callback never saw slot " + std::to_string(i));
    timings.push_back({ms_between(start_ns, began), ms_between(start_ns, ended), ms_between(start_ns, reached_ns[i])});
  }
  record_timings(raw, workload, timings, ms_between(start_ns, end_ns));
}

Row measure_row_here(const std::string& name, const std::vector<SchedWorkload>& workloads) {
  Row raw{row_title(name), {}};
  const fanout::Driver driver = driver_for(name);
  if (is_process_row(name)) {
    wait_for_executors(driver, name == "process-remote" ? kRemoteProcesses : available_cores(), name);
  }
  // The pool is warmed with another task (bench.pid), never with bench.sleep: what the broker
  // learns of bench.sleep's durations comes from the workloads alone, in their order.
  // With no cap, the fork driver and local mode run as many tasks at once as the batch has (up to
  // FANOUT_MAX_PROCESSES); the remote worker has its executors.
  raw.figures["slots"] = name == "process-remote" ? kRemoteProcesses : 0;
  for (const auto& workload : workloads) measure_workload(driver, workload, raw);
  return raw;
}

// ---- the parent --------------------------------------------------------------------------------------

std::string joined(const std::vector<std::string>& names) {
  std::string list;
  for (const auto& name : names) list += (list.empty() ? "" : ",") + name;
  return list;
}

// One row's raw timings, measured in a child of its own (and a broker and worker for remote mode).
Row measure_row(const std::string& name, const Options& options) {
  std::vector<std::string> arguments{"--measure-row", name, "--workloads", joined(options.workloads)};
  if (options.quick) arguments.emplace_back("--quick");
  const auto limit = std::chrono::seconds(options.quick ? 60 : 180);
  Row raw;
  if (name == "process-remote") {
    RemoteCluster cluster(kRemoteProcesses);
    raw = measure_in_child(arguments, {"FANOUT_BROKER=" + cluster.endpoint()}, limit, name);
    cluster.stop();
  } else {
    raw = measure_in_child(arguments, {}, limit, name);
  }
  // This process is the subreaper of whatever the row's processes left: anything still alive a
  // second later is a leak worth knowing about.
  for (const pid_t pid : reap_leftovers(std::chrono::seconds(1))) {
    std::cerr << "fanout-bench-sched: " << name << " left process " << pid << " behind; killed it\n";
  }
  return raw;
}

std::vector<SchedWorkload> selected_workloads(const Options& options) {
  std::vector<SchedWorkload> selected;
  for (auto& workload : sched_workloads(options.quick ? kQuickScale : 1.0)) {
    if (std::find(options.workloads.begin(), options.workloads.end(), workload.name) != options.workloads.end()) {
      selected.push_back(std::move(workload));
    }
  }
  return selected;
}

std::string command_line(int argc, char** argv) {
  std::string command = std::filesystem::path(argv[0]).filename().string();
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  return command;
}

}  // namespace

int main(int argc, char** argv) {
  // First: a local worker of the process driver is this program re-executed, and the remote worker
  // is this program with FANOUT_WORKER set; init() serves tasks there and never returns.
  fanout::init(argc, argv);

  Options options;
  bool no_peers = false;
  bool print_workloads = false;
  std::string measure_only;
  CLI::App app{"fanout-bench-sched: W7, how fanout schedules slow tasks, next to Python's process pools"};
  app.footer(
      "Examples:\n"
      "  fanout-bench-sched                     full run, median of 3 (about 2 minutes on 2 cores)\n"
      "  fanout-bench-sched --quick             durations / 10, one run (the smoke test)\n"
      "  fanout-bench-sched --rows process-local --workloads uneven,first-result --repeat 1 --no-peers\n"
      "  /usr/bin/python3 bench/peers.py --sched \"$(fanout-bench-sched --print-workloads)\"\n"
      "\n"
      "Exit codes: 0 done (a missed goal is not an error), 1 error, 2 a task returned a wrong result.");
  app.add_flag("--quick", options.quick, "Every duration divided by 10, one run: checks that everything works");
  app.add_option("--repeat", options.repeat, "Runs of every row; each figure is the median over them")
      ->check(CLI::Range(1, 50));
  app.add_flag("--no-peers", no_peers, "Leave out the Python peers (bench/peers.py --sched)");
  app.add_option("--rows", options.rows, "Comma-separated rows: fork, process-local, process-remote (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember(kSchedRows));
  app.add_option(
         "--workloads", options.workloads,
         "Comma-separated workloads: equal, uneven, heavy-tailed, first-result, equal-after-fast (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember(kSchedWorkloadNames));
  app.add_flag("--print-workloads", print_workloads, "Print the workloads as peers.py --sched reads them, and exit");
  app.add_option("--measure-row", measure_only, "Measure one row in this process, print it as JSON")
      ->group("")
      ->check(CLI::IsMember(kSchedRows));
  CLI11_PARSE(app, argc, argv);
  options.peers = !no_peers;
  if (options.quick && app.count("--repeat") == 0) options.repeat = 1;

  try {
    const std::vector<SchedWorkload> workloads = selected_workloads(options);
    if (print_workloads) {
      std::cout << to_json(workloads).dump() << std::endl;
      return 0;
    }
    if (!measure_only.empty()) {
      std::cout << to_json(measure_row_here(measure_only, workloads)).dump() << std::endl;
      return 0;
    }

    const SchedRunInfo info{command_line(argc, argv), load_average(), options.repeat, options.quick};
    become_subreaper();
    if (options.peers && ::access(kPython, X_OK) != 0) {
      std::cerr << "fanout-bench-sched: " << kPython << " not found: the Python peers are left out\n";
      options.peers = false;
    }
    // Every repeat measures every system once, so drift on this shared machine hits all of them alike.
    std::vector<std::vector<Row>> runs;
    for (int run = 0; run < options.repeat; ++run) {
      std::vector<Row> figures;
      for (const auto& name : options.rows) {
        std::cerr << "fanout-bench-sched: run " << run + 1 << "/" << options.repeat << ": " << name << "\n";
        figures.push_back(sched_figures(measure_row(name, options), workloads));
      }
      if (options.peers) {
        std::cerr << "fanout-bench-sched: run " << run + 1 << "/" << options.repeat << ": Python peers\n";
        for (const auto& raw : measure_peers({"--sched", to_json(workloads).dump()})) {
          figures.push_back(sched_figures(raw, workloads));
        }
      }
      runs.push_back(std::move(figures));
    }
    print_sched_report(median_of_runs(runs), workloads, info);
  } catch (const WrongResult& error) {
    std::cerr << "fanout-bench-sched: wrong result: " << error.what() << '\n';
    return kExitWrongResult;
  } catch (const std::exception& error) {
    std::cerr << "fanout-bench-sched: " << error.what() << '\n';
    return 1;
  }
  return 0;
}
