// fanout-bench-defer: how fast a broker with a journal acknowledges deferred batches (issue 5).
// Callers are threads of this program, each calling fanout::Concurrency::defer(noop(i)) in a loop
// on the process driver against a real fanout-broker --journal (FANOUT_BROKER set); a defer
// returns once the broker has made the batch durable (fdatasync) and answered with its receipt.
// For each number of callers (1 and 32 by default), a fresh broker and journal:
//
//   acks/s       acknowledged defers per second, all callers together
//   p50, p99     latency of one defer() call, from the call to its return
//   fsyncs       fdatasyncs the broker made meanwhile (counted with `perf stat` when it can be
//                run; "n/a" otherwise): fewer than defers means group commit at work
//
// Without --worker nothing runs the tasks: they stay pending in the journal (as they would while
// every worker is busy). The journal lives under --dir, by default next to this executable (in the
// build tree, on a real file system: a tmpfs would make fdatasync free).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include <fanout/fanout.hpp>

#include "child.hpp"

namespace {

using fanout_bench::BrokerProcess;
using fanout_bench::Child;
using fanout_bench::Clock;
using fanout_bench::Spawn;

const fanout::Task noop{"bench.defer_noop", [](int x) { return x; }};

struct Options {
  std::vector<int> callers{1, 32};
  double seconds = 5;
  int defers = 0;  // per caller; 0: run for `seconds`
  bool worker = false;
  bool quick = false;
  std::string dir;
};

struct Row {
  int callers = 0;
  std::size_t defers = 0;
  double seconds = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  std::optional<std::uint64_t> fsyncs;
};

// Nearest-rank percentile (as fanout-bench's).
double percentile(std::vector<double>& samples, double fraction) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const auto rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(samples.size())));
  return samples[std::clamp<std::size_t>(rank, 1, samples.size()) - 1];
}

// A fanout-broker with a journal in `journal`, bound to a loopback port the OS picks.
// `perf stat` counting the fdatasync calls of one process, when perf can do it here.
class FsyncCounter {
 public:
  FsyncCounter(pid_t pid, const std::filesystem::path& output) : output_(output) {
    std::error_code ignored;
    std::filesystem::remove(output_, ignored);
    const std::string command = "exec perf stat -x, -e syscalls:sys_enter_fdatasync -p " + std::to_string(pid) +
                                " -o '" + output_.string() + "' 2>/dev/null";
    try {
      perf_ = std::make_unique<Child>(Spawn{"/bin/sh", {"-c", command}, {}, Spawn::Output::null});
    } catch (const std::exception&) {
      perf_.reset();
    }
    // perf attaches asynchronously: its output file appears once it counts (or it has given up).
    const auto deadline = Clock::now() + std::chrono::seconds(3);
    while (perf_ && Clock::now() < deadline && !std::filesystem::exists(output_)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // Stops perf and reads its count; nullopt when perf is missing or not allowed to count.
  std::optional<std::uint64_t> finish() {
    if (!perf_) return std::nullopt;
    perf_->stop(SIGINT, std::chrono::seconds(5));
    perf_.reset();
    std::ifstream in(output_);
    for (std::string line; std::getline(in, line);) {
      if (line.find("sys_enter_fdatasync") == std::string::npos) continue;
      const auto comma = line.find(',');
      const std::string count = line.substr(0, comma);
      if (count.empty() || count.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
      return std::stoull(count);
    }
    return std::nullopt;
  }

 private:
  std::filesystem::path output_;
  std::unique_ptr<Child> perf_;
};

Row measure(const Options& options, int callers, const std::filesystem::path& dir) {
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  std::filesystem::create_directories(dir);
  BrokerProcess broker(FANOUT_BROKER_PROGRAM, {"--journal", (dir / "journal").string()});
  std::unique_ptr<Child> worker;
  if (options.worker) {
    worker = std::make_unique<Child>(Spawn{fanout_bench::self_path(),
                                           {},
                                           {"FANOUT_WORKER=" + broker.endpoint(), "FANOUT_PROCESSES=2"},
                                           Spawn::Output::null});
  }
  ::setenv("FANOUT_BROKER", broker.endpoint().c_str(), 1);
  // Every caller's socket connected and one batch through before the clock starts.
  {
    std::vector<std::thread> warm;
    for (int c = 0; c < callers; ++c) warm.emplace_back([] { fanout::Concurrency::defer(noop(0)); });
    for (auto& thread : warm) thread.join();
  }

  FsyncCounter fsyncs(broker.pid(), dir / "perf.txt");
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(callers));
  std::atomic<bool> failed{false};
  std::string failure;
  std::atomic<bool> go{false};
  const auto duration = std::chrono::duration<double>(options.seconds);
  Clock::time_point start;
  std::vector<std::thread> threads;
  for (int c = 0; c < callers; ++c) {
    threads.emplace_back([&, c] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      auto& mine = latencies[static_cast<std::size_t>(c)];
      mine.reserve(options.defers > 0 ? static_cast<std::size_t>(options.defers) : 4096);
      for (int i = 0; options.defers > 0 ? i < options.defers : Clock::now() - start < duration; ++i) {
        const auto before = Clock::now();
        try {
          fanout::Concurrency::defer(noop(i));
        } catch (const std::exception& error) {
          if (!failed.exchange(true)) failure = error.what();
          return;
        }
        mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - before).count());
      }
    });
  }
  start = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& thread : threads) thread.join();
  Row row;
  row.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  row.fsyncs = fsyncs.finish();
  ::unsetenv("FANOUT_BROKER");
  if (failed) throw std::runtime_error("a defer failed: " + failure);
  std::vector<double> all;
  for (const auto& mine : latencies) all.insert(all.end(), mine.begin(), mine.end());
  row.callers = callers;
  row.defers = all.size();
  row.p50_ms = percentile(all, 0.50);
  row.p90_ms = percentile(all, 0.90);
  row.p99_ms = percentile(all, 0.99);
  row.max_ms = all.empty() ? 0 : all.back();
  worker.reset();
  std::filesystem::remove_all(dir, ignored);
  return row;
}

