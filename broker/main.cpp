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
#include "keys.hpp"
#include "limits.hpp"
#include "ops/log_format.hpp"
#include "system/descriptors.hpp"

namespace {

// Exit codes, documented in --help.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitCannotListen = 3;
constexpr int kExitNoBroker = 4;
// Below this limit of open descriptors the broker warns: 4096 carries about 2,000 workers of one
// executor (docs/benchmarks.md, many workers on one broker); the reserve is the broker's own
// (journal, metrics connections, ZeroMQ's internals).
constexpr std::size_t kDescriptorsWanted = 4096;
constexpr std::size_t kDescriptorsReserved = 64;

// Set by SIGTERM/SIGINT at any time, also before the broker exists or while it is being made.
std::atomic<bool> g_stop_requested{false};
std::atomic<fanout::broker::Broker*> g_running{nullptr};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<fanout::broker::Broker*>::is_always_lock_free,
              "used from a signal handler");

// A byte count such as 16M (limits.hpp, parse_frame_bytes), or why not.
std::string check_byte_count(const std::string& text) {
  return fanout::wire::parse_frame_bytes(text) ? std::string() : "a byte count from 64K to 4G, e.g. 16M";
}

std::size_t byte_count(const std::string& text) { return *fanout::wire::parse_frame_bytes(text); }

extern "C" void request_stop(int) {
  g_stop_requested = true;
  if (auto* broker = g_running.load()) broker->stop();
}

