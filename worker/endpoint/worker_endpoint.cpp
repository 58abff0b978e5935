#include "worker_endpoint.hpp"

#include "ops/metrics_text.hpp"

namespace fanout::worker {

WorkerEndpoint::WorkerEndpoint(const ops::HttpAddress& address, const Status& status,
                               std::chrono::milliseconds stall_limit)
    : status_(status),
      stall_limit_(stall_limit),
      http_(address, ops::HttpHandlers{[this] { return metrics(); }, [this] { return health(); },
                                       [this] { return ready(); },
                                       {}}) {}

ops::Probe WorkerEndpoint::health() const {
  const auto since = status_.pulse.since_last();
  if (!since) return {true, "starting"};
  if (*since > stall_limit_) {
    return {false, "the supervisor's loop has not turned for " +
                       std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(*since).count()) + " ms"};
  }
  return {true, "ok"};
}

ops::Probe WorkerEndpoint::ready() const {
  if (status_.registered.load()) return {true, "registered with the broker"};
  return {false, "not registered with a broker (connecting, or the broker is silent)"};
}

std::string WorkerEndpoint::metrics() const {
  ops::MetricsText text;
  text.gauge("fanout_worker_executors", "Executor processes alive", status_.executors.load());
  text.gauge("fanout_worker_tasks_running", "Executors running a task now", status_.tasks_running.load());
  text.counter("fanout_worker_executor_restarts_total", "Executors replaced after they died or were stopped",
               static_cast<double>(status_.executor_restarts.load()));
  text.gauge("fanout_worker_registered", "1 while the broker answers (the worker is registered), else 0",
             status_.registered.load() ? 1 : 0);
  return text.text();
}

}  // namespace fanout::worker
