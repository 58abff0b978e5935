// fanout-bench-workers: many workers on one broker (issue 13, point 6). One fanout-broker and
// --workers fanout-worker processes of one executor each (default 100, on tcp loopback), loading
// the example task library; this program is the client (FANOUT_BROKER). It measures:
//
//   idle         the broker's CPU per second alone, then with every worker connected and idle:
//                the difference divided by the workers is the heartbeat cost of one idle worker
//   trivial      a batch of --trivial example.square calls: tasks/s, the broker's CPU per task
//   10 ms        a batch of --slow example.sleep_ms(10) calls: tasks/s against the ideal
//                (workers / 10 ms), the broker's CPU per task
//   memory       the broker's RSS (VmRSS, and VmHWM: its peak) and open descriptors after each
//                phase; the workers' RSS (supervisor and executor) per worker
//
// The broker's CPU is utime + stime from /proc/PID/stat (clock ticks of 10 ms: hence the long
// idle windows). Batches run --repeats times; the median is printed, every run too.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
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
#include <zmq.hpp>

#include <fanout/fanout.hpp>

#include "broker_queries.hpp"
#include "child.hpp"
#include "example_tasks.hpp"

namespace {

using fanout_bench::BrokerProcess;
using fanout_bench::Child;
using fanout_bench::Clock;
using fanout_bench::Spawn;

struct Options {
  int workers = 100;
  int trivial = 20000;
  int slow = 5000;
  double idle_seconds = 10;
  int repeats = 3;
  bool quick = false;
};

// utime + stime of a process, in seconds.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close == std::string::npos) throw std::runtime_error("cannot read /proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(stat.substr(close + 2));
  std::vector<std::string> field;
  std::string word;
  while (fields >> word) field.push_back(word);
  // Fields after the command start at 3 (state); utime is 14 and stime 15.
  const double ticks = static_cast<double>(std::stoull(field.at(11)) + std::stoull(field.at(12)));
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::size_t open_descriptors(pid_t pid) {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++count;
  return count;
}

// Every process whose parent is `pid` (a worker's executors).
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 2));
    std::string state;
    pid_t parent = 0;
    fields >> state >> parent;
    if (parent == pid) found.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return found;
}

void wait_for_executors(const std::string& endpoint, std::size_t executors, std::chrono::seconds limit) {
  zmq::context_t context;
  const auto deadline = Clock::now() + limit;
  std::optional<fanout::link::StatusCounts> counts;
  while (Clock::now() < deadline) {
    counts = fanout::link::query_counts(context, endpoint, std::chrono::seconds(2));
    if (counts && counts->executors == executors) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw std::runtime_error("the broker lists " + std::to_string(counts ? counts->executors : 0) + " executors, not " +
                           std::to_string(executors) + ", after " + std::to_string(limit.count()) + " s");
}

double idle_cpu_per_second(pid_t broker, double seconds) {
  const double before = cpu_seconds(broker);
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  return (cpu_seconds(broker) - before) / elapsed;
}

struct Run {
  double seconds = 0;
  double broker_cpu = 0;
};

// One batch of `count` calls made by `make(i)`, each result checked by `expect(i, value)`.
template <class Make, class Expect>
Run batch(pid_t broker, int count, Make make, Expect expect) {
  std::vector<fanout::Call<int>> calls;
  calls.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) calls.push_back(make(i));
  const double cpu_before = cpu_seconds(broker);
  const auto start = Clock::now();
  const auto results = fanout::Concurrency::run(calls);
  Run run;
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  run.broker_cpu = cpu_seconds(broker) - cpu_before;
  for (int i = 0; i < count; ++i) {
    if (!expect(i, results[static_cast<std::size_t>(i)])) throw std::runtime_error("a wrong result at slot " + std::to_string(i));
  }
  return run;
}

