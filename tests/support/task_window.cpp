// task_window.cpp
#include "task_window.hpp"

namespace fanout_test {

void fill_tasks(fanout::wire::TaskBatch::Builder window, std::uint64_t batch, std::uint32_t total,
                const std::vector<TaskSpec>& tasks, std::uint32_t timeout_ms) {
  window.setBatchId(batch);
  window.setTotal(total);
  window.setTimeoutMs(timeout_ms);
  auto list = window.initTasks(static_cast<unsigned>(tasks.size()));
  for (unsigned i = 0; i < tasks.size(); ++i) {
    auto task = list[i];
    task.setBatchId(batch);
    task.setIndex(tasks[i].index);
    task.setName(tasks[i].name);
    task.setAttempt(tasks[i].attempt);
    task.setSlots(tasks[i].slots);
    task.setTimeoutMs(timeout_ms);
    if (tasks[i].args) tasks[i].args(task.initArgs());
    if (tasks[i].more) tasks[i].more(task);
  }
}

}  // namespace fanout_test
