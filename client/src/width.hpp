// width.hpp: how many slots of a batch run at once when the caller sets no cap.
//
// Laravel's drivers start every task of a batch at once. On a machine with few cores that is right
// for slow tasks, which mostly wait (on a network, a disk, a database), and wrong for tiny ones,
// which only compete for the cores. So the width follows what the slots do: one per core, plus one
// for every slot that has been running longer than kSlowSlot (it is waiting, not computing), up to
// max_processes(). Three lookups of 200 ms take about 200 ms on any core count, and 10,000 trivial
// tasks never run wider than the machine.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>

#include "system/machine.hpp"

namespace fanout::detail {

// A slot running this long counts as waiting rather than computing.
inline constexpr std::chrono::milliseconds kSlowSlot{5};

// FANOUT_MAX_PROCESSES; by default the larger of 16 and the number of cores.
inline std::size_t max_processes() {
  const std::size_t cores = sys::available_cores();
  if (const char* value = std::getenv("FANOUT_MAX_PROCESSES"); value != nullptr && *value != '\0') {
    const auto parsed = static_cast<std::size_t>(std::strtoull(value, nullptr, 10));
    if (parsed > 0) return parsed;
  }
  return std::max<std::size_t>(16, cores);
}

// How many slots may run now, `slow` of the running ones having run longer than kSlowSlot.
inline std::size_t uncapped_width(std::size_t slow, std::size_t cores, std::size_t maximum) {
  return std::min(maximum, std::max<std::size_t>(cores, 1) + slow);
}

}  // namespace fanout::detail
