// units.hpp: many tiny calls sent as one task (fanout.capnp, Task.slots).
//
// A batch of ten thousand calls that take a microsecond each spends nearly all its time on what
// every task costs on its way (a Task struct, a broker record, a Result, a message share), not in
// the calls. When every slot of a batch calls one task known to be quick here, the process driver
// sends them as units of consecutive slots: the broker schedules, retries and counts a unit as one
// task, the executor runs its slots in turn and answers with the list of their values, each slot's
// failure its own. Slow or unknown tasks never go in units: a unit's results come back together,
// and a slow task's result must come back when it exists.
//
// Where a batch's slots go is described by Positions: the tasks the broker sees, each one slot or
// a unit of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fanout/driver.hpp>

namespace fanout::detail {

// The tasks of one batch as the broker sees them ("positions") and the slots each one holds.
class Positions {
 public:
  // Position i is slot i.
  static Positions each_slot(std::size_t slots) { return Positions(slots, 0, {}); }
  // Position u holds slots [u * unit, (u + 1) * unit), the last one fewer.
  static Positions units(std::size_t slots, std::size_t unit) { return Positions(slots, unit, {}); }
  // Position i is slot listed[i] (the slots of units that had to be split, run one by one).
  static Positions listed(std::vector<std::size_t> listed) {
    const std::size_t slots = listed.size();
    return Positions(slots, 0, std::move(listed));
  }

  std::size_t count() const noexcept { return unit_ == 0 ? slots_ : (slots_ + unit_ - 1) / unit_; }
  std::size_t slots() const noexcept { return slots_; }
  // Slots per unit; 0 when every position is one slot.
  std::size_t unit() const noexcept { return unit_; }

  std::size_t first_slot(std::size_t position) const noexcept {
    if (!listed_.empty()) return listed_[position];
    return unit_ == 0 ? position : position * unit_;
  }
  std::size_t slot_count(std::size_t position) const noexcept {
    if (unit_ == 0) return 1;
    return std::min(unit_, slots_ - position * unit_);
  }

 private:
  Positions(std::size_t slots, std::size_t unit, std::vector<std::size_t> listed)
      : slots_(slots), unit_(unit), listed_(std::move(listed)) {}

  std::size_t slots_;
  std::size_t unit_;
  std::vector<std::size_t> listed_;
};

// How a batch is sent: in units or slot by slot, and the task whose run times it teaches.
struct UnitPlan {
  std::size_t unit = 0;          // slots per unit; 0: none
  std::string name;              // the one task every slot calls; empty when they differ
  std::size_t largest_args = 0;  // bytes of the largest slot's arguments, when `name` is set
};

// Units when they pay and keep every promise: every slot calls one task, quick here so far
// (quick_names); no cap and no per-slot timeout (both count slots, which the broker does not see
// inside a unit); at least kSmallestUnitBatch slots, and units of at least kSmallestUnit; a unit's
// arguments far below a frame (kUnitArgumentBytes).
UnitPlan plan_units(const Batch& batch, const RunOptions& options);

// How long a slot of each task took in this process's batches so far (their results' run times).
namespace quick_names {
// Slots per unit for task `name` in a batch of `slots`: as many as take about kUnitTime, at most
// kLargestUnit and no more than leave kFewestUnits units; 0 when units do not pay or the task is
// not known to be quick.
std::size_t unit_for(std::string_view name, std::size_t slots);
// A batch's slots of task `name` ran for `elapsed_us` together.
void learn(std::string_view name, std::uint64_t elapsed_us, std::size_t slots);
}  // namespace quick_names

// Whether units carry their scalars laid out together (fanout.capnp, Task.scalarArgs): yes, until
// a peer fails such a unit whole as unreadable, as an executor older than those fields does (and
// a broker that copies a unit without them); then units go as tuples, for the rest of the process,
// and only the batch that found out sent its units twice.
namespace laid_out_units {
bool allowed() noexcept;
// A unit laid out so failed where it ran (`where`); logged once.
void refuse(std::string_view where);
// Lays units out again (tests).
void allow() noexcept;
}  // namespace laid_out_units

}  // namespace fanout::detail
