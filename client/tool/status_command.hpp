// status_command.hpp: `fanout status`, what a broker is doing: its workers (executors counted as
// executors, their credit shown apart, versions, restarts), queue, running and deferred tasks,
// refusals by reason; as text or JSON (--json, fields in docs/operations.md), once or every N
// seconds (--watch N, until Ctrl-C); of a broker (--broker / FANOUT_BROKER), or of a program run
// in local mode (--program PATH: its local service, and the local pool of each running instance).
#pragma once

#include <chrono>
#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace fanout::tool {

inline constexpr int kStatusExitOk = 0;
inline constexpr int kStatusExitUsage = 2;
inline constexpr int kStatusExitNoBroker = 4;  // nothing answered (or, with --program, nothing runs)

struct StatusOptions {
  std::string broker;   // --broker; FANOUT_BROKER is read by run_status when neither is given
  std::string program;  // --program: that program's local service and pools instead
  bool json = false;
  double watch_seconds = 0;  // 0: once
  std::chrono::milliseconds timeout{3000};
};

// Adds `status` and its flags, bound to `options`, to `app`.
CLI::App* add_status_command(CLI::App& app, StatusOptions& options);

// Asks and prints (text or JSON on `out`, complaints on `err`); with a watch, again every period
// until SIGINT or SIGTERM. Returns one of the exit statuses above; never throws.
int run_status(const StatusOptions& options, std::ostream& out, std::ostream& err);

}  // namespace fanout::tool
