// fanout-worker: a worker process for a fanout broker. Parses flags and environment into a
// worker::Config and runs the library; everything else lives in fanout::worker.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <fanout/version.hpp>
#include <fanout/worker/worker.hpp>

#include "keys.hpp"
#include "limits.hpp"
#include "ops/log_format.hpp"
#include "worker_endpoint.hpp"

namespace {

namespace worker = fanout::worker;

// FANOUT_LOAD holds paths separated by ':' like PATH (a library path rarely contains one).
std::vector<std::string> split_paths(const char* list) {
  std::vector<std::string> paths;
  std::string current;
  for (const char* c = list; *c != '\0'; ++c) {
    if (*c == ':') {
      if (!current.empty()) paths.push_back(current);
      current.clear();
    } else {
      current += *c;
    }
  }
  if (!current.empty()) paths.push_back(current);
  return paths;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fanout-worker: runs fanout tasks for a broker, in N executor processes it supervises"};
  app.footer(
      "Examples:\n"
      "  fanout-worker --connect tcp://127.0.0.1:5555\n"
      "  fanout-worker --connect tcp://10.0.0.5:5555 --processes 8 --load ./libmytasks.so\n"
      "  FANOUT_BROKER=ipc:///run/fanout/broker.sock FANOUT_LOAD=/opt/a.so:/opt/b.so fanout-worker\n"
      "  fanout-worker --connect tcp://127.0.0.1:5555 --allow-shell   # also accept shell commands\n"
      "  fanout-worker --connect tcp://127.0.0.1:5555 --allow-shell --pass-env 'AWS_*'   # ...which see AWS_*\n"
      "  fanout-worker --connect tcp://127.0.0.1:5555 --metrics 127.0.0.1:9465   # /metrics, /healthz, /readyz\n"
      "  fanout-worker --connect tcp://10.0.0.5:5555 --key worker.key --broker-key broker.pub   # a broker with keys\n"
      "\n"
      "Environment equivalents: FANOUT_BROKER, FANOUT_PROCESSES, FANOUT_MAX_PROCESSES, FANOUT_SLOTS, FANOUT_LOAD\n"
      "(colon-separated), FANOUT_ALLOW_SHELL=1, FANOUT_WORKER_ID, FANOUT_HEARTBEAT_MS,\n"
      "FANOUT_LIVENESS_MS, FANOUT_DRAIN_TIMEOUT, FANOUT_METRICS, FANOUT_EXPOSE_METRICS=1, FANOUT_LOG_LEVEL,\n"
      "FANOUT_PASS_ENV (comma-separated), FANOUT_KEY, FANOUT_BROKER_KEY, FANOUT_MAX_FRAME_BYTES.\n"
      "\n"
      "Keys (docs/security.md): a broker started with --key lets in only listed keys; give this worker\n"
      "its secret key (fanout keygen; its .pub in the broker's --workers directory) and the broker's\n"
      "public key. A secret key file that group or others may read is refused.\n"
      "\n"
      "SIGTERM or SIGINT drains: no new work, tasks not started go back to the broker at once,\n"
      "running tasks get --drain-timeout (30 s) to finish and send their results, what still runs\n"
      "then is stopped and runs again elsewhere, and the worker exits 0. A second signal stops at once.\n"
      "\n"
      "Exit codes: 0 stopped after a clean drain, 1 failure (or a forced stop; a busy --metrics\n"
      "port included), 2 bad usage (a bad or non-loopback --metrics address without --expose-metrics\n"
      "included; a bad or too open key file), 3 a task library could not be loaded.");
  app.set_version_flag("--version", std::string("fanout-worker ") + fanout::kVersion);

  worker::Config config;
  std::vector<std::string> load;
  std::string log_level = "info";
  int heartbeat_ms = static_cast<int>(config.heartbeat.count());
  int liveness_ms = static_cast<int>(config.liveness.count());
  app.add_option("--connect,-c", config.broker, "Broker endpoint: tcp://HOST:PORT or ipc://PATH")
      ->envname("FANOUT_BROKER")
      ->required();
  app.add_option("--processes,-p", config.processes, "Executor processes (default: one per core)")
      ->envname("FANOUT_PROCESSES");
  app.add_option("--max-processes", config.max_processes,
                 "Grow up to this many executors while tasks wait on slow ones (default: --processes, fixed)")
      ->envname("FANOUT_MAX_PROCESSES");
  app.add_option("--slots", config.slots_per_executor, "Tasks the broker may send each executor ahead")
      ->envname("FANOUT_SLOTS")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--load,-l", load, "Task library (.so) to load before starting executors (repeatable)");
  app.add_flag("--allow-shell", config.allow_shell, "Accept shell command tasks (fanout::Process pools)")
      ->envname("FANOUT_ALLOW_SHELL");
  app.add_option("--pass-env", config.pass_env,
                 "Give shell commands this variable of the worker's environment too (a name or a glob "
                 "such as 'AWS_*'; repeatable). Without it they get only PATH, HOME, USER, LOGNAME, SHELL, "
                 "the locale, TZ, TMPDIR and what the client sends")
      ->envname("FANOUT_PASS_ENV")
      ->delimiter(',');
  std::string key_file;
  std::string broker_key_file;
  app.add_option("--key", key_file, "This worker's secret key file, for a broker with keys (fanout keygen)")
      ->envname("FANOUT_KEY");
  app.add_option("--broker-key", broker_key_file, "The broker's public key file")->envname("FANOUT_BROKER_KEY");
  app.add_option("--id", config.worker_id, "Worker id (default: HOST/PID)")->envname("FANOUT_WORKER_ID");
  app.add_option("--heartbeat-ms", heartbeat_ms, "Heartbeat interval")
      ->envname("FANOUT_HEARTBEAT_MS")
      ->check(CLI::Range(10, 60000));
  app.add_option("--liveness-ms", liveness_ms, "Reconnect when the broker is silent this long")
      ->envname("FANOUT_LIVENESS_MS")
      ->check(CLI::Range(50, 600000));
  double drain_timeout_s = std::chrono::duration<double>(config.drain_timeout).count();
  app.add_option("--drain-timeout", drain_timeout_s,
                 "On SIGTERM: seconds running tasks get to finish before they are stopped and run elsewhere")
      ->envname("FANOUT_DRAIN_TIMEOUT")
      ->check(CLI::Range(0.0, 86400.0));
  std::string metrics;
  bool expose_metrics = false;
  app.add_option("--metrics", metrics,
                 "Serve /metrics (Prometheus), /healthz and /readyz over HTTP at HOST:PORT (port 0: any)")
      ->envname("FANOUT_METRICS");
  app.add_flag("--expose-metrics", expose_metrics,
               "Allow --metrics on a non-loopback address (it has no authentication: a firewall or a "
               "NetworkPolicy keeps it to monitoring)")
      ->envname("FANOUT_EXPOSE_METRICS");
  app.add_flag("--insecure", expose_metrics, "The same as --expose-metrics (the broker's --insecure allows more)")
      ->envname("FANOUT_INSECURE");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off")
      ->envname("FANOUT_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  std::string max_frame = "16M";
  app.add_option("--max-frame-bytes", max_frame,
                 "Refuse frames from the broker larger than this, and keep results messages within it "
                 "(K, M, G suffixes; default 16M, as the broker's)")
      ->envname("FANOUT_MAX_FRAME_BYTES")
      ->check(CLI::Validator(
          [](const std::string& text) {
            return fanout::wire::parse_frame_bytes(text) ? std::string() : "a byte count from 64K to 4G, e.g. 16M";
          },
          "BYTES"));
  std::string log_format = "text";
  app.add_option("--log-format", log_format, "text, or json: one JSON object per line (time, level, message, fields)")
      ->envname("FANOUT_LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? worker::kExitClean : worker::kExitUsage;  // --help is not an error
  }
  // The flags are the environment's FANOUT_KEY and FANOUT_BROKER_KEY: every connection of the
  // supervisor and its executors (wire::connect_to_broker) reads them there. Checked now, once.
  if (!key_file.empty()) ::setenv("FANOUT_KEY", key_file.c_str(), 1);
  if (!broker_key_file.empty()) ::setenv("FANOUT_BROKER_KEY", broker_key_file.c_str(), 1);
  try {
    (void)fanout::wire::client_keys_from_env();
  } catch (const fanout::Error& error) {
    std::cerr << "fanout-worker: " << error.what() << "\n";
    return worker::kExitUsage;
  }
  if (load.empty()) {
    if (const char* from_env = std::getenv("FANOUT_LOAD")) load = split_paths(from_env);
  }
  config.load = std::move(load);
  config.max_frame_bytes = *fanout::wire::parse_frame_bytes(max_frame);
  config.heartbeat = std::chrono::milliseconds(heartbeat_ms);
  config.liveness = std::chrono::milliseconds(liveness_ms);
  config.drain_timeout = std::chrono::milliseconds(std::llround(drain_timeout_s * 1000));

  // Logs go to stderr: stdout belongs to what tasks print.
  auto logger = spdlog::stderr_color_mt("fanout-worker");
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] [pid %P] %v");
  fanout::ops::use_log_format(*logger, fanout::ops::parse_log_format(log_format));
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));

  // The operations endpoint starts inside run() (Config::on_setup), once the supervisor has blocked
  // its signals; it reads `status`, which outlives it.
  worker::Status status;
  std::optional<worker::WorkerEndpoint> endpoint;
  if (!metrics.empty()) {
    fanout::ops::HttpAddress address;
    try {
      address = fanout::ops::parse_http_address(metrics);
      fanout::ops::check_http_address_allowed(address, expose_metrics);
    } catch (const fanout::Error& error) {
      spdlog::critical("fanout-worker: {}", error.what());
      return worker::kExitUsage;
    }
    config.status = &status;
    const auto stall_limit = std::max(std::chrono::milliseconds(5000), 4 * config.heartbeat);
    config.on_setup = [&endpoint, &status, address, stall_limit] {
      endpoint.emplace(address, status, stall_limit);
      spdlog::info("fanout-worker: serving metrics on {}/metrics (and /healthz, /readyz)", endpoint->url());
    };
  }

  try {
    return worker::run(config);
  } catch (const worker::LoadError& error) {
    spdlog::critical("fanout-worker: {}", error.what());
    return worker::kExitCannotLoad;
  } catch (const worker::ConfigError& error) {
    spdlog::critical("fanout-worker: {}", error.what());
    return worker::kExitUsage;
  } catch (const std::exception& error) {
    spdlog::critical("fanout-worker: {}", error.what());
    return worker::kExitFailure;
  }
}
