// task_queue.cpp
#include "task_queue.hpp"

#include <algorithm>

namespace fanout::worker {

namespace {

std::uint32_t next_of(std::uint64_t range) noexcept { return static_cast<std::uint32_t>(range); }
std::uint32_t end_of(std::uint64_t range) noexcept { return static_cast<std::uint32_t>(range >> 32); }

}  // namespace

void TaskQueue::push(wire::InMessage message, capnp::List<wire::Task>::Reader tasks, std::uint64_t batch_id) {
  const std::lock_guard lock(mutex_);
  frames_.emplace_back(std::move(message), tasks, batch_id);
}

TaskQueue::Frame* TaskQueue::front() {
  const std::lock_guard lock(mutex_);
  while (!frames_.empty()) {
    const std::uint64_t range = frames_.front().range.load(std::memory_order_acquire);
    if (next_of(range) < end_of(range)) return &frames_.front();
    frames_.pop_front();
  }
  return nullptr;
}

std::optional<unsigned> TaskQueue::claim(Frame& frame) noexcept {
  std::uint64_t range = frame.range.load(std::memory_order_acquire);
  for (;;) {
    const std::uint32_t next = next_of(range);
    if (next >= end_of(range)) return std::nullopt;
    if (frame.range.compare_exchange_weak(range, pack(next + 1, end_of(range)), std::memory_order_acq_rel)) {
      return next;
    }
  }
}

std::vector<TaskQueue::Ref> TaskQueue::hand_back(std::size_t count) {
  std::vector<Ref> returned;
  const std::lock_guard lock(mutex_);
  for (auto frame = frames_.rbegin(); frame != frames_.rend() && returned.size() < count; ++frame) {
    std::uint64_t range = frame->range.load(std::memory_order_acquire);
    std::uint32_t kept = 0;
    for (;;) {
      const std::uint32_t next = next_of(range);
      const std::uint32_t end = end_of(range);
      if (next >= end) break;
      kept = static_cast<std::uint32_t>(std::max<std::size_t>(next, end - std::min<std::size_t>(end - next, count - returned.size())));
      if (frame->range.compare_exchange_weak(range, pack(next, kept), std::memory_order_acq_rel)) {
        for (std::uint32_t position = end; position-- > kept;) {  // the last received first
          returned.push_back(Ref{frame->batch_id, frame->tasks[position].getIndex()});
        }
        break;
      }
    }
  }
  return returned;
}

unsigned TaskQueue::unclaimed(const Frame& frame) noexcept {
  const std::uint64_t range = frame.range.load(std::memory_order_acquire);
  return end_of(range) - std::min(next_of(range), end_of(range));
}

std::size_t TaskQueue::unclaimed() const {
  const std::lock_guard lock(mutex_);
  std::size_t count = 0;
  for (const auto& frame : frames_) count += unclaimed(frame);
  return count;
}

}  // namespace fanout::worker