std::string fixed(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", digits, value);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  fanout::init(argc, argv);  // with --worker, this program also serves bench.defer_noop
  Options options;
  CLI::App app{"fanout-bench-defer: acknowledgements per second and defer() latency against fanout-broker --journal"};
  app.add_option("--callers", options.callers, "Caller threads, one row each (default: 1 32)")->expected(1, 64);
  app.add_option("--seconds", options.seconds, "How long each row runs (default 5)")->check(CLI::Range(0.1, 3600.0));
  app.add_option("--defers", options.defers, "Defers per caller instead of --seconds")->check(CLI::Range(1, 100000000));
  app.add_flag("--worker", options.worker, "Run a worker (2 executors) that drains the deferred tasks");
  app.add_option("--dir", options.dir, "Where the journal goes (default: beside this executable)");
  app.add_flag("--quick", options.quick, "A smoke run: 1 and 4 callers, 50 defers each");
  app.footer(
      "Examples:\n"
      "  fanout-bench-defer                      # 1 and 32 callers, 5 s each\n"
      "  fanout-bench-defer --callers 1 8 32 --seconds 10 --worker\n"
      "\n"
      "Exit codes: 0 done, 1 a defer or the broker failed, 2 bad usage.");
  CLI11_PARSE(app, argc, argv);
  if (options.quick) {
    options.callers = {1, 4};
    options.defers = 50;
  }
  const std::filesystem::path base =
      options.dir.empty() ? std::filesystem::path(fanout_bench::self_path()).parent_path() : std::filesystem::path(options.dir);
  const auto dir = base / ("defer-bench-" + std::to_string(::getpid()));

  std::vector<Row> rows;
  try {
    for (const int callers : options.callers) {
      if (callers < 1) throw std::runtime_error("--callers: at least 1");
      rows.push_back(measure(options, callers, dir));
    }
  } catch (const std::exception& error) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    std::cerr << "fanout-bench-defer: " << error.what() << "\n";
    return 1;
  }

  std::cout << "| callers | defers | acks/s | p50 ms | p90 ms | p99 ms | max ms | fsyncs | defers per fsync |\n";
  std::cout << "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const Row& row : rows) {
    std::cout << "| " << row.callers << " | " << row.defers << " | "
              << fixed(static_cast<double>(row.defers) / row.seconds, 0) << " | " << fixed(row.p50_ms, 3) << " | "
              << fixed(row.p90_ms, 3) << " | " << fixed(row.p99_ms, 3) << " | " << fixed(row.max_ms, 1) << " | " << (row.fsyncs ? std::to_string(*row.fsyncs) : "n/a") << " | "
              << (row.fsyncs && *row.fsyncs > 0 ? fixed(static_cast<double>(row.defers) / static_cast<double>(*row.fsyncs), 1)
                                                : "n/a")
              << " |\n";
  }
  std::cout << "\njournal under " << base.string() << (options.worker ? ", a worker draining the tasks" : ", no worker (tasks stay pending)")
            << "; " << (options.defers > 0 ? std::to_string(options.defers) + " defers per caller" : fixed(options.seconds, 1) + " s per row")
            << "\n";
  return 0;
}
