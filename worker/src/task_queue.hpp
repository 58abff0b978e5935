// task_queue.hpp: the tasks an executor has received and not started yet.
//
// Each received `tasks` frame is kept as it came (its tasks are read in place, never copied),
// with the range of its tasks nobody has claimed yet. The executor's main thread claims tasks
// from the front, one at a time, and runs them; either of the executor's threads may hand back
// unclaimed tasks from the back (a drain, or the broker reclaiming work that an idle executor
// could start sooner), also while the main thread is inside a long task. A task is claimed or
// handed back, never both: a frame's range is one atomic word, changed by compare-and-swap only.
//
// Threads: push(), hand_back() and unclaimed() from either thread; front() and claim() from the
// main thread only, which alone removes frames (so the frame it runs from stays where it is).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

#include "transport.hpp"

namespace fanout::worker {

class TaskQueue {
 public:
  struct Frame {
    Frame(wire::InMessage received, capnp::List<wire::Task>::Reader list, std::uint64_t batch)
        : message(std::move(received)), tasks(list), batch_id(batch), range(pack(0, list.size())) {}

    wire::InMessage message;
    capnp::List<wire::Task>::Reader tasks;  // read in place, in `message`
    std::uint64_t batch_id;                 // TaskBatch.batchId: every task of the frame is of it
    std::atomic<std::uint64_t> range;       // unclaimed positions [next, end): next | end << 32
  };

  // (batch id, index) of a task handed back.
  struct Ref {
    std::uint64_t batch_id;
    std::uint32_t index;
  };

  void push(wire::InMessage message, capnp::List<wire::Task>::Reader tasks, std::uint64_t batch_id);

  // The oldest frame with unclaimed tasks, after dropping the frames with none; nullptr when
  // there are none. Main thread; the frame stays valid until the next call.
  Frame* front();

  // Claims the next unclaimed task of `frame`: its position in the frame, or nullopt when none is
  // left (handed back meanwhile).
  static std::optional<unsigned> claim(Frame& frame) noexcept;

  // Takes up to `count` unclaimed tasks, the last received first, and returns them.
  std::vector<Ref> hand_back(std::size_t count);

  // Tasks received and not claimed or handed back: in all, and in `frame`.
  std::size_t unclaimed() const;
  static unsigned unclaimed(const Frame& frame) noexcept;

 private:
  static std::uint64_t pack(std::uint32_t next, std::uint32_t end) noexcept {
    return std::uint64_t{next} | std::uint64_t{end} << 32;
  }

  mutable std::mutex mutex_;   // the deque itself; ranges are atomic
  std::deque<Frame> frames_;   // a deque: frames stay where they are as others come and go
};

}  // namespace fanout::worker
