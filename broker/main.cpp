// fanout-broker: the standalone broker. Parses flags and environment, then runs the library.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <fanout/broker/broker.hpp>
#include <fanout/error.hpp>
#include <fanout/version.hpp>

#include "broker_endpoint.hpp"
#include "broker_queries.hpp"
#include "ops/log_format.hpp"

namespace {

// Exit codes, documented in --help.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitCannotListen = 3;
constexpr int kExitNoBroker = 4;

// Set by SIGTERM/SIGINT at any time, also before the broker exists or while it is being made.
std::atomic<bool> g_stop_requested{false};
std::atomic<fanout::broker::Broker*> g_running{nullptr};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<fanout::broker::Broker*>::is_always_lock_free,
              "used from a signal handler");

extern "C" void request_stop(int) {
  g_stop_requested = true;
  if (auto* broker = g_running.load()) broker->stop();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fanout-broker: distributes fanout batches to worker processes"};
  app.footer(
      "Examples:\n"
      "  fanout-broker --bind tcp://127.0.0.1:5555\n"
      "  fanout-broker --bind tcp://127.0.0.1:5555 --bind ipc:///run/fanout/broker.sock\n"
      "  fanout-broker --bind tcp://0.0.0.0:5555 --insecure      # other hosts may connect\n"
      "  fanout-broker --status tcp://127.0.0.1:5555             # workers, slots, queue depth\n"
      "  fanout-broker --bind tcp://127.0.0.1:5555 --journal /var/lib/fanout   # accepts defer()\n"
      "  fanout-broker --bind tcp://127.0.0.1:5555 --metrics 127.0.0.1:9464    # /metrics, /healthz, /readyz\n"
      "\n"
      "Every flag can also come from the environment: FANOUT_BIND (comma-separated),\n"
      "FANOUT_INSECURE=1, FANOUT_METRICS, FANOUT_HEARTBEAT_MS, FANOUT_LIVENESS_MS, FANOUT_LOG_LEVEL.\n"
      "\n"
      "Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failure, 2 bad usage (a bad --metrics address\n"
      "included), 3 cannot listen (a bad, busy or non-loopback endpoint or --metrics address without\n"
      "--insecure), 4 --status got no answer.");
  app.set_version_flag("--version", std::string("fanout-broker ") + fanout::kVersion);

  fanout::broker::Config config;
  std::string status_of;
  std::string log_level = "info";
  int heartbeat_ms = 500;
  int liveness_ms = 2000;
  app.add_option("--bind", config.endpoints, "Endpoint to listen on (repeatable)")
      ->envname("FANOUT_BIND")
      ->delimiter(',');
  app.add_flag("--insecure", config.insecure, "Allow listening (--bind, --metrics) on non-loopback addresses")
      ->envname("FANOUT_INSECURE");
  std::string metrics;
  app.add_option("--metrics", metrics,
                 "Serve /metrics (Prometheus), /healthz and /readyz over HTTP at HOST:PORT (port 0: any)")
      ->envname("FANOUT_METRICS");
  app.add_option("--heartbeat-ms", heartbeat_ms, "Heartbeat interval")->envname("FANOUT_HEARTBEAT_MS")->check(CLI::Range(10, 60000));
  app.add_option("--liveness-ms", liveness_ms, "A peer silent this long is dead")
      ->envname("FANOUT_LIVENESS_MS")
      ->check(CLI::Range(50, 600000));
  app.add_option("--max-attempts", config.max_attempts, "Fail a task that took down its worker this often")
      ->check(CLI::Range(1, 100));
  std::string journal;
  app.add_option("--journal", journal,
                 "Directory of the durable journal; deferred batches (Concurrency::defer) are accepted only with one")
      ->envname("FANOUT_JOURNAL");
  app.add_option("--deferred-attempts", config.deferred_attempts,
                 "Attempts of a deferred task before it is recorded as dead (see `fanout deferred`)")
      ->envname("FANOUT_DEFERRED_ATTEMPTS")
      ->check(CLI::Range(1, 1000));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->envname("FANOUT_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  std::string log_format = "text";
  app.add_option("--log-format", log_format, "text, or json: one JSON object per line (time, level, message, fields)")
      ->envname("FANOUT_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--status", status_of, "Print the status of the broker at this endpoint and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? kExitOk : kExitUsage;
  }
  // Logs go to stderr: stdout carries only what scripts read (the endpoints, the status).
  spdlog::set_default_logger(spdlog::stderr_color_mt("fanout-broker"));
  fanout::ops::use_log_format(*spdlog::default_logger(), fanout::ops::parse_log_format(log_format));
  spdlog::set_level(spdlog::level::from_str(log_level));
  config.heartbeat = std::chrono::milliseconds(heartbeat_ms);
  config.journal = journal;
  config.liveness = std::chrono::milliseconds(liveness_ms);

  zmq::context_t context;
  if (!status_of.empty()) {
    try {
      std::cout << fanout::link::status_report(context, status_of, std::chrono::seconds(3));
      return kExitOk;
    } catch (const fanout::Error& error) {
      std::cerr << "fanout-broker: " << error.what() << "\n";
      return kExitNoBroker;
    } catch (const zmq::error_t& error) {
      std::cerr << "fanout-broker: cannot ask '" << status_of << "' (tcp://host:port, ipc://path): " << error.what() << "\n";
      return kExitUsage;
    }
  }
  if (config.endpoints.empty()) config.endpoints.push_back("tcp://127.0.0.1:5555");

  // The operations endpoint first: a bad or busy address fails before the journal is read, and
  // probes get answers ("starting") while it is.
  std::optional<fanout::ops::HttpAddress> metrics_address;
  if (!metrics.empty()) {
    try {
      metrics_address = fanout::ops::parse_http_address(metrics);
    } catch (const fanout::Error& error) {
      std::cerr << "fanout-broker: " << error.what() << "\n";
      return kExitUsage;
    }
  }
  // Destroyed after the endpoint below, whose threads may read it until then.
  std::unique_ptr<fanout::broker::Broker> broker;
  std::optional<fanout::broker::BrokerEndpoint> operations;
  if (metrics_address) {
    try {
      fanout::ops::check_http_address_allowed(*metrics_address, config.insecure);
      operations.emplace(*metrics_address, std::max(std::chrono::milliseconds(5000), 4 * config.heartbeat));
    } catch (const fanout::Error& error) {
      std::cerr << "fanout-broker: " << error.what() << "\n";
      return kExitCannotListen;
    }
    spdlog::info("fanout-broker: serving metrics on {}/metrics (and /healthz, /readyz)", operations->url());
  }

  std::signal(SIGTERM, request_stop);
  std::signal(SIGINT, request_stop);
  try {
    broker = std::make_unique<fanout::broker::Broker>(config, context);
  } catch (const std::exception& error) {  // an endpoint it may not or cannot bind, a journal it cannot open
    std::cerr << "fanout-broker: " << error.what() << "\n";
    return kExitCannotListen;
  }
  g_running = broker.get();
  if (operations) operations->serve(broker.get());
  if (g_stop_requested) broker->stop();  // a signal that came while the broker was being made
  for (const auto& endpoint : broker->endpoints()) spdlog::info("fanout-broker: listening on {}", endpoint);
  // Tests and scripts read the bound endpoints (OS-chosen ports included) from stdout.
  for (const auto& endpoint : broker->endpoints()) std::printf("listening %s\n", endpoint.c_str());
  if (operations) std::printf("metrics %s\n", operations->url().c_str());
  std::fflush(stdout);
  try {
    broker->run();
  } catch (const std::exception& error) {
    if (operations) operations->serve(nullptr);
    spdlog::error("fanout-broker: {}", error.what());
    return kExitFailure;
  }
  if (operations) operations->serve(nullptr);
  g_running = nullptr;
  spdlog::info("fanout-broker: stopped");
  return kExitOk;
}
