// value_writer.cpp: a wire Value written in Cap'n Proto's layout (capnp_layout.hpp).
#include "value_writer.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include <fanout/error.hpp>

#include "capnp_layout.hpp"
#include "wire.hpp"

namespace fanout::wire {

namespace {

using namespace layout;

// The layout this writer assumes is the one capnp chose for fanout.capnp.
static_assert(Value::_capnpPrivate::dataWordSize == ValueWriter::kValueData);
static_assert(Value::_capnpPrivate::pointerCount == ValueWriter::kValuePointers);
static_assert(MapEntry::_capnpPrivate::dataWordSize == 0);
static_assert(MapEntry::_capnpPrivate::pointerCount == ValueWriter::kEntryWords);

// Where the members live in a Value's data section: the discriminant in bytes 0-1 (field offset 0
// of UInt16), the bool in bit 16, every 64-bit scalar and the float32 in word 1.
constexpr std::size_t kBoolByte = 2;
constexpr std::uint32_t kScalarWord = 1;
constexpr std::uint32_t kPointerWord = ValueWriter::kValueData;

void check_count(std::size_t count, const char* what) {
  if (count > kMaxCount) {
    throw Error(std::string("value too large: ") + what + " of " + std::to_string(count) +
                " elements; a value holds at most " + std::to_string(kMaxCount));
  }
}

}  // namespace

ValueWriter::~ValueWriter() { ::operator delete(block_); }

std::uint32_t ValueWriter::start() {
  const std::uint32_t root_pointer = allocate(1);
  const std::uint32_t root = allocate(kValueWords);
  words_[root_pointer] = struct_pointer(root_pointer, root, kValueData, kValuePointers);
  return root;
}

void ValueWriter::set_which(std::uint32_t value, std::uint16_t which) noexcept {
  std::memcpy(&words_[value], &which, sizeof which);
}

void ValueWriter::set_bool(std::uint32_t value, std::uint16_t which, bool flag) noexcept {
  set_which(value, which);
  reinterpret_cast<unsigned char*>(&words_[value])[kBoolByte] = flag ? 1 : 0;
}

void ValueWriter::set_scalar(std::uint32_t value, std::uint16_t which, std::uint64_t bits, unsigned bytes) noexcept {
  set_which(value, which);
  std::memcpy(&words_[value + kScalarWord], &bits, bytes);
}

void ValueWriter::set_blob(std::uint32_t value, std::uint16_t which, std::span<const std::byte> bytes, bool text) {
  const std::size_t count = bytes.size() + (text ? 1 : 0);  // text keeps its NUL
  check_count(count, text ? "a text" : "a byte string");
  const std::uint32_t target = allocate(words_for_bytes(count));
  if (!bytes.empty()) std::memcpy(&words_[target], bytes.data(), bytes.size());
  set_which(value, which);
  words_[value + kPointerWord] = list_pointer(value + kPointerWord, target, kByteElements, count);
}

std::uint32_t ValueWriter::init_values(std::uint32_t value, std::uint16_t which, std::size_t count) {
  check_count(count, "a list");
  check_count(count * kValueWords, "a list's words");
  const std::uint32_t tag = allocate(1 + count * kValueWords);
  // The tag: a struct pointer's shape, its offset field the element count.
  words_[tag] = composite_tag(count, kValueData, kValuePointers);
  set_which(value, which);
  words_[value + kPointerWord] = list_pointer(value + kPointerWord, tag, kCompositeElements, count * kValueWords);
  return tag + 1;
}

std::uint32_t ValueWriter::init_entries(std::uint32_t value, std::uint16_t which, std::size_t count) {
  check_count(count, "a map");
  check_count(count * kEntryWords, "a map's words");
  const std::uint32_t tag = allocate(1 + count * kEntryWords);
  words_[tag] = composite_tag(count, 0, kEntryWords);
  set_which(value, which);
  words_[value + kPointerWord] = list_pointer(value + kPointerWord, tag, kCompositeElements, count * kEntryWords);
  return tag + 1;
}

std::uint32_t ValueWriter::init_some(std::uint32_t value, std::uint16_t which) {
  const std::uint32_t inner = allocate(kValueWords);
  set_which(value, which);
  words_[value + kPointerWord] = struct_pointer(value + kPointerWord, inner, kValueData, kValuePointers);
  return inner;
}

std::uint32_t ValueWriter::entry_value(std::uint32_t pointer) {
  if (words_[pointer] != 0) return static_cast<std::uint32_t>(struct_target(pointer, words_[pointer]));  // made before
  const std::uint32_t value = allocate(kValueWords);
  words_[pointer] = struct_pointer(pointer, value, kValueData, kValuePointers);
  return value;
}

void* ValueWriter::release() noexcept { return std::exchange(block_, nullptr); }

std::uint32_t ValueWriter::allocate(std::size_t count) {
  if (count > capacity_ - used_) grow(count);
  const auto at = static_cast<std::uint32_t>(used_);
  std::memset(&words_[at], 0, count * sizeof(std::uint64_t));  // capnp reads unset fields as zero
  used_ += count;
  return at;
}

void ValueWriter::grow(std::size_t count) {
  if (count > kMaxWords - used_) {
    throw Error("value too large: more than " + std::to_string(kMaxWords * 8) + " bytes encoded");
  }
  // As a vector grows, but never less than what is asked: one large byte string is one allocation.
  const std::size_t capacity = std::min(kMaxWords, std::max(used_ + count, capacity_ * 2));
  void* block = ::operator new(header_bytes_ + capacity * sizeof(std::uint64_t));
  auto* words = reinterpret_cast<std::uint64_t*>(static_cast<unsigned char*>(block) + header_bytes_);
  std::memcpy(words, words_, used_ * sizeof(std::uint64_t));
  ::operator delete(block_);
  block_ = block;
  words_ = words;
  capacity_ = capacity;
}

}  // namespace fanout::wire
