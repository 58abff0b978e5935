// tool_cluster.hpp: a real fanout-broker on a port of the OS's choosing and fanout-worker
// processes, for the tests of `fanout run --broker`. Every process is killed with its group and
// reaped at the end of the scope, whatever the test does.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "../process/spawned.hpp"
#include "../unit/test_support.hpp"

namespace fanout_test {

class ToolCluster {
 public:
  // One broker and `workers` workers with `executors` executors each (--allow-shell when
  // `allow_shell`).
  explicit ToolCluster(bool allow_shell, int executors = 2, int workers = 1) {
    start_broker();
    for (int w = 0; w < workers; ++w) add_worker(allow_shell, executors);
  }
  // A broker alone; add_worker() adds workers.
  ToolCluster() { start_broker(); }

  // A worker named `id` (HOST/PID when empty).
  Spawned& add_worker(bool allow_shell, int executors, const std::string& id = {}) {
    std::vector<std::string> worker{FANOUT_WORKER_PROGRAM, "--connect", endpoint_, "--processes", std::to_string(executors)};
    if (allow_shell) worker.emplace_back("--allow-shell");
    if (!id.empty()) {
      worker.emplace_back("--id");
      worker.push_back(id);
    }
    const auto log = dir_.path() / ("worker-" + std::to_string(workers_.size() + 1) + ".log");
    workers_.push_back(std::make_unique<Spawned>(worker, std::vector<std::string>{}, log));
    return *workers_.back();
  }

  std::string logs() const {
    std::string text = "--- broker\n" + broker_->log();
    for (std::size_t w = 0; w < workers_.size(); ++w) text += "--- worker " + std::to_string(w + 1) + "\n" + workers_[w]->log();
    return text;
  }
  std::string status() const {
    return run_capturing(std::string(FANOUT_TOOL_PROGRAM) + " status --broker " + endpoint_).text;
  }
  // Every executor has announced itself (a run that starts before may find fewer).
  bool ready(int executors) const {
    return eventually([&] { return status().find(std::to_string(executors) + " executor(s)") != std::string::npos; },
                      std::chrono::seconds(20));
  }
  // Nothing of any client left queued or running at the broker.
  bool idle() const {
    return eventually([&] { return status().find("queued tasks: 0, running: 0,") != std::string::npos; },
                      std::chrono::seconds(10));
  }

  const std::string& endpoint() const noexcept { return endpoint_; }

 private:
  void start_broker() {
    broker_ = std::make_unique<Spawned>(std::vector<std::string>{FANOUT_BROKER_PROGRAM, "--bind", "tcp://127.0.0.1:*"},
                                        std::vector<std::string>{}, dir_.path() / "broker.log");
    const auto listening = broker_->wait_for_line("listening ", std::chrono::seconds(20));
    REQUIRE(listening.has_value());
    endpoint_ = *listening;
  }

  TempDir dir_;
  std::string endpoint_;
  std::unique_ptr<Spawned> broker_;
  std::vector<std::unique_ptr<Spawned>> workers_;
};

}  // namespace fanout_test
