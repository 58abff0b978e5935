// init.cpp
#include <fanout/init.hpp>

#include <atomic>

namespace fanout {

namespace {
std::atomic<bool> g_initialized{false};
}

void init(int argc, char** argv) {
  (void)argc;
  (void)argv;
  // Worker mode (re-executed by the process driver) hooks in here; until then init only records
  // that the program called it, which the process driver will require before re-executing it.
  g_initialized.store(true, std::memory_order_release);
}

bool initialized() noexcept { return g_initialized.load(std::memory_order_acquire); }

}  // namespace fanout
