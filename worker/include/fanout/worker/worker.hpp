// worker.hpp: the worker runtime, for fanout-worker's main and for fanout::init in local mode.
//
// A worker is a supervisor process with one DEALER to the broker and N executor processes it
// forks (docs/protocol.md, "Peers and sockets" and "Executor rules"). Executors are forked without
// exec, so they run the tasks registered in this program, including those of the task libraries
// in Config::load.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <fanout/error.hpp>

#include "ops/loop_pulse.hpp"
#include "timing.hpp"

namespace fanout::worker {

// What a worker tells an operations endpoint (fanout-worker --metrics): written by the
// supervisor's loop every turn, read from any thread.
struct Status {
  ops::LoopPulse pulse;                             // beats every turn of the supervisor's loop
  std::atomic<std::uint32_t> executors{0};          // executor processes alive
  std::atomic<std::uint32_t> tasks_running{0};      // of them, those running a task now
  std::atomic<std::uint64_t> executor_restarts{0};  // executors replaced after they died or were stopped
  std::atomic<bool> registered{false};              // the broker answered within the liveness period
};

struct Config {
  std::string broker;                  // endpoint to connect, e.g. tcp://127.0.0.1:5555 or ipc://@name
  unsigned processes = 0;              // executors; 0 = number of cores
  // How many executors it may grow to when the broker asks (tasks wait while every executor runs
  // a slow one); 0 = `processes`, a fixed number. The extra executors stop by themselves after
  // `extra_idle` with nothing to do.
  unsigned max_processes = 0;
  std::chrono::milliseconds extra_idle{10000};
  unsigned slots_per_executor = 2048;  // credit each executor announces: two client frames (1,024 tasks each) in flight
  bool allow_shell = false;
  // Shell commands run with a declared environment (PATH, HOME, USER, LOGNAME, SHELL, the locale,
  // TZ, TMPDIR), plus what their client sends, never this process's whole environment: it may
  // hold the operator's secrets, and commands come from remote clients. These names (or fnmatch
  // globs such as AWS_*) of this process's variables are passed through as well.
  std::vector<std::string> pass_env;
  std::string worker_id;               // default "<hostname>/<pid>"
  std::chrono::milliseconds heartbeat = wire::kHeartbeatInterval;
  std::chrono::milliseconds liveness = wire::kPeerLiveness;  // broker silent this long => reconnect
  std::vector<std::string> load;       // task libraries to dlopen before forking executors
  bool exit_with_parent = false;       // local mode: die when the process that started us dies
  // With exit_with_parent: the pid of that process, when known. A starter that died before this
  // process could watch it (a race PR_SET_PDEATHSIG cannot close alone) is then noticed at once.
  pid_t expected_parent = 0;
  std::chrono::milliseconds drain_timeout{30000};
  // The largest frame its sockets take from the broker, and the most its executors put in one
  // results message (limits.hpp); 0: FANOUT_MAX_FRAME_BYTES, else 16 MiB.
  std::size_t max_frame_bytes = 0;  // on SIGTERM, executors still busy after this are killed
  Status* status = nullptr;  // where the supervisor reports how it is (not owned; outlives run()), or none
  // Called once by run() after the supervisor blocked its signals and forked its first executors
  // (while it had one thread): where fanout-worker starts its operations endpoint, so that the
  // endpoint's threads never take the supervisor's signals. Executors forked later never keep its
  // socket (they close what the supervisor opened). What it throws leaves run().
  std::function<void()> on_setup;
};

// Exit codes of fanout-worker (and the values run() returns).
inline constexpr int kExitClean = 0;        // stopped on SIGTERM/SIGINT after a clean drain
inline constexpr int kExitFailure = 1;      // anything else: cannot connect, forced stop...
inline constexpr int kExitUsage = 2;        // bad command line or configuration
inline constexpr int kExitCannotLoad = 3;   // a task library could not be loaded

// A task library that dlopen() refused; what() names the library and gives dlerror().
class LoadError : public Error {
 public:
  using Error::Error;
};

// A configuration that cannot work (no endpoint, an inproc:// endpoint, zero slots...).
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Loads each library with dlopen(RTLD_NOW | RTLD_GLOBAL), so that the tasks it defines register
// themselves in this program. Throws LoadError for the first one that fails.
void load_task_libraries(const std::vector<std::string>& paths);

// Runs a supervisor until it is told to stop: SIGTERM or SIGINT drains (announce draining, let the
// executors finish what they hold and flush their results, say bye) and returns kExitClean; a
// second signal while draining kills the executors at once and returns kExitFailure.
//
// Checks the configuration first (throws ConfigError), loads Config::load (throws LoadError),
// and throws std::system_error or zmq::error_t when the process cannot be set up. Call it from the main thread before other threads exist: it blocks SIGTERM, SIGINT,
// SIGCHLD and SIGUSR1 on the calling thread (restored on return) to read them from a signalfd,
// and forked executors die with the thread that forked them (PR_SET_PDEATHSIG).
int run(const Config& config);

}  // namespace fanout::worker
