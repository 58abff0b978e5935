// init.cpp: fanout::init, and the record of how the program was started.
#include <fanout/init.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "local_service.hpp"
#include "program.hpp"
#include "width.hpp"
#include <fanout/worker/worker.hpp>

namespace fanout {

namespace {

std::atomic<bool> g_initialized{false};
std::mutex g_mutex;
std::vector<std::string> g_arguments;

unsigned processes_from_environment() {
  const char* value = std::getenv(detail::kWorkerProcessesVariable);
  if (value == nullptr || *value == '\0') return 0;
  return static_cast<unsigned>(std::strtoul(value, nullptr, 10));
}

}  // namespace

void init(int argc, char** argv) {
  {
    const std::lock_guard lock(g_mutex);
    g_arguments.assign(argv, argv + argc);
  }
  g_initialized.store(true, std::memory_order_release);

  // Re-executed as this program's local service (deferred batches in local mode).
  if (const char* service = std::getenv(detail::kServiceRoleVariable); service != nullptr && *service != '\0') {
    ::unsetenv(detail::kServiceRoleVariable);  // not inherited by the service's own workers
    detail::run_local_service();
  }

  // Re-executed by the process driver as a local worker, or started as a worker of a remote broker
  // (FANOUT_WORKER=tcp://broker:5555: a user's own worker binary is their tasks plus this call):
  // serve tasks, never return to main().
  const char* local = std::getenv(detail::kWorkerRoleVariable);
  const char* remote = std::getenv("FANOUT_WORKER");
  const bool is_local = local != nullptr && *local != '\0';
  if (is_local || (remote != nullptr && *remote != '\0')) {
    // Worker logs go to stderr. A local pool is part of the program: what goes wrong in it reaches
    // the caller as slot failures, so it logs only errors unless asked (FANOUT_LOG_LEVEL).
    spdlog::set_default_logger(spdlog::stderr_color_mt("fanout-worker"));
    const char* level = std::getenv("FANOUT_LOG_LEVEL");
    spdlog::set_level(level != nullptr && *level != '\0' ? spdlog::level::from_str(level)
                                                          : (is_local ? spdlog::level::err : spdlog::level::info));
    worker::Config config;
    config.broker = is_local ? local : remote;
    config.processes = processes_from_environment();
    // Local mode's pool grows while tasks wait on slow ones, as wide as Laravel's drivers run a
    // batch (width.hpp); a remote worker program (FANOUT_WORKER) keeps its number.
    if (is_local) config.max_processes = static_cast<unsigned>(detail::max_processes());
    if (const char* idle = std::getenv("FANOUT_EXTRA_IDLE_MS"); idle != nullptr && *idle != '\0') {
      config.extra_idle = std::chrono::milliseconds(std::strtoull(idle, nullptr, 10));
    }
    config.exit_with_parent = is_local;
    const char* shell = std::getenv("FANOUT_ALLOW_SHELL");
    config.allow_shell = !is_local && shell != nullptr && std::string_view(shell) == "1";
    // Shell commands get a declared environment (worker.hpp), plus these names, as fanout-worker's
    // --pass-env; a local pool never runs shell tasks (its Process pools run in the program).
    if (const char* pass = std::getenv("FANOUT_PASS_ENV"); pass != nullptr) {
      std::string_view rest(pass);
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        if (const auto name = rest.substr(0, comma); !name.empty()) config.pass_env.emplace_back(name);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
    }
    int code = worker::kExitFailure;
    try {
      code = worker::run(config);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "fanout: cannot run as a worker of %s: %s\n", config.broker.c_str(), error.what());
    }
    std::fflush(nullptr);
    std::_Exit(code);  // the program's own static objects were never meant to run in a worker
  }
}

bool initialized() noexcept { return g_initialized.load(std::memory_order_acquire); }

namespace detail {

std::string program_path() {
  std::error_code error;
  const auto path = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::string() : path.string();
}

std::vector<std::string> program_arguments() {
  const std::lock_guard lock(g_mutex);
  return g_arguments;
}

}  // namespace detail

}  // namespace fanout
