// fanout-bench-shell: workload W5 of /work/shared/anchors.md, 1,000 runs of `true`, 2 at a time,
// commands per second, for every way fanout runs shell commands and for the tools people use
// instead, all measured in one run (rounds interleaved, median of the rounds):
//
//   posix_spawn        bare posix_spawn(/bin/true) + waitpid, 2 at a time: the ceiling
//   Process::pool      fanout::Process::pool, 1,000 shell lines "true", concurrency(2)
//   fanout run         `fanout run -j2 true ::: 1 ... 1000`
//   fanout run broker  the same with --broker, through fanout-broker and `fanout-worker --allow-shell
//                      --processes 2` on loopback
//   GNU parallel       `parallel -j2 true ::: 1 ... 1000` (when installed: apt-get install parallel)
//   xargs -P2          `xargs -P2 -n1 true` over the same 1,000 arguments
//
// Goal (issue 4): every fanout row at least 85% of the posix_spawn rate of the same run.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include <fanout/process.hpp>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kGoalShare = 0.85;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// `count` runs of /bin/true, `parallel` at a time, with nothing but posix_spawn and waitpid.
double bare_spawn(int count, int parallel) {
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  const auto start = Clock::now();
  int started = 0;
  int running = 0;
  while (started < count || running > 0) {
    while (running < parallel && started < count) {
      pid_t pid = 0;
      if (::posix_spawn(&pid, argv[0], nullptr, nullptr, argv, environ) != 0) throw std::runtime_error("posix_spawn");
      ++started;
      ++running;
    }
    int status = 0;
    if (::waitpid(-1, &status, 0) > 0) --running;
  }
  return count / seconds_since(start);
}

double process_pool(int count, int parallel, const std::string& broker) {
  auto pool = fanout::Process::pool([&](fanout::Pool& p) {
    for (int i = 0; i < count; ++i) p.command("true");
  });
  pool.concurrency(static_cast<std::size_t>(parallel));
  if (!broker.empty()) pool.broker(broker);
  const auto start = Clock::now();
  const auto results = pool.wait();
  const double rate = count / seconds_since(start);
  if (!results.successful()) throw std::runtime_error("a `true` failed in Process::pool: " + results[0].error_output());
  return rate;
}

// Runs `command` through /bin/sh and returns commands per second; throws when it fails.
double shell_rate(const std::string& command, int count) {
  const auto start = Clock::now();
  const int status = std::system((command + " >/dev/null").c_str());
  const double rate = count / seconds_since(start);
  if (status != 0) throw std::runtime_error("failed (status " + std::to_string(status) + "): " + command);
  return rate;
}

