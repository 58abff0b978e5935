// rows.cpp
#include "rows.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>

namespace fanout_bench {

namespace {

// Which process ran a task: tells wait_for_executors when every executor of a pool is up. At
// namespace scope, as every task of the benchmarks, so that the workers (this program) have it.
const fanout::Task executor_pid{"bench.pid", [] { return static_cast<std::int64_t>(::getpid()); }};

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

}  // namespace

nlohmann::json to_json(const Row& row) {
  nlohmann::json object;
  object["system"] = row.system;
  for (const auto& [key, value] : row.figures) object[key] = value;
  return object;
}

Row from_json(const nlohmann::json& object) {
  Row row{object.at("system").get<std::string>(), {}};
  for (const auto& [key, value] : object.items()) {
    if (value.is_number()) row.figures[key] = value.get<double>();
  }
  return row;
}

void check_exit(int status, const std::string& what) {
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  if (WIFEXITED(status) && WEXITSTATUS(status) == kExitWrongResult) {
    throw WrongResult(what + " reported a wrong result (see above)");
  }
  throw std::runtime_error(what + " " + describe_status(status));
}

Row measure_in_child(const std::vector<std::string>& arguments, const std::vector<std::string>& environment,
                     std::chrono::seconds limit, const std::string& what) {
  Child child(Spawn{self_path(), arguments, environment, Spawn::Output::pipe});
  const auto deadline = Clock::now() + limit;
  std::string line;
  do {
    line = child.read_line(deadline, "the figures of " + what);
  } while (line.empty() || line.front() != '{');
  check_exit(child.wait(std::chrono::seconds(20)), "the " + what + " row's process");
  return from_json(nlohmann::json::parse(line));
}

bool is_process_row(std::string_view row) { return row.rfind("process-", 0) == 0; }

fanout::Driver driver_for(std::string_view row) {
  if (!is_process_row(row)) return fanout::Concurrency::driver(row);
  const char* broker = std::getenv("FANOUT_BROKER");
  const bool remote = broker != nullptr && *broker != '\0';
  if (remote != (row == "process-remote")) {
    throw std::runtime_error(std::string(row) + " needs FANOUT_BROKER " + (remote ? "unset" : "set") +
                             " (the benchmark sets it for the rows it measures in child processes)");
  }
  return fanout::Concurrency::driver("process");
}

void wait_for_executors(const fanout::Driver& driver, std::size_t expected, const std::string& row) {
  const auto give_up = Clock::now() + std::chrono::seconds(20);
  const std::vector<fanout::Call<std::int64_t>> calls(2 * expected, executor_pid());
  std::set<std::int64_t> seen;
  while (seen.size() < expected) {
    if (Clock::now() > give_up) {
      throw std::runtime_error(row + ": only " + std::to_string(seen.size()) + " of " + std::to_string(expected) +
                               " executors answered within 20 s");
    }
    for (const auto pid : driver.run(calls)) seen.insert(pid);
    if (seen.size() < expected) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

RemoteCluster::RemoteCluster(int processes)
    : broker_(FANOUT_BROKER_PROGRAM), endpoint_(broker_.endpoint()) {
  worker_.emplace(Spawn{self_path(),
                        {},
                        {"FANOUT_WORKER=" + endpoint_, "FANOUT_PROCESSES=" + std::to_string(processes),
                         "FANOUT_LOG_LEVEL=warn"},
                        Spawn::Output::null});
}

void RemoteCluster::stop() {
  // SIGTERM drains the worker (it exits 0); the broker exits 0 on SIGTERM too.
  check_exit(worker_->stop(SIGTERM, std::chrono::seconds(10)), "the remote worker");
  check_exit(broker_.child().stop(SIGTERM, std::chrono::seconds(10)), "fanout-broker");
}

std::vector<Row> measure_peers(const std::vector<std::string>& arguments) {
  std::vector<std::string> command{std::string(FANOUT_BENCH_DIR) + "/peers.py", "--json"};
  command.insert(command.end(), arguments.begin(), arguments.end());
  Child python(Spawn{kPython, command, {}, Spawn::Output::pipe});
  const auto deadline = Clock::now() + std::chrono::minutes(10);
  std::vector<Row> rows;
  while (const auto line = python.next_line(deadline, "the Python peers' figures")) {
    if (!line->empty() && line->front() == '{') rows.push_back(from_json(nlohmann::json::parse(*line)));
  }
  check_exit(python.wait(std::chrono::seconds(10)), std::string(kPython) + " bench/peers.py");
  return rows;
}

std::vector<Row> median_of_runs(const std::vector<std::vector<Row>>& runs) {
  std::vector<Row> rows;
  for (std::size_t i = 0; i < runs.front().size(); ++i) {
    Row row{runs.front()[i].system, {}};
    std::map<std::string, std::vector<double>> values;
    for (const auto& run : runs) {
      for (const auto& [key, value] : run.at(i).figures) values[key].push_back(value);
    }
    for (auto& [key, list] : values) {
      row.figures[key] = ends_with(key, "_peak") ? *std::max_element(list.begin(), list.end()) : median(std::move(list));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace fanout_bench