std::string fixed(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", digits, value);
  return text;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

std::string memory_line(pid_t broker) {
  const auto memory = fanout_bench::memory_of(broker);
  return fixed(memory.rss_mib, 1) + " MiB RSS (peak " + fixed(memory.peak_mib, 1) + " MiB), " +
         std::to_string(open_descriptors(broker)) + " fds";
}

}  // namespace

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  Options options;
  CLI::App app{"fanout-bench-workers: one fanout-broker, many fanout-worker processes of one executor each"};
  app.add_option("--workers", options.workers, "fanout-worker processes, one executor each (default 100)")
      ->check(CLI::Range(1, 5000));
  app.add_option("--trivial", options.trivial, "Tasks in the trivial batch (default 20000)")->check(CLI::Range(1, 10000000));
  app.add_option("--slow", options.slow, "Tasks in the 10 ms batch (default 5000)")->check(CLI::Range(1, 10000000));
  app.add_option("--idle-seconds", options.idle_seconds, "Each idle measurement's window (default 10)")
      ->check(CLI::Range(0.5, 600.0));
  app.add_option("--repeats", options.repeats, "Runs of each batch; the median is printed (default 3)")
      ->check(CLI::Range(1, 100));
  app.add_flag("--quick", options.quick, "A smoke run: 4 workers, small batches, 1 s idle windows");
  app.footer(
      "Examples:\n"
      "  fanout-bench-workers                  # 100 workers\n"
      "  fanout-bench-workers --workers 200 --slow 20000\n"
      "\n"
      "Exit codes: 0 done, 1 a batch, a worker or the broker failed, 2 bad usage.");
  CLI11_PARSE(app, argc, argv);
  if (options.quick) {
    options = Options{4, 400, 80, 1, 1, true};
  }

  try {
    fanout_bench::become_subreaper();  // executors of a worker that dies come back here, and are reaped
    BrokerProcess broker(FANOUT_BROKER_PROGRAM);
    std::cout << "broker alone: " << memory_line(broker.pid()) << "\n";
    const double alone = idle_cpu_per_second(broker.pid(), options.idle_seconds);

    const auto started = Clock::now();
    std::vector<std::unique_ptr<Child>> workers;
    for (int w = 0; w < options.workers; ++w) {
      workers.push_back(std::make_unique<Child>(Spawn{FANOUT_WORKER_PROGRAM,
                                                      {"--connect", broker.endpoint(), "--processes", "1", "--load",
                                                       FANOUT_EXAMPLE_TASKS, "--log-level", "warn"},
                                                      {},
                                                      Spawn::Output::null}));
    }
    wait_for_executors(broker.endpoint(), static_cast<std::size_t>(options.workers), std::chrono::seconds(120));
    const double connect_s = std::chrono::duration<double>(Clock::now() - started).count();
    std::cout << options.workers << " workers connected in " << fixed(connect_s, 1) << " s; broker: "
              << memory_line(broker.pid()) << "\n";
    std::this_thread::sleep_for(std::chrono::seconds(options.quick ? 0 : 2));  // start-up settled
    const double idle = idle_cpu_per_second(broker.pid(), options.idle_seconds);
    std::cout << "idle: broker CPU " << fixed(alone * 1000, 2) << " ms/s alone, " << fixed(idle * 1000, 2) << " ms/s with "
              << options.workers << " idle workers: " << fixed((idle - alone) * 1e6 / options.workers, 1)
              << " us/s per idle worker\n";

    ::setenv("FANOUT_BROKER", broker.endpoint().c_str(), 1);
    // One small batch first: the client's connection, every executor warm.
    batch(broker.pid(), options.workers * 4, [](int i) { return example::square(i); }, [](int i, int v) { return v == i * i; });

    struct Phase {
      std::string name;
      int count;
      std::vector<Run> runs;
    };
    std::vector<Phase> phases{{"trivial (example.square)", options.trivial, {}}, {"10 ms (example.sleep_ms(10))", options.slow, {}}};
    for (int r = 0; r < options.repeats; ++r) {
      phases[0].runs.push_back(batch(broker.pid(), options.trivial, [](int i) { return example::square(i % 40000); },
                                     [](int i, int v) { return v == (i % 40000) * (i % 40000); }));
      phases[1].runs.push_back(batch(broker.pid(), options.slow, [](int) { return example::sleep_ms(10); },
                                     [](int, int v) { return v == 10; }));
    }
    std::cout << "after the batches: broker " << memory_line(broker.pid()) << "\n";

    double workers_rss = 0;
    for (const auto& worker : workers) {
      workers_rss += fanout_bench::memory_of(worker->pid()).rss_mib;
      for (const pid_t executor : children_of(worker->pid())) workers_rss += fanout_bench::memory_of(executor).rss_mib;
    }
    std::cout << "workers: " << fixed(workers_rss / options.workers, 1) << " MiB RSS per worker (supervisor + executor)\n\n";

    std::cout << "| batch | tasks | runs (s) | median s | tasks/s | ideal tasks/s | broker CPU per task (us) |\n";
    std::cout << "| --- | ---: | --- | ---: | ---: | ---: | ---: |\n";
    for (const auto& phase : phases) {
      std::vector<double> seconds, cpu;
      std::string runs;
      for (const auto& run : phase.runs) {
        seconds.push_back(run.seconds);
        cpu.push_back(run.broker_cpu * 1e6 / phase.count);
        runs += (runs.empty() ? "" : ", ") + fixed(run.seconds, 2);
      }
      const bool slow = phase.name.rfind("10 ms", 0) == 0;
      std::cout << "| " << phase.name << " | " << phase.count << " | " << runs << " | " << fixed(median(seconds), 2) << " | "
                << fixed(phase.count / median(seconds), 0) << " | " << (slow ? fixed(options.workers * 100.0, 0) : "-")
                << " | " << fixed(median(cpu), 1) << " |\n";
    }
    ::unsetenv("FANOUT_BROKER");
    // SIGTERM to every worker first, then wait for each: they drain (nothing runs) and stop together.
    for (const auto& worker : workers) ::kill(worker->pid(), SIGTERM);
    for (const auto& worker : workers) worker->wait(std::chrono::seconds(10));
    workers.clear();
    fanout_bench::reap_leftovers(std::chrono::seconds(2));
  } catch (const std::exception& error) {
    std::cerr << "fanout-bench-workers: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
