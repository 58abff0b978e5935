// Chaos: a broker, three workers and a checking client, while executors and workers are killed,
// workers frozen and thawed, and the broker SIGKILLed and restarted (FANOUT_CHAOS_SECONDS, 60 by
// default). Faults cost time, never work: every result is correct and reaches the caller once,
// and no batch fails.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fanout/fanout.hpp>

#include "cluster.hpp"
#include "example_tasks.hpp"  // the workers load the library of these tasks

using namespace std::chrono_literals;

namespace {

long number_from_env(const char* name, long otherwise) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::strtol(value, nullptr, 10) : otherwise;
}

// What a process holds: resident memory (kB, VmRSS) and open descriptors; -1 once it is gone.
std::pair<long, long> footprint(pid_t pid) {
  long rss = -1;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::strtol(line.c_str() + 6, nullptr, 10);
  }
  std::error_code error;
  long descriptors = 0;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", error), end; !error && it != end;
       it.increment(error)) {
    ++descriptors;
  }
  return {rss, error || rss < 0 ? -1 : descriptors};
}

const std::vector<std::string> kTiming{"--heartbeat-ms", "200", "--liveness-ms", "1000"};

// A broker and three workers of two executors each, on short heartbeats so that faults are
// noticed within about a second. Workers that die are replaced by new ones this class owns.
class ChaosCluster {
 public:
  ChaosCluster() {
    for (int n = 0; n < 3; ++n) options_.workers.push_back(worker_options(n));
    cluster_ = std::make_unique<fanout_test::Cluster>(options_);
    for (std::size_t n = 0; n < 3; ++n) workers_.push_back(&cluster_->worker(n));
  }

  fanout_test::Cluster& cluster() { return *cluster_; }

  // One fault, chosen at random; returns what it was.
  std::string fault(std::mt19937& random) {
    const auto which = std::uniform_int_distribution<int>(0, 9)(random);
    const auto n = std::uniform_int_distribution<std::size_t>(0, workers_.size() - 1)(random);
    if (which < 4) {  // an executor dies (a crash inside a task, say); its supervisor replaces it
      const auto executors = fanout_test::children_of(workers_[n]->pid());
      if (executors.empty()) return "no executor to kill";
      ::kill(executors[std::uniform_int_distribution<std::size_t>(0, executors.size() - 1)(random)], SIGKILL);
      return "executor of worker " + std::to_string(n) + " killed";
    }
    if (which < 6) {  // a whole worker dies, and a new one starts
      workers_[n]->kill();
      replacements_.push_back(cluster_->start_worker(worker_options(static_cast<int>(n))));
      workers_[n] = replacements_.back().get();
      return "worker " + std::to_string(n) + " killed and replaced";
    }
    if (which < 8) {  // a worker freezes for a while (a stalled VM, a debugger)
      workers_[n]->signal_group(SIGSTOP);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(500, 2500)(random)));
      workers_[n]->signal_group(SIGCONT);
      return "worker " + std::to_string(n) + " frozen and thawed";
    }
    cluster_->broker().restart();  // SIGKILL, and a new broker on the same port
    return "broker killed and restarted";
  }

  // "broker rss/fds, worker n rss/fds (executors' rss summed)": one line of the soak's report.
  std::string footprints() {
    std::ostringstream line;
    const auto [rss, descriptors] = footprint(cluster_->broker().process().pid());
    line << "broker " << rss << " kB " << descriptors << " fds";
    for (std::size_t n = 0; n < workers_.size(); ++n) {
      const auto [worker_rss, worker_descriptors] = footprint(workers_[n]->pid());
      long executors_rss = 0;
      for (const pid_t executor : fanout_test::children_of(workers_[n]->pid())) executors_rss += std::max(0L, footprint(executor).first);
      line << " | worker " << n << " " << worker_rss << " kB " << worker_descriptors << " fds, executors "
           << executors_rss << " kB";
    }
    return line.str();
  }

  std::string logs() const {
    std::string text = cluster_->logs();
    for (const auto& worker : replacements_) text += "--- replacement worker\n" + worker->out();
    return text;
  }

 private:
  static fanout_test::WorkerOptions worker_options(int n) {
    return {.processes = 2, .load = {FANOUT_EXAMPLE_TASKS}, .arguments = kTiming, .name = "worker " + std::to_string(n)};
  }

  fanout_test::ClusterOptions options_{.broker_arguments = kTiming};
  std::unique_ptr<fanout_test::Cluster> cluster_;
  std::vector<fanout_test::Child*> workers_;  // the live worker of each of the three places
  std::vector<std::unique_ptr<fanout_test::Child>> replacements_;
};

}  // namespace

