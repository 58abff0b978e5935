// cluster.cpp
#include "cluster.hpp"

#include <optional>
#include <string>
#include <utility>

#include <doctest/doctest.h>

namespace fanout_test {

namespace {

// How long a cluster's processes may take to start and connect. Generous: the suite runs two tests
// at once on two cores, under sanitizers too, and a cluster of ASan processes starting beside a
// test that runs its own pool (process_local_test) once took longer than 20 s on a CI machine.
// A cluster that connects returns as soon as it has.
constexpr auto kStartLimit = std::chrono::seconds(60);
constexpr const char* kLoopback = "tcp://127.0.0.1:*";

// The cluster's processes see the test's environment minus FANOUT_*: only what the cluster says.
ChildOptions cluster_child(std::vector<std::string> env = {}) {
  return ChildOptions{.env = std::move(env), .drop_env = {"FANOUT_"}, .merge_output = true};
}

}  // namespace

const std::string& broker_program() {
  static const std::string path = FANOUT_BROKER_PROGRAM;
  return path;
}

const std::string& worker_program() {
  static const std::string path = FANOUT_WORKER_PROGRAM;
  return path;
}

BrokerProcess::BrokerProcess(std::vector<std::string> arguments) : arguments_(std::move(arguments)) {
  start(kLoopback);
}

void BrokerProcess::start(const std::string& bind) {
  std::vector<std::string> command{broker_program(), "--bind", bind};
  command.insert(command.end(), arguments_.begin(), arguments_.end());
  process_ = std::make_unique<Child>(std::move(command), cluster_child());
  const auto listening = process_->wait_for_line("listening ", kStartLimit);
  REQUIRE_MESSAGE(listening.has_value(), "fanout-broker did not say where it listens; its log:\n" << log());
  endpoint_ = *listening;
}

void BrokerProcess::restart() {
  const std::string endpoint = endpoint_;
  kill();
  start(endpoint);
  REQUIRE(endpoint_ == endpoint);
}

Cluster::Cluster(ClusterOptions options) : broker_(std::move(options.broker_arguments)) {
  std::size_t executors = 0;
  for (const auto& worker : options.workers) {
    workers_.push_back(Worker{worker.name, start_worker(worker)});
    executors += worker.processes;
  }
  const std::size_t workers = workers_.size();
  std::optional<StatusCounts> last;  // what the broker said last: which of them were missing
  const bool ready = wait_for(
                         [&](const StatusCounts& counts) {
                           last = counts;
                           return counts.workers == workers && counts.executors == executors;
                         },
                         kStartLimit)
                         .has_value();
  REQUIRE_MESSAGE(ready, "the workers did not all connect within " << kStartLimit.count() << " s: "
                             << (last ? std::to_string(last->workers) + " of " + std::to_string(workers) + " workers and " +
                                            std::to_string(last->executors) + " of " + std::to_string(executors) +
                                            " executors when the broker last answered"
                                      : std::string("the broker never answered a status request"))
                             << "; logs:\n" << logs());
}

Cluster::~Cluster() = default;

std::unique_ptr<Child> Cluster::start_worker(const WorkerOptions& options) const {
  if (!options.program.empty()) {
    return std::make_unique<Child>(
        std::vector<std::string>{options.program},
        cluster_child({"FANOUT_WORKER=" + endpoint(), "FANOUT_PROCESSES=" + std::to_string(options.processes)}));
  }
  std::vector<std::string> command{worker_program(), "--connect", endpoint(), "--processes",
                                   std::to_string(options.processes)};
  if (options.allow_shell) command.emplace_back("--allow-shell");
  for (const auto& library : options.load) {
    command.emplace_back("--load");
    command.push_back(library);
  }
  command.insert(command.end(), options.arguments.begin(), options.arguments.end());
  return std::make_unique<Child>(std::move(command), cluster_child());
}

std::optional<StatusCounts> Cluster::status() {
  return fanout::link::query_counts(context_, endpoint(), std::chrono::seconds(5));
}

std::optional<StatusCounts> Cluster::wait_for(const std::function<bool(const StatusCounts&)>& condition,
                                              std::chrono::milliseconds limit) {
  return wait_for_status(context_, endpoint(), condition, limit);
}

bool Cluster::wait_for_workers(std::size_t count, std::chrono::milliseconds limit) {
  return wait_for([&](const StatusCounts& counts) { return counts.workers == count; }, limit).has_value();
}

bool Cluster::wait_for_executors(std::size_t count, std::chrono::milliseconds limit) {
  return wait_for([&](const StatusCounts& counts) { return counts.executors == count; }, limit).has_value();
}

bool Cluster::wait_idle(std::chrono::milliseconds limit) {
  return wait_for([](const StatusCounts& counts) { return counts.queued == 0 && counts.running == 0; }, limit)
      .has_value();
}

std::string Cluster::logs() const {
  std::string text = "--- broker\n" + broker_.log();
  for (const auto& worker : workers_) text += "--- " + worker.name + "\n" + worker.process->out();
  return text;
}

}  // namespace fanout_test
