// value_writer.hpp: writes one wire `Value` tree straight into Cap'n Proto's layout, without a
// capnp::MessageBuilder.
//
// Building a call's arguments through a MessageBuilder (an arena, a segment table, zeroing, a
// handle per element through out-of-line calls) cost more than everything else a tiny task costs
// the caller. A Value is a small, fixed shape (two data words and one pointer; lists of them;
// map entries of two pointers), so the library writes it word by word into one segment instead:
// a stack buffer first, then one heap block that grows. The result is an ordinary single-segment
// capnp message, root pointer first, read back by capnp like any other (codec_test compares every
// kind with what capnp's own builder makes).
//
// The layout constants below are those of fanout.capnp's Value and MapEntry; value_writer.cpp
// checks them against the generated code at compile time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace fanout::wire {

class ValueWriter {
 public:
  // Words of a Value struct: data (discriminant, bool, the 64-bit scalar), then its one pointer.
  static constexpr std::uint32_t kValueData = 2;
  static constexpr std::uint32_t kValuePointers = 1;
  static constexpr std::uint32_t kValueWords = kValueData + kValuePointers;
  static constexpr std::uint32_t kEntryWords = 2;  // MapEntry: key and value pointers
  static constexpr std::size_t kStackWords = 32;   // a call's arguments usually fit here

  // `header_bytes` (a multiple of 8) are kept free in front of the words once they move to the
  // heap, so that the owner can adopt the block without copying (Payload keeps its header there).
  explicit ValueWriter(std::size_t header_bytes) noexcept : header_bytes_(header_bytes) {}
  ~ValueWriter();
  ValueWriter(const ValueWriter&) = delete;
  ValueWriter& operator=(const ValueWriter&) = delete;

  // Starts the message: the root pointer, then the root Value. Returns the Value's offset.
  std::uint32_t start();

  // The members of a Value at `value` (a word offset), `which` its union discriminant. Each Value
  // is set once. Lengths beyond what a capnp list holds throw fanout::Error.
  void set_which(std::uint32_t value, std::uint16_t which) noexcept;
  void set_bool(std::uint32_t value, std::uint16_t which, bool flag) noexcept;
  void set_scalar(std::uint32_t value, std::uint16_t which, std::uint64_t bits, unsigned bytes) noexcept;
  void set_blob(std::uint32_t value, std::uint16_t which, std::span<const std::byte> bytes, bool text);
  // A bool or number written into the (zeroed) Value at `value`: its member `which`, then the bool
  // in byte 2 or the scalar's bits in word 1. How calls of scalars are written without a writer
  // (Payload::of_scalars, and WindowWriter for the scalars a Payload holds).
  static void write_scalar(std::uint64_t* value, std::uint16_t which, std::uint64_t bits, bool boolean) noexcept {
    std::memcpy(value, &which, sizeof which);
    if (boolean) {
      reinterpret_cast<unsigned char*>(value)[2] = bits != 0 ? 1 : 0;
    } else {
      value[1] = bits;
    }
  }

  // A list of `count` Values (the list and tuple members); returns the first element's offset.
  std::uint32_t init_values(std::uint32_t value, std::uint16_t which, std::size_t count);
  // A list of `count` map entries; returns the first entry's offset.
  std::uint32_t init_entries(std::uint32_t value, std::uint16_t which, std::size_t count);
  // The Value the `some` member points to, made now.
  std::uint32_t init_some(std::uint32_t value, std::uint16_t which);
  // The Value a map entry's pointer at word `pointer` refers to, made on first use.
  std::uint32_t entry_value(std::uint32_t pointer);

  std::size_t size() const noexcept { return used_; }
  const std::uint64_t* words() const noexcept { return words_; }
  // Whether the words are in a heap block (else on the writer's stack).
  bool on_heap() const noexcept { return block_ != nullptr; }
  // Gives the heap block away: `header_bytes` of room, then size() words. Only when on_heap().
  void* release() noexcept;

 private:
  std::uint32_t allocate(std::size_t count);
  void grow(std::size_t at_least);

  std::size_t header_bytes_;
  std::uint64_t stack_[kStackWords];
  std::uint64_t* words_ = stack_;
  std::size_t used_ = 0;
  std::size_t capacity_ = kStackWords;
  void* block_ = nullptr;
};

}  // namespace fanout::wire