extern "C" void request_reload(int) {
  if (auto* broker = g_running.load()) broker->reload_keys();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fanout-broker: distributes fanout batches to worker processes"};
  app.footer(
      "Examples:\n"
      "  fanout-broker --bind tcp://127.0.0.1:5555\n"
      "  fanout-broker --bind tcp://127.0.0.1:5555 --bind ipc:///run/fanout/broker.sock\n"
      "  fanout keygen broker && mkdir clients workers admins    # then copy each peer's .pub in\n"
      "  fanout-broker --bind tcp://0.0.0.0:5555 --key broker.key --clients clients --workers workers --admins admins\n"
      "  kill -HUP $(pidof fanout-broker)                         # re-read the key directories\n"
      "  fanout-broker --bind tcp://0.0.0.0:5555 --insecure      # anyone may connect: trusted networks only\n"
      "  fanout-broker --status tcp://127.0.0.1:5555             # workers, slots, queue depth\n"
      "  fanout-broker --bind tcp://127.0.0.1:5555 --journal /var/lib/fanout   # accepts defer()\n"
      "  fanout-broker --bind tcp://127.0.0.1:5555 --metrics 127.0.0.1:9464    # /metrics, /healthz, /readyz\n"
      "  fanout-broker --bind tcp://127.0.0.1:5555 --max-frame-bytes 64M --max-client-tasks 100000\n"
      "\n"
      "Every flag can also come from the environment: FANOUT_BIND (comma-separated),\n"
      "FANOUT_INSECURE=1, FANOUT_EXPOSE_METRICS=1, FANOUT_METRICS, FANOUT_HEARTBEAT_MS, FANOUT_LIVENESS_MS, FANOUT_LOG_LEVEL,\n"
      "FANOUT_KEY, FANOUT_CLIENT_KEYS, FANOUT_WORKER_KEYS, FANOUT_ADMIN_KEYS,\n"
      "FANOUT_MAX_FRAME_BYTES (clients and workers read it too), FANOUT_MAX_CLIENT_TASKS,\n"
      "FANOUT_MAX_CLIENT_BYTES, FANOUT_MAX_TOTAL_TASKS, FANOUT_MAX_TOTAL_BYTES.\n"
      "\n"
      "Limits (docs/limits.md): a frame over --max-frame-bytes and a message whose lists claim more\n"
      "elements than its bytes hold are refused with an error; a window that would take its client\n"
      "past --max-client-tasks or --max-client-bytes held at the broker (or every client past the\n"
      "--max-total-* caps) is refused as busy. Both are counted in\n"
      "fanout_broker_messages_refused_total{reason=\"over_limit\"|\"busy\"}.\n"
      "\n"
      "Keys (docs/security.md): with --key every endpoint speaks CurveZMQ and only keys listed in the\n"
      "directories (*.pub) may connect, each with the roles of the directories it is in: clients submit,\n"
      "cancel and defer; workers serve; admins see the status and every deferred batch. SIGHUP re-reads\n"
      "the directories. A non-loopback --bind needs --key (or --insecure).\n"
      "\n"
      "Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failure, 2 bad usage (a bad --metrics address, a\n"
      "bad or too open --key file included), 3 cannot listen (a bad or busy endpoint, a non-loopback\n"
      "endpoint without --key or --insecure, a non-loopback --metrics address without --expose-metrics, an\n"
      "unreadable key directory), 4 --status got no answer.");
  app.set_version_flag("--version", std::string("fanout-broker ") + fanout::kVersion);

  fanout::broker::Config config;
  std::string status_of;
  std::string log_level = "info";
  int heartbeat_ms = 500;
  int liveness_ms = 2000;
  app.add_option("--bind", config.endpoints, "Endpoint to listen on (repeatable)")
      ->envname("FANOUT_BIND")
      ->delimiter(',');
  app.add_flag("--insecure", config.insecure,
               "Allow listening on non-loopback addresses without keys (--bind), or at all (--metrics)")
      ->envname("FANOUT_INSECURE");
  bool expose_metrics = false;
  app.add_flag("--expose-metrics", expose_metrics,
               "Allow --metrics on a non-loopback address (it has no authentication: a firewall or a "
               "NetworkPolicy keeps it to monitoring); unlike --insecure, nothing else")
      ->envname("FANOUT_EXPOSE_METRICS");
  std::string key_file;
  auto* key_option = app.add_option("--key", key_file, "The broker's secret key file (fanout keygen): CurveZMQ on every endpoint")
                         ->envname("FANOUT_KEY");
  std::string clients_dir;
  std::string workers_dir;
  std::string admins_dir;
  app.add_option("--clients", clients_dir, "Directory of the public keys (*.pub) of clients")
      ->envname("FANOUT_CLIENT_KEYS")
      ->needs(key_option);
  app.add_option("--workers", workers_dir, "Directory of the public keys (*.pub) of workers")
      ->envname("FANOUT_WORKER_KEYS")
      ->needs(key_option);
  app.add_option("--admins", admins_dir, "Directory of the public keys (*.pub) of admins (status, every deferred batch)")
      ->envname("FANOUT_ADMIN_KEYS")
      ->needs(key_option);
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
  long retry_delay_ms = config.deferred_retry_delay.count();
  long retry_max_delay_ms = config.deferred_retry_max_delay.count();
  app.add_option("--deferred-retry-delay-ms", retry_delay_ms,
                 "Wait before retrying a failed deferred task, doubled after each failure, half of it random (0: at once)")
      ->envname("FANOUT_DEFERRED_RETRY_DELAY_MS")
      ->check(CLI::Range(0L, 86400000L));
  app.add_option("--deferred-retry-max-delay-ms", retry_max_delay_ms, "The most a deferred task waits before a retry")
      ->envname("FANOUT_DEFERRED_RETRY_MAX_DELAY_MS")
      ->check(CLI::Range(0L, 86400000L));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->envname("FANOUT_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  std::string log_format = "text";
  app.add_option("--log-format", log_format, "text, or json: one JSON object per line (time, level, message, fields)")
      ->envname("FANOUT_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--status", status_of, "Print the status of the broker at this endpoint and exit");
  std::string max_frame = "16M";
  std::string max_client_bytes = "256M";
  std::string max_total_bytes = "1G";
  app.add_option("--max-frame-bytes", max_frame, "Refuse frames larger than this (K, M, G suffixes; default 16M)")
      ->envname("FANOUT_MAX_FRAME_BYTES")
      ->check(CLI::Validator(check_byte_count, "BYTES"));
  app.add_option("--max-client-tasks", config.max_client_tasks,
                 "Tasks one client may have at the broker, queued or running (default 1048576)")
      ->envname("FANOUT_MAX_CLIENT_TASKS")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 32));
  app.add_option("--max-client-bytes", max_client_bytes, "Bytes of windows one client may have at the broker (default 256M)")
      ->envname("FANOUT_MAX_CLIENT_BYTES")
      ->check(CLI::Validator(check_byte_count, "BYTES"));
  app.add_option("--max-total-tasks", config.max_total_tasks, "Tasks of every client together (default 4194304)")
      ->envname("FANOUT_MAX_TOTAL_TASKS")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 34));
  app.add_option("--max-total-bytes", max_total_bytes, "Bytes of windows of every client together (default 1G)")
      ->envname("FANOUT_MAX_TOTAL_BYTES")
      ->check(CLI::Validator(check_byte_count, "BYTES"));
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
  config.deferred_retry_delay = std::chrono::milliseconds(retry_delay_ms);
  config.deferred_retry_max_delay = std::chrono::milliseconds(retry_max_delay_ms);
  config.trust.clients = clients_dir;
  config.trust.workers = workers_dir;
  config.trust.admins = admins_dir;
  if (!key_file.empty()) {
    if (config.trust.clients.empty() || config.trust.workers.empty()) {
      std::cerr << "fanout-broker: --key needs --clients DIR and --workers DIR (directories of *.pub keys)\n";
      return kExitUsage;
    }
    try {
      const auto pair = fanout::wire::read_secret_key(key_file);
      config.trust.secret_key = pair.secret_key;
      config.trust.public_key = pair.public_key;
    } catch (const fanout::Error& error) {
      std::cerr << "fanout-broker: " << error.what() << "\n";
      return kExitUsage;
    }
  }
  config.max_frame_bytes = byte_count(max_frame);
  config.max_client_bytes = byte_count(max_client_bytes);
  config.max_total_bytes = byte_count(max_total_bytes);

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
  // Where the broker may listen is checked before the operations endpoint listens anywhere: a
  // broker refused a keyless 0.0.0.0 must not have served metrics there first.
  try {
    for (const auto& endpoint : config.endpoints) fanout::broker::check_endpoint_allowed(endpoint, config.insecure, config.trust.enabled());
  } catch (const fanout::Error& error) {
    std::cerr << "fanout-broker: " << error.what() << "\n";
    return kExitCannotListen;
  }
  // Destroyed after the endpoint below, whose threads may read it until then.
  std::unique_ptr<fanout::broker::Broker> broker;
  std::optional<fanout::broker::BrokerEndpoint> operations;
  if (metrics_address) {
    try {
      fanout::ops::check_http_address_allowed(*metrics_address, expose_metrics || config.insecure);
      operations.emplace(*metrics_address, std::max(std::chrono::milliseconds(5000), 4 * config.heartbeat));
    } catch (const fanout::Error& error) {
      std::cerr << "fanout-broker: " << error.what() << "\n";
      return kExitCannotListen;
    }
    spdlog::info("fanout-broker: serving metrics on {}/metrics (and /healthz, /readyz)", operations->url());
  }

  // Every connected peer holds a descriptor here (a worker two: its supervisor and one per
  // executor); past the limit ZeroMQ stops accepting connections and nothing says so.
  const std::size_t descriptors = fanout::sys::raise_descriptor_limit();
  if (descriptors < kDescriptorsWanted) {
    spdlog::warn("fanout-broker: only {} open descriptors allowed (RLIMIT_NOFILE, hard limit): room for about {} "
                 "connections (a worker holds one plus one per executor, a client one), and past that "
                 "connections wait unanswered; raise the hard limit (systemd LimitNOFILE=, ulimit -Hn, the "
                 "container runtime's nofile) to at least {}",
                 descriptors, descriptors > kDescriptorsReserved ? descriptors - kDescriptorsReserved : 0, kDescriptorsWanted);
  } else {
    spdlog::info("fanout-broker: up to {} open descriptors (RLIMIT_NOFILE)", descriptors);
  }

  std::signal(SIGTERM, request_stop);
  std::signal(SIGINT, request_stop);
  std::signal(SIGHUP, request_reload);  // before the broker exists: a SIGHUP then must not end it
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
