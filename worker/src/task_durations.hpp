// task_durations.hpp: how long tasks of each name take in this executor, so that it can tell
// quick tasks (whose results may wait a moment for the next ones, to travel together) from slow
// ones (whose neighbours' results must not wait for them).
//
// Names are looked up by their bytes in the received frame (read once per task by the executor);
// the tasks of a frame mostly share a name, so the entry looked up last is kept at hand and most
// lookups are one comparison.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>


namespace fanout::worker {

class TaskDurations {
 public:
  // Below this on average, a task is quick.
  static constexpr std::chrono::nanoseconds kQuick = std::chrono::microseconds(200);

  // Whether tasks named `name` have been quick here so far (a name not run yet is not).
  bool known_quick(std::string_view name) {
    const Entry* entry = find(name);
    return entry != nullptr && entry->average < kQuick;
  }

  // How many tasks named `name` in a row may share one reading of the clock (their time split
  // evenly): as many as take about kTimedTogether together, at most kMostTimedTogether; one for a
  // name not known to be quick. A clock read costs tens of ns, as much as a trivial task.
  static constexpr std::chrono::nanoseconds kTimedTogether = std::chrono::microseconds(20);
  static constexpr unsigned kMostTimedTogether = 64;
  unsigned timed_together(std::string_view name) {
    const Entry* entry = find(name);
    if (entry == nullptr || entry->average >= kQuick) return 1;
    const auto each = std::max(entry->average, std::chrono::nanoseconds(1));
    return static_cast<unsigned>(std::clamp<std::int64_t>(kTimedTogether / each, 1, kMostTimedTogether));
  }

  // One more task named `name` took `took`.
  void record(std::string_view name, std::chrono::nanoseconds took) {
    Entry* entry = find(name);
    if (entry == nullptr) {
      last_name_.assign(name);
      last_ = &by_name_.try_emplace(last_name_, Entry{took}).first->second;
      return;
    }
    entry->average += (took - entry->average) / 8;  // an average that follows changes within a few tasks
  }

 private:
  struct Entry {
    std::chrono::nanoseconds average;
  };

  Entry* find(std::string_view name) {
    if (last_ != nullptr && name == last_name_) return last_;
    const auto found = by_name_.find(std::string(name));
    if (found == by_name_.end()) return nullptr;
    last_name_.assign(name);
    last_ = &found->second;
    return last_;
  }

  std::unordered_map<std::string, Entry> by_name_;  // node-based: entries stay where they are
  std::string last_name_;
  Entry* last_ = nullptr;
};

}  // namespace fanout::worker
