// fanout-bench: latency of a small batch (W1) and cost of a forked task (W6) on the sync and fork
// drivers, optionally next to Python peers measured in the same run (bench/peers.py). Workloads
// and goals are described in bench/README.md and /work/shared/anchors.md.
//
//   fanout-bench             # full run
//   fanout-bench --peers     # plus Python os.fork + pipe and multiprocessing.Pool(2), same counts
//   fanout-bench --quick     # a few iterations, for smoke tests
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fanout/fanout.hpp>

namespace {

// At namespace scope so that it is registered in every process that may run it, as a real program's
// tasks are.
const fanout::Task twice{"bench.twice", [](int i) { return i * 2; }};

// The goals the fork driver is held to, and where spatie/fork (Laravel's fork driver) stands.
constexpr double kForkW1GoalUs = 400;
constexpr double kForkW6GoalUs = 200;
constexpr double kSpatieForkW1Us = 2210;
constexpr double kSpatieForkW6Us = 1007;

// The peers are Debian's interpreter, never a virtualenv's, so the figures match the anchors.
constexpr const char* kPython = "/usr/bin/python3";

using Clock = std::chrono::steady_clock;

struct Settings {
  int w1_warmup = 30;
  int w1_batches = 300;
  int w6_tasks = 2000;
  int repeat = 3;
  bool peers = false;
};

// One system's figures; a workload the system does not have stays empty.
struct Row {
  std::string system;
  std::optional<double> w1_p50_us;
  std::optional<double> w1_p99_us;
  std::optional<double> w6_us_per_task;
};

// A result that is not what the task computes means the library is broken: no figure is worth
// printing then.
class WrongResult : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

double micros_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

// Nearest-rank percentile, the same definition peers.py uses.
double percentile(std::vector<double> samples, double fraction) {
  std::sort(samples.begin(), samples.end());
  const auto rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(samples.size())));
  return samples[std::clamp<std::size_t>(rank, 1, samples.size()) - 1];
}

double median(std::vector<double> values) { return percentile(std::move(values), 0.5); }

// W1: a batch of three trivial tasks, results in order. Building the calls is inside the timed
// region because a caller pays for it on every batch.
void measure_w1(const fanout::Driver& driver, const Settings& settings, Row& row) {
  const auto one_batch = [&] {
    const auto [a, b, c] = driver.run(twice(0), twice(1), twice(2));
    if (a != 0 || b != 2 || c != 4) {
      throw WrongResult("W1 on " + row.system + ": got (" + std::to_string(a) + ", " + std::to_string(b) +
                        ", " + std::to_string(c) + "), expected (0, 2, 4)");
    }
  };
  for (int i = 0; i < settings.w1_warmup; ++i) one_batch();

  std::vector<double> batch_us;
  batch_us.reserve(static_cast<std::size_t>(settings.w1_batches));
  for (int i = 0; i < settings.w1_batches; ++i) {
    const auto start = Clock::now();
    one_batch();
    batch_us.push_back(micros_since(start));
  }
  row.w1_p50_us = percentile(batch_us, 0.50);
  row.w1_p99_us = percentile(batch_us, 0.99);
}

// W6: many trivial tasks, two at a time; wall time per task. The calls are built before the clock
// starts: the figure is the driver's cost per task, not the cost of encoding an int.
void measure_w6(const fanout::Driver& driver, const Settings& settings, Row& row) {
  std::vector<fanout::Call<int>> calls;
  calls.reserve(static_cast<std::size_t>(settings.w6_tasks));
  for (int i = 0; i < settings.w6_tasks; ++i) calls.push_back(twice(i));

  const auto start = Clock::now();
  const std::vector<int> results = driver.max_concurrency(2).run(calls);
  const double elapsed_us = micros_since(start);

  for (int i = 0; i < settings.w6_tasks; ++i) {
    if (results.at(static_cast<std::size_t>(i)) != i * 2) {
      throw WrongResult("W6 on " + row.system + ": slot " + std::to_string(i) + " holds " +
                        std::to_string(results[static_cast<std::size_t>(i)]));
    }
  }
  row.w6_us_per_task = elapsed_us / settings.w6_tasks;
}

std::string driver_row_name(std::string_view driver) { return "fanout " + std::string(driver) + " driver"; }

Row measure_driver(std::string_view name, const Settings& settings) {
  Row row{driver_row_name(name), {}, {}, {}};
  const fanout::Driver driver = fanout::Concurrency::driver(name);
  measure_w1(driver, settings, row);
  measure_w6(driver, settings, row);
  return row;
}

std::optional<double> optional_number(const nlohmann::json& object, const char* field) {
  const auto found = object.find(field);
  if (found == object.end() || found->is_null()) return std::nullopt;
  return found->get<double>();
}