bool have_program(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

// A child process started for the remote rows; killed and reaped when it goes.
class Server {
 public:
  Server(std::vector<std::string> argv, const std::filesystem::path& log) {
    std::vector<char*> args;
    for (auto& word : argv) args.push_back(word.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawnattr_t attributes;
    ::posix_spawnattr_init(&attributes);
    ::posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    ::posix_spawnattr_setpgroup(&attributes, 0);
    const int error = ::posix_spawn(&pid_, args[0], &actions, &attributes, args.data(), environ);
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attributes);
    if (error != 0) throw std::runtime_error("cannot start " + argv[0]);
  }
  ~Server() {
    ::kill(-pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

 private:
  pid_t pid_ = -1;
};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A broker and one shell worker with `executors` executors, on loopback tcp.
struct Cluster {
  explicit Cluster(int executors) {
    char pattern[] = "/tmp/fanout-bench-shell-XXXXXX";
    dir = ::mkdtemp(pattern);
    broker.emplace(std::vector<std::string>{FANOUT_BROKER_PROGRAM, "--bind", "tcp://127.0.0.1:*"}, dir / "broker.log");
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (endpoint.empty() && Clock::now() < deadline) {
      std::istringstream lines(read_file(dir / "broker.log"));
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind("listening ", 0) == 0) endpoint = line.substr(10);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (endpoint.empty()) throw std::runtime_error("the broker did not start: " + read_file(dir / "broker.log"));
    worker.emplace(std::vector<std::string>{FANOUT_WORKER_PROGRAM, "--connect", endpoint, "--processes",
                                            std::to_string(executors), "--allow-shell"},
                   dir / "worker.log");
    // Warm: every executor has answered a command.
    for (int attempt = 0; attempt < 200; ++attempt) {
      if (process_pool(executors * 4, executors, endpoint) > 0) break;
    }
  }
  ~Cluster() {
    worker.reset();
    broker.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  std::filesystem::path dir;
  std::string endpoint;
  std::optional<Server> broker;
  std::optional<Server> worker;
};

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fanout-bench-shell: W5, runs of `true` 2 at a time, in commands per second"};
  int count = 1000;
  int parallel = 2;
  int rounds = 3;
  bool quick = false;
  app.add_option("--commands", count, "Commands per measurement")->check(CLI::Range(10, 1000000));
  app.add_option("-j,--parallel", parallel, "How many at a time")->check(CLI::Range(1, 256));
  app.add_option("--rounds", rounds, "Rounds; each figure is the median")->check(CLI::Range(1, 50));
  app.add_flag("--quick", quick, "100 commands, one round (a smoke test)");
  app.footer("Example:\n  fanout-bench-shell            # 1,000 commands, 3 rounds (about 20 s on 2 cores)\n"
             "Exit codes: 0 figures printed, 1 a measurement failed.");
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    count = 100;
    rounds = 1;
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);

  std::string arguments;
  for (int i = 1; i <= count; ++i) arguments += " " + std::to_string(i);
  const std::string jobs = std::to_string(parallel);
  const std::string tool = FANOUT_TOOL_PROGRAM;
  const bool parallel_installed = have_program("parallel");

  try {
    Cluster cluster(parallel);
    using Measure = std::function<double()>;
    std::vector<std::pair<std::string, Measure>> rows{
        {"posix_spawn + waitpid (ceiling)", [&] { return bare_spawn(count, parallel); }},
        {"fanout::Process::pool", [&] { return process_pool(count, parallel, ""); }},
        {"fanout run", [&] { return shell_rate(tool + " run -j" + jobs + " true :::" + arguments, count); }},
        {"fanout::Process::pool, remote", [&] { return process_pool(count, parallel, cluster.endpoint); }},
        {"fanout run --broker",
         [&] { return shell_rate(tool + " run -j" + jobs + " --broker " + cluster.endpoint + " true :::" + arguments, count); }},
        {"xargs -P" + jobs, [&] { return shell_rate("echo" + arguments + " | xargs -P" + jobs + " -n1 true", count); }},
    };
    if (parallel_installed) {
      rows.emplace_back("GNU parallel -j" + jobs,
                        [&] { return shell_rate("parallel -j" + jobs + " true :::" + arguments, count); });
    }
    std::map<std::string, std::vector<double>> figures;
    bool failed = false;
    for (int round = 0; round < rounds; ++round) {
      std::cerr << "fanout-bench-shell: round " << round + 1 << "/" << rounds << "\n";
      for (const auto& [name, measure] : rows) {
        try {
          figures[name].push_back(measure());
        } catch (const std::exception& error) {
          std::cerr << "fanout-bench-shell: " << name << ": " << error.what() << "\n";
          failed = true;
        }
      }
    }
    const double ceiling = median(figures[rows[0].first]);
    std::printf("W5: %d runs of `true`, %d at a time; commands/s, median of %d round(s)\n\n", count, parallel, rounds);
    std::printf("| system | commands/s | share of posix_spawn |\n| --- | --- | --- |\n");
    for (const auto& [name, measure] : rows) {
      const double rate = median(figures[name]);
      std::printf("| %s | %.0f | %.0f%% |\n", name.c_str(), rate, 100 * rate / ceiling);
    }
    if (!parallel_installed) std::printf("\n(GNU parallel is not installed: apt-get install parallel)\n");
    std::printf("\nGoal: every fanout row at least %.0f%% of posix_spawn:\n", kGoalShare * 100);
    for (const auto& [name, measure] : rows) {
      if (name.rfind("fanout", 0) != 0) continue;
      const double share = median(figures[name]) / ceiling;
      std::printf("- %s: %.0f%% %s\n", name.c_str(), share * 100, share >= kGoalShare ? "met" : "MISSED");
    }
    return failed ? 1 : 0;
  } catch (const std::exception& error) {
    std::cerr << "fanout-bench-shell: " << error.what() << "\n";
    return 1;
  }
}
