// worker_endpoint.hpp: fanout-worker's operations endpoint (`--metrics ADDR`): /metrics in
// Prometheus text, /healthz (the supervisor's loop turns) and /readyz (the worker is registered
// with its broker: the broker answered within the liveness period).
//
// Owns the HTTP endpoint (ops::HttpEndpoint: its own threads). Reads only the worker::Status the
// supervisor writes (atomics), which the main owns and which outlives this endpoint. The main
// makes it from worker::Config::on_setup, so that its threads have the supervisor's signals
// blocked and executors never keep its socket.
#pragma once

#include <chrono>
#include <string>

#include <fanout/worker/worker.hpp>

#include "ops/http_endpoint.hpp"

namespace fanout::worker {

class WorkerEndpoint {
 public:
  // Binds `address` (throws fanout::Error as ops::HttpEndpoint does). The loop counts as stalled
  // when it has not turned for `stall_limit`.
  WorkerEndpoint(const ops::HttpAddress& address, const Status& status, std::chrono::milliseconds stall_limit);

  const std::string& url() const noexcept { return http_.url(); }

 private:
  ops::Probe health() const;
  ops::Probe ready() const;
  std::string metrics() const;

  const Status& status_;
  std::chrono::milliseconds stall_limit_;
  ops::HttpEndpoint http_;  // last: its threads use the members above
};

}  // namespace fanout::worker
