// init.cpp: fanout::init, and the record of how the program was started.
#include <fanout/init.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "local_pool.hpp"
#include "program.hpp"
#include "worker.hpp"

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

  // Re-executed by the process driver as a local worker: serve tasks, never return to main().
  if (const char* broker = std::getenv(detail::kWorkerRoleVariable); broker != nullptr && *broker != '\0') {
    worker::Config config;
    config.broker = broker;
    config.processes = processes_from_environment();
    config.exit_with_parent = true;
    const int code = worker::run(config);
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
