// task_window.hpp: the `tasks` windows fake peers send, built by hand: a fake client's windows to
// a real broker (broker tests), a fake broker's to a real worker (worker tests).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "transport.hpp"

namespace fanout_test {

// One task of a window: its index in the batch, the task's name, what writes its arguments (a
// tuple), and which attempt this is.
struct TaskSpec {
  std::uint32_t index = 0;
  std::string name;
  std::function<void(fanout::wire::Value::Builder)> args;
  std::uint16_t attempt = 0;
  std::uint32_t slots = 0;  // > 0: a unit (fanout.capnp, Task.slots); `args` then writes the list
  // Writes the task's other fields after `args` (which may then be empty: no arguments at all),
  // e.g. a unit's scalars laid out together (Task.scalarArgs).
  std::function<void(fanout::wire::Task::Builder)> more = {};
};

// Fills `window`: batch `batch` of `total` tasks in all, these `tasks` in it, the window and each
// task with `timeout_ms` (0: none).
void fill_tasks(fanout::wire::TaskBatch::Builder window, std::uint64_t batch, std::uint32_t total,
                const std::vector<TaskSpec>& tasks, std::uint32_t timeout_ms = 0);

}  // namespace fanout_test