// FANOUT_CHAOS_SECONDS sets the length (60 s by default; the soak of docs/reliability.md runs
// 600 and more), FANOUT_CHAOS_REPORT names a file that gets the footprints of the broker and the
// workers every 30 s and the totals at the end.
TEST_CASE("under a minute of faults, every result is correct and reaches the caller once, and no batch fails") {
  ChaosCluster chaos;
  const auto client_scope = chaos.cluster().client_scope();
  const auto duration = std::chrono::seconds(number_from_env("FANOUT_CHAOS_SECONDS", 60));
  const char* report_path = std::getenv("FANOUT_CHAOS_REPORT");
  std::ofstream report;
  if (report_path != nullptr && *report_path != '\0') report.open(report_path);

  std::atomic<bool> done{false};
  std::atomic<std::size_t> batches{0};
  std::atomic<std::size_t> tasks{0};
  std::mutex problems_mutex;
  std::vector<std::string> problems;
  std::map<std::string, std::size_t> failures_by_kind;  // guarded by problems_mutex
  const auto problem = [&](std::string what) {
    const std::lock_guard lock(problems_mutex);
    if (problems.size() < 20) problems.push_back(std::move(what));
  };

  std::thread client([&] {
    std::mt19937 random(42);
    const auto driver = fanout::Concurrency::driver("process");
    while (!done) {
      // Quick squares and slow sleeps, mixed, with arguments that tell each slot apart.
      const auto base = static_cast<int>(batches.load() * 1000 % 40000);
      std::vector<fanout::Call<int>> calls;
      std::vector<int> expected;
      for (int i = 0; i < 40; ++i) {
        if (i % 4 == 0) {
          const int ms = std::uniform_int_distribution<int>(20, 150)(random);
          calls.push_back(example::sleep_ms(ms));
          expected.push_back(ms);
        } else {
          calls.push_back(example::square(base + i));
          expected.push_back((base + i) * (base + i));
        }
      }
      std::vector<int> seen(calls.size(), 0);
      try {
        const auto values = driver.run(calls, [&](std::size_t index, fanout::Outcome<int>&& outcome) {
          ++seen[index];
          if (outcome.ok()) return;
          {
            const std::lock_guard lock(problems_mutex);
            ++failures_by_kind[std::string(fanout::to_string(outcome.error().kind()))];
          }
          problem("slot " + std::to_string(index) + " failed: " + outcome.error().what());
        });
        for (std::size_t i = 0; i < values.size(); ++i) {
          if (values[i] != expected[i]) problem("slot " + std::to_string(i) + ": a wrong value");
          if (seen[i] != 1) problem("slot " + std::to_string(i) + " reached the caller " + std::to_string(seen[i]) + " times");
        }
      } catch (const std::exception& error) {
        problem(std::string("a batch failed: ") + error.what());
      }
      ++batches;
      tasks += calls.size();
    }
  });

  std::mt19937 random(7);
  std::vector<std::string> faults;
  const auto started = std::chrono::steady_clock::now();
  auto next_report = started;
  while (std::chrono::steady_clock::now() < started + duration) {
    // The chaos schedule itself: a fault every 0.8 to 2 s.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(800, 2000)(random)));
    faults.push_back(chaos.fault(random));
    if (report.is_open() && std::chrono::steady_clock::now() >= next_report) {
      const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started);
      report << seconds.count() << " s: " << tasks.load() << " tasks, " << faults.size() << " faults; "
             << chaos.footprints() << std::endl;
      next_report += 30s;
    }
  }
  done = true;
  client.join();

  std::map<std::string, std::size_t> faults_by_kind;
  for (auto fault : faults) {  // "worker 2 killed and replaced" counts as "worker N killed and replaced"
    for (char& c : fault) c = std::isdigit(static_cast<unsigned char>(c)) ? 'N' : c;
    ++faults_by_kind[fault];
  }
  std::ostringstream totals;
  totals << batches.load() << " batches (" << tasks.load() << " tasks) through " << faults.size() << " faults:";
  for (const auto& [kind, count] : faults_by_kind) totals << " " << count << " x " << kind << ";";
  totals << " failed slots:";
  for (const auto& [kind, count] : failures_by_kind) totals << " " << count << " " << kind << ";";
  if (failures_by_kind.empty()) totals << " none";
  MESSAGE(totals.str());
  if (report.is_open()) report << "end: " << totals.str() << "; " << chaos.footprints() << std::endl;

  std::string log_of_faults;
  for (const auto& fault : faults) log_of_faults += fault + "\n";
  INFO("faults:\n" << log_of_faults);
  INFO(chaos.logs());
  for (const auto& what : problems) FAIL_CHECK(what);
  CHECK(problems.empty());
  CHECK(batches.load() >= 5);
}
