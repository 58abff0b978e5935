// broker_endpoint.hpp: fanout-broker's operations endpoint (`--metrics ADDR`): /metrics in
// Prometheus text, /healthz and /readyz, and the status page (`/`, status_page.hpp) with its
// figures (/status.json, status_json.hpp), for the Broker the main runs.
//
// Owns the HTTP endpoint (ops::HttpEndpoint: its own threads). It is started before the broker
// exists, so that a bad or busy address fails before the journal is read, and it answers while the
// broker is being made (/healthz "starting", /readyz 503): the main hands it the broker with
// serve() once made, and takes it back with serve(nullptr) before destroying it.
//
// Promises: every answer is built from what the broker publishes for any thread (its metrics
// snapshot, refreshed every heartbeat; its loop's pulse; its readiness), never from the loop's
// structures, so a scrape never waits on the loop and a stuck loop is reported, not waited for.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include <fanout/broker/broker.hpp>
#include <fanout/broker/metrics.hpp>

#include "ops/http_endpoint.hpp"

namespace fanout::broker {

class BrokerEndpoint {
 public:
  // Binds `address` (throws fanout::Error as ops::HttpEndpoint does). The loop counts as stalled
  // when it has not turned for `stall_limit`.
  BrokerEndpoint(const ops::HttpAddress& address, std::chrono::milliseconds stall_limit);

  // The broker to report on from now on; nullptr: none (being made, or going away).
  void serve(const Broker* broker) noexcept {
    if (broker != nullptr) served_ = true;
    broker_.store(broker, std::memory_order_release);
  }

  const std::string& url() const noexcept { return http_.url(); }

 private:
  ops::Probe health() const;
  ops::Probe ready() const;
  std::string metrics() const;
  std::string status() const;

  std::atomic<const Broker*> broker_{nullptr};
  std::atomic<bool> served_{false};  // a broker was handed over once: nullptr now means stopping
  std::chrono::milliseconds stall_limit_;
  ops::HttpEndpoint http_;  // last: its threads use the members above
};

// The Prometheus text of a broker's snapshot (fanout_build_info included).
std::string metrics_text(const MetricsSnapshot& snapshot);

}  // namespace fanout::broker
