// window_writer.hpp: a `tasks` envelope (one window of a batch) written straight into Cap'n
// Proto's layout, ready to send.
//
// A client writes tens of thousands of tasks a second into windows. Through a capnp builder each
// task's arguments were copied object by object out of their Payload (a tree walk with bounds
// checks), and each task's name was copied again. Here a task's arguments, a Payload's one block
// of words, are copied whole: capnp pointers are relative, so a block of objects that point only
// among themselves stays valid wherever it lands. Consecutive tasks of one name point to one copy
// of it (capnp readers follow pointers and do not care that two share a target). The result is
// an ordinary one-segment message: the broker checks it on arrival like any other, and codec and
// transport tests compare it with what capnp's builder makes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <zmq.hpp>

#include <fanout/value.hpp>

namespace fanout::wire {

class WindowWriter {
 public:
  // The TaskBatch's own fields (fanout.capnp).
  struct Header {
    std::uint64_t batch_id = 0;
    std::uint32_t total = 0;
    std::uint32_t timeout_ms = 0;
    std::uint32_t max_running = 0;
    bool deferred = false;
    std::uint32_t settled_before = 0;
  };

  // A window of exactly `count` tasks, added in order. `hint_words`: about what the tasks take
  // (their structs, names, keys and arguments), so that the buffer is allocated once.
  WindowWriter(const Header& header, std::size_t count, std::size_t hint_words);
  ~WindowWriter();
  WindowWriter(const WindowWriter&) = delete;
  WindowWriter& operator=(const WindowWriter&) = delete;

  // The next task. `args` null: none (a call without arguments still has an empty tuple).
  void add(std::uint32_t index, std::string_view name, const std::string* key, const Payload* args,
           std::uint32_t timeout_ms);

  // The next task: a unit of slots of task `name` (fanout.capnp, Task.slots), one argument tuple
  // each, none of them null.
  void add_unit(std::uint32_t index, std::string_view name, std::span<const Payload* const> args);

  // The next task: a unit of slots of task `name` whose arguments are laid out together
  // (Task.scalarArgs), when every slot's payload holds the same number of scalars (Payload::
  // of_scalars); false, adding nothing, otherwise (add_unit then takes it).
  bool add_scalar_args(std::uint32_t index, std::string_view name, std::span<const Payload* const> args);

  // Bytes of the frame, its segment table included.
  std::size_t bytes() const noexcept { return (1 + used_) * sizeof(std::uint64_t); }
  // The frame, given to ZeroMQ without a copy. Call once, after every task was added.
  zmq::message_t frame();

 private:
  std::uint64_t* segment() noexcept { return block_ + 1; }  // word 0 is the segment table
  std::uint32_t allocate(std::size_t words);
  std::uint32_t text(std::string_view value);
  // A payload's root struct once placed in the segment: its word, and its pointer's sizes.
  struct Root {
    std::size_t at;
    std::uint64_t sizes;
  };
  void copy_value(std::uint32_t pointer, const Payload& args);
  std::optional<Root> place(const Payload& args);
  void name_task(std::size_t task, std::string_view name);

  std::uint64_t* block_ = nullptr;
  std::size_t used_ = 0;      // words of the segment in use
  std::size_t capacity_ = 0;  // words the segment may take before the block grows
  std::size_t count_;
  std::size_t added_ = 0;
  std::uint32_t first_task_ = 0;
  std::string_view last_name_;  // the name of the task before, and where its text is
  std::uint32_t last_name_at_ = 0;
};

// Blocks of sent windows kept for the next windows to write into (a few, each at most 1 MiB).
std::size_t kept_window_blocks() noexcept;

}  // namespace fanout::wire
