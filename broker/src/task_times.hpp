// task_times.hpp: how long tasks of each name take at the executors, learnt from the `elapsedUs`
// of their results, so that Dispatch can size how much work an executor may hold ahead of what it
// runs: deep for microsecond tasks (messages stay full, executors never wait for the broker),
// nothing ahead for slow ones (a slow task waits at the broker, where the first executor that
// frees up takes it, never behind another slow task at a busy executor).
//
// Owns one entry per task name, made on first use and never erased, so that frames can keep
// pointers to their names' entries (Frame::times) and a result costs no lookup. At most kMaxNames
// names are tracked; the rest count as unknown (a peer spraying names cannot grow the broker).
//
// Threads: the loop's thread only.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace fanout::broker {

class TaskTimes {
 public:
  static constexpr std::size_t kMaxNames = 10000;

  // `unknown`: what a task of a name nobody has seen finish yet is expected to take
  // (Config::unknown_task_time; by default as long as a slow one, so that nothing waits behind it
  // until its first results say otherwise).
  explicit TaskTimes(std::chrono::nanoseconds unknown) : unknown_(unknown) {}

  // What one slot of a name takes: a unit (fanout.capnp, Task.slots) runs many slots of its name
  // in one task, and its run time counts for each of them, so that a name's units and its single
  // calls (a batch of three, then one of ten thousand) teach one figure rather than each other's.
  struct Entry {
    std::chrono::nanoseconds average{0};
    std::uint64_t samples = 0;
    // One more task of this name ran `slots` (at least 1) for `took` in all. The average follows
    // changes within a few tasks.
    void record(std::chrono::nanoseconds took, std::uint32_t slots) noexcept {
      const auto each = took / std::max<std::uint32_t>(slots, 1);
      average = samples++ == 0 ? each : average + (each - average) / 8;
    }
  };

  // How long a task of `entry`'s name holding `slots` is expected to take (nullptr: a name not
  // tracked).
  std::chrono::nanoseconds expected(const Entry* entry, std::uint32_t slots) const noexcept {
    if (entry == nullptr || entry->samples == 0) return unknown_;
    return entry->average * std::max<std::uint32_t>(slots, 1);
  }

  // The entry of `name`, made on first use; nullptr once kMaxNames names are tracked.
  Entry* of(const std::string& name) {
    const auto found = entries_.find(name);
    if (found != entries_.end()) return &found->second;
    if (entries_.size() >= kMaxNames) return nullptr;
    return &entries_[name];
  }

 private:
  std::chrono::nanoseconds unknown_;
  std::unordered_map<std::string, Entry> entries_;  // node-based: entries stay where they are
};

}  // namespace fanout::broker
