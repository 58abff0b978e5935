// worker.cpp: configuration checks, task libraries, and the supervisor.
#include <fanout/worker/worker.hpp>

#include <dlfcn.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <string>

#include <spdlog/spdlog.h>

#include <fanout/task.hpp>

#include "system/machine.hpp"
#include "supervisor.hpp"

namespace fanout::worker {

namespace {

bool starts_with(const std::string& text, const char* prefix) { return text.rfind(prefix, 0) == 0; }

// Fills in defaults and refuses what cannot work, before anything is started.
Config complete(Config config) {
  if (config.broker.empty()) throw ConfigError("no broker endpoint: give one, e.g. tcp://127.0.0.1:5555");
  // Executors are other processes: an inproc:// endpoint (one process only) can never reach them.
  if (!starts_with(config.broker, "tcp://") && !starts_with(config.broker, "ipc://")) {
    throw ConfigError("broker endpoint '" + config.broker +
                      "' is not supported: use tcp://HOST:PORT or ipc://PATH (ipc://@NAME for an abstract socket)");
  }
  if (config.processes == 0) config.processes = sys::available_cores();
  config.max_processes = std::max(config.max_processes, config.processes);
  if (config.slots_per_executor == 0) throw ConfigError("executors need at least one slot");
  if (config.heartbeat.count() <= 0) throw ConfigError("the heartbeat interval must be positive");
  if (config.liveness <= config.heartbeat) {
    throw ConfigError("the liveness period (" + std::to_string(config.liveness.count()) +
                      " ms) must be longer than the heartbeat interval (" + std::to_string(config.heartbeat.count()) +
                      " ms)");
  }
  for (const std::string& name : config.pass_env) {
    if (name.empty() || name.find('=') != std::string::npos) {
      throw ConfigError("--pass-env '" + name + "' is not a variable name (or a glob such as AWS_*)");
    }
  }
  if (config.worker_id.empty()) config.worker_id = sys::host_name() + "/" + std::to_string(::getpid());
  return config;
}

}  // namespace

void load_task_libraries(const std::vector<std::string>& paths) {
  for (const auto& path : paths) {
    const std::size_t before = detail::registered_task_names().size();
    // RTLD_GLOBAL: the library's references to fanout (register_task, Payload...) resolve to this
    // executable's copy, so its tasks land in this program's registry. Never closed: its tasks
    // stay registered for the life of the process.
    if (::dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      const char* why = ::dlerror();
      throw LoadError("cannot load task library '" + path + "': " + (why != nullptr ? why : "unknown error"));
    }
    const std::size_t added = detail::registered_task_names().size() - before;
    spdlog::info("loaded task library {} ({} task(s))", path, added);
  }
}

int run(const Config& requested) {
  const Config config = complete(requested);
  load_task_libraries(config.load);
  if (config.exit_with_parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (config.expected_parent != 0 && ::getppid() != config.expected_parent) {
      spdlog::error("the process that started this worker (pid {}) is gone", config.expected_parent);
      return kExitFailure;
    }
  }
  Supervisor supervisor(config);
  return supervisor.run();
}

}  // namespace fanout::worker
