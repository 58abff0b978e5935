// running_table.hpp: what each executor is running, in memory it shares with its supervisor.
//
// The supervisor maps one MAP_SHARED | MAP_ANONYMOUS region before it forks any executor; every
// executor inherits it and writes the (batchId, index) of the task it runs into its own slot. When
// an executor dies, the supervisor reads that slot to tell the broker which task was running (the
// one to blame), which no message from a dead process could do.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace fanout::worker {

// One executor's slot, alone on its cache line so that executors never share a line.
struct alignas(64) RunningSlot {
  struct Snapshot {
    bool running = false;
    std::uint64_t batch_id = 0;
    std::uint32_t index = 0;
  };

  // Executor side, around each task. The flag is written last on begin and first on end, so a
  // reader that sees it set also sees the task it names; an executor that dies between two tasks
  // reads as running nothing.
  void begin(std::uint64_t batch, std::uint32_t slot_index) noexcept {
    batch_id.store(batch, std::memory_order_relaxed);
    index.store(slot_index, std::memory_order_relaxed);
    running.store(1, std::memory_order_release);
  }
  void end() noexcept { running.store(0, std::memory_order_release); }

  // The process group of the shell command the executor runs now (0: none). The command runs in a
  // group of its own, so that its timeout can stop it whole; when the executor dies, its
  // supervisor stops that group too, or nothing would.
  void set_shell_group(std::int32_t group) noexcept { shell_group.store(group, std::memory_order_release); }
  std::int32_t read_shell_group() const noexcept { return shell_group.load(std::memory_order_acquire); }

  // Supervisor side, after the executor died (so nothing writes concurrently).
  Snapshot read() const noexcept {
    const bool is_running = running.load(std::memory_order_acquire) != 0;
    return {is_running, batch_id.load(std::memory_order_relaxed), index.load(std::memory_order_relaxed)};
  }
  // Before a (replacement) executor starts in this slot.
  void reset() noexcept {
    running.store(0, std::memory_order_relaxed);
    batch_id.store(0, std::memory_order_relaxed);
    index.store(0, std::memory_order_relaxed);
    shell_group.store(0, std::memory_order_relaxed);
  }

  std::atomic<std::uint64_t> batch_id{0};
  std::atomic<std::uint32_t> index{0};
  std::atomic<std::uint32_t> running{0};
  std::atomic<std::int32_t> shell_group{0};
};

// Atomics shared between processes must not depend on a lock inside one process.
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free &&
              std::atomic<std::int32_t>::is_always_lock_free);

// Owns the shared mapping: `count` slots, zeroed. Move-only; unmaps in the destructor (each
// forked executor keeps its own inherited mapping).
class RunningTable {
 public:
  explicit RunningTable(std::size_t count);
  ~RunningTable();
  RunningTable(RunningTable&& other) noexcept;
  RunningTable& operator=(RunningTable&& other) noexcept;
  RunningTable(const RunningTable&) = delete;
  RunningTable& operator=(const RunningTable&) = delete;

  std::size_t size() const noexcept { return count_; }
  RunningSlot& operator[](std::size_t executor) noexcept { return slots_[executor]; }

 private:
  void release() noexcept;

  RunningSlot* slots_ = nullptr;
  std::size_t count_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace fanout::worker
