// units.cpp: when a batch goes in units (units.hpp).
#include "units.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "printable.hpp"
#include "wire.hpp"

namespace fanout::detail {

namespace {

// What one unit should take: long enough that a task's own cost (a few µs on its way) is small
// next to it, short enough that its slots' results still come back within a fraction of a ms.
constexpr std::chrono::nanoseconds kUnitTime = std::chrono::microseconds(100);
// As many as an executor runs in one unit. Each unit costs a window, a broker record, a message
// to and from an executor and a wake-up of each thread on the way (tens of µs on two cores):
// 157 units of 64 for 10,000 slots of a 50 ns task took 30% longer than 16 units of 625.
constexpr std::size_t kLargestUnit = wire::kMostUnitSlots;
// Fewer slots than this per unit do not pay for the units' own bookkeeping.
constexpr std::size_t kSmallestUnit = 8;
// Units enough to spread over executors and keep results coming. Not more: each unit is messages
// and wake-ups on the way, and 10,000 slots of a 10 ns task went 2-8% faster in 10 units than in
// 16 (batches alternating in one process on two cores).
constexpr std::size_t kFewestUnits = 8;
// A smaller batch goes slot by slot, in one window that the broker splits over idle executors:
// fewer messages than a window per unit.
constexpr std::size_t kSmallestUnitBatch = 128;
// What a unit's arguments may take: far below a frame (16 MiB by default) and the window's share
// of arguments, and so that its slots' values (unknown until they run) rarely come near it.
constexpr std::size_t kUnitArgumentBytes = 64 << 10;

struct Learnt {
  std::chrono::nanoseconds per_slot;
};

std::mutex learnt_mutex;
std::unordered_map<std::string, Learnt>& learnt() {
  static auto* by_name = new std::unordered_map<std::string, Learnt>();  // never destroyed: batches may run at exit
  return *by_name;
}

}  // namespace

namespace quick_names {

std::size_t unit_for(std::string_view name, std::size_t slots) {
  if (slots < kSmallestUnitBatch) return 0;
  std::chrono::nanoseconds per_slot;
  {
    const std::lock_guard lock(learnt_mutex);
    const auto found = learnt().find(std::string(name));
    if (found == learnt().end()) return 0;
    per_slot = found->second.per_slot;
  }
  const auto by_time = static_cast<std::size_t>(kUnitTime / std::max(per_slot, std::chrono::nanoseconds(1)));
  const std::size_t unit = std::min({kLargestUnit, by_time, slots / kFewestUnits});
  return unit >= kSmallestUnit ? unit : 0;
}

void learn(std::string_view name, std::uint64_t elapsed_us, std::size_t slots) {
  if (slots == 0) return;
  const std::chrono::nanoseconds per_slot = std::chrono::microseconds(elapsed_us) / slots;
  const std::lock_guard lock(learnt_mutex);
  auto [entry, created] = learnt().try_emplace(std::string(name), Learnt{per_slot});
  // Half the last batch: a task that turns slow leaves units after a batch or two.
  if (!created) entry->second.per_slot = (entry->second.per_slot + per_slot) / 2;
}

}  // namespace quick_names

namespace laid_out_units {

namespace {
std::atomic<bool> refused{false};
}  // namespace

bool allowed() noexcept { return !refused.load(std::memory_order_relaxed); }

void refuse(std::string_view where) {
  if (refused.exchange(true)) return;
  spdlog::warn("a unit of scalars laid out together could not be read where it ran ({}): an executor or broker "
               "older than this client is on the way; units go as tuples from now on",
               wire::printable(where, wire::kLogTextLimit));
}

void allow() noexcept { refused.store(false); }

}  // namespace laid_out_units

UnitPlan plan_units(const Batch& batch, const RunOptions& options) {
  UnitPlan plan;
  const std::size_t slots = batch.size();
  if (slots == 0) return plan;
  const Job first = batch.job(0);
  if (first.is_callable() || first.args == nullptr) return plan;
  std::size_t largest = 0;  // argument bytes of the largest slot
  for (std::size_t i = 0; i < slots; ++i) {
    const Job job = batch.job(i);
    // A Task's calls share one kept copy of its name (task.hpp): the same pointer, nothing to compare.
    const bool same_task = job.task.data() == first.task.data() ? job.task.size() == first.task.size() : job.task == first.task;
    if (job.is_callable() || job.args == nullptr || !same_task) return plan;
    largest = std::max(largest, job.args->encoded_size());
  }
  plan.name = first.task;
  plan.largest_args = largest;
  if (options.max_concurrency == 0 && options.timeout.count() == 0) {
    plan.unit = std::min(quick_names::unit_for(plan.name, slots), kUnitArgumentBytes / std::max<std::size_t>(largest, 1));
    if (plan.unit < kSmallestUnit) plan.unit = 0;
  }
  return plan;
}

}  // namespace fanout::detail
