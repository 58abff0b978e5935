// executor.hpp: one executor process: its own DEALER to the broker, tasks run in order, results
// in batches (docs/protocol.md, "Executor rules").
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "running_table.hpp"
#include "limits.hpp"
#include "timing.hpp"

namespace fanout::worker {

struct ExecutorConfig {
  std::string broker;        // endpoint to connect
  std::string worker_id;     // the supervisor's id
  std::string executor_id;   // "<workerId>/<n>/<generation>", also the ZeroMQ routing id
  std::string host;
  unsigned slots = 2048;     // credit announced to the broker (the supervisor passes its Config's)
  bool allow_shell = false;
  std::chrono::milliseconds heartbeat = wire::kHeartbeatInterval;
  RunningSlot* running = nullptr;  // this executor's slot in memory shared with the supervisor; not owned
  // Executors of its worker: announced with each executor, so that a broker that hears from an
  // executor before its supervisor knows how many to share a short batch with.
  unsigned processes = 1;
  // An extra executor (started when the broker asked the worker to grow) leaves by itself, saying
  // `bye`, after this long with nothing to do; zero: never.
  std::chrono::milliseconds idle_exit{0};
  // Variables of this process that shell commands also get (names or globs; Config::pass_env).
  std::vector<std::string> pass_env{};
  std::size_t max_frame_bytes = wire::kDefaultMaxFrameBytes;  // Config::max_frame_bytes, resolved
};

// Exit codes of an executor process, as its supervisor sees them.
inline constexpr int kExecutorDrained = 0;       // drained on request or left idle: every received task answered or handed back
inline constexpr int kExecutorFailed = 70;       // could not set itself up, or its socket failed

// Runs an executor in the calling process, which must be freshly forked by its supervisor with
// SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 blocked: it creates its own ZeroMQ context (never the
// supervisor's), announces itself and runs the tasks it receives until SIGTERM or SIGINT asks it
// to drain; SIGUSR1 makes it announce itself again (after the broker restarted), SIGUSR2
// reconnect on a fresh connection and announce itself (after a partition). Returns the exit
// code; never throws for a task's failure or a malformed message.
int run_executor(const ExecutorConfig& config);

}  // namespace fanout::worker