// Runs peers.py with the same counts as ours; it prints one JSON object per system.
std::vector<Row> measure_peers(const Settings& settings) {
  const std::string command = std::string(kPython) + " " + FANOUT_BENCH_DIR + "/peers.py --json" +
                              " --warmup " + std::to_string(settings.w1_warmup) + " --batches " +
                              std::to_string(settings.w1_batches) + " --tasks " + std::to_string(settings.w6_tasks);
  std::fflush(nullptr);  // the child shares our stdout
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run: " + command);

  std::string output;
  char buffer[4096];
  for (std::size_t got; (got = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;) output.append(buffer, got);
  const int status = ::pclose(pipe);
  if (status != 0) throw std::runtime_error("peers failed (status " + std::to_string(status) + "): " + command);

  std::vector<Row> rows;
  std::size_t line_start = 0;
  while (line_start < output.size()) {
    std::size_t line_end = output.find('\n', line_start);
    if (line_end == std::string::npos) line_end = output.size();
    const std::string_view line(output.data() + line_start, line_end - line_start);
    line_start = line_end + 1;
    if (line.empty()) continue;
    const auto object = nlohmann::json::parse(line);
    rows.push_back({object.at("system").get<std::string>(), optional_number(object, "w1_p50_us"),
                    optional_number(object, "w1_p99_us"), optional_number(object, "w6_us_per_task")});
  }
  return rows;
}

// Each figure is the median over the runs: one slow run on a shared machine does not move it.
std::vector<Row> median_of_runs(const std::vector<std::vector<Row>>& runs) {
  std::vector<Row> rows;
  for (std::size_t i = 0; i < runs.front().size(); ++i) {
    const auto median_of = [&](std::optional<double> Row::*field) -> std::optional<double> {
      std::vector<double> values;
      for (const auto& run : runs) {
        if (run.at(i).*field) values.push_back(*(run.at(i).*field));
      }
      if (values.empty()) return std::nullopt;
      return median(std::move(values));
    };
    rows.push_back({runs.front()[i].system, median_of(&Row::w1_p50_us), median_of(&Row::w1_p99_us),
                    median_of(&Row::w6_us_per_task)});
  }
  return rows;
}

// "1,007" for large figures, "3.4" where a decimal still means something.
std::string format_us(std::optional<double> value) {
  if (!value) return "—";
  if (*value < 10) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.1f", *value);
    return text;
  }
  std::string digits = std::to_string(std::llround(*value));
  for (std::size_t at = digits.size(); at > 3; at -= 3) digits.insert(at - 3, ",");
  return digits;
}

std::string verdict(std::optional<double> value, double goal) {
  if (!value) return "not measured";
  return format_us(value) + " µs, " + (*value <= goal ? "met" : "MISSED");
}

void print_report(const std::vector<Row>& rows, const Settings& settings) {
  std::cout << "W1: " << settings.w1_batches << " batches of 3 trivial tasks after " << settings.w1_warmup
            << " warm-up. W6: " << settings.w6_tasks << " trivial tasks, 2 at a time. Median of "
            << settings.repeat << " run(s); " << std::thread::hardware_concurrency() << " CPUs.\n\n";
  std::cout << "| system | W1 p50 (µs) | W1 p99 (µs) | W6 (µs/task) |\n";
  std::cout << "| --- | ---: | ---: | ---: |\n";
  for (const auto& row : rows) {
    std::cout << "| " << row.system << " | " << format_us(row.w1_p50_us) << " | " << format_us(row.w1_p99_us)
              << " | " << format_us(row.w6_us_per_task) << " |\n";
  }

  const auto fork = std::find_if(rows.begin(), rows.end(),
                                 [](const Row& row) { return row.system == driver_row_name("fork"); });
  std::cout << "\nFork driver goals: W1 p50 <= " << format_us(kForkW1GoalUs)
            << " µs: " << verdict(fork->w1_p50_us, kForkW1GoalUs) << "; W6 <= " << format_us(kForkW6GoalUs)
            << " µs/task: " << verdict(fork->w6_us_per_task, kForkW6GoalUs) << ". (spatie/fork: "
            << format_us(kSpatieForkW1Us) << " µs and " << format_us(kSpatieForkW6Us) << " µs.)\n";
}

}  // namespace

int main(int argc, char** argv) {
  fanout::init(argc, argv);

  Settings settings;
  bool quick = false;
  CLI::App app{"fanout-bench: per-batch latency (W1) and per-forked-task cost (W6) of the sync and fork drivers"};
  app.footer(
      "Examples:\n"
      "  fanout-bench                 full run, median of 3 (under a minute on 2 cores)\n"
      "  fanout-bench --peers         also Python os.fork + pipe and multiprocessing.Pool(2)\n"
      "  fanout-bench --quick         smoke test\n"
      "  fanout-bench --repeat 5 --peers");
  app.add_flag("--quick", quick, "Few iterations and one run: checks that everything works, figures are rough");
  app.add_option("--repeat", settings.repeat, "Runs of every workload; each figure is the median over them")
      ->check(CLI::Range(1, 100));
  app.add_flag("--peers", settings.peers, "Also measure the Python peers (bench/peers.py) in the same run");
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    settings.w1_warmup = 5;
    settings.w1_batches = 30;
    settings.w6_tasks = 100;
    if (app.count("--repeat") == 0) settings.repeat = 1;
  }

  try {
    // Every repeat measures every system once, so drift on this shared machine hits all of them alike.
    std::vector<std::vector<Row>> runs;
    for (int run = 0; run < settings.repeat; ++run) {
      std::vector<Row> rows{measure_driver("sync", settings), measure_driver("fork", settings)};
      if (settings.peers) {
        for (auto& peer : measure_peers(settings)) rows.push_back(std::move(peer));
      }
      runs.push_back(std::move(rows));
    }
    print_report(median_of_runs(runs), settings);
  } catch (const WrongResult& error) {
    std::cerr << "fanout-bench: wrong result: " << error.what() << '\n';
    return 2;
  } catch (const std::exception& error) {
    std::cerr << "fanout-bench: " << error.what() << '\n';
    return 1;
  }
  return 0;
}
