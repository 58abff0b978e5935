// capnp_layout.hpp: the words of Cap'n Proto's encoding that the library's direct writers
// (value_writer.hpp, window_writer.hpp) put down themselves. Encoding spec: a pointer is one
// little-endian word; a struct pointer holds the signed offset to its target, in words from the
// end of the pointer, then the target's data and pointer section sizes in words; a list pointer
// the offset, an element size code and the element count (the word count for a list of structs,
// "inline composite", whose first word is a tag shaped like a struct pointer with the element
// count in its offset field).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace fanout::wire::layout {

static_assert(std::endian::native == std::endian::little, "words are written as they lie in memory");

// Element size codes of a list pointer.
inline constexpr unsigned kByteElements = 2;
inline constexpr unsigned kWordElements = 5;
inline constexpr unsigned kCompositeElements = 7;
// What one list or segment may hold: counts are 29-bit fields, offsets 30-bit signed words.
inline constexpr std::size_t kMaxCount = (std::size_t{1} << 29) - 1;
inline constexpr std::size_t kMaxWords = std::size_t{1} << 29;

// The pointer at word `pointer` to a struct at word `target` of the same segment.
constexpr std::uint64_t struct_pointer(std::size_t pointer, std::size_t target, std::uint32_t data_words,
                                       std::uint32_t pointers) noexcept {
  const auto offset = static_cast<std::int64_t>(target) - static_cast<std::int64_t>(pointer) - 1;
  return static_cast<std::uint64_t>(static_cast<std::uint32_t>(offset) << 2) |
         (static_cast<std::uint64_t>(data_words) << 32) | (static_cast<std::uint64_t>(pointers) << 48);
}

// The pointer at word `pointer` to a list at word `target`.
constexpr std::uint64_t list_pointer(std::size_t pointer, std::size_t target, unsigned element_size,
                                     std::size_t count) noexcept {
  const auto offset = static_cast<std::int64_t>(target) - static_cast<std::int64_t>(pointer) - 1;
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(offset) << 2) | 1) |
         (static_cast<std::uint64_t>(element_size) << 32) | (static_cast<std::uint64_t>(count) << 35);
}

// The tag word in front of a list of `count` structs.
constexpr std::uint64_t composite_tag(std::size_t count, std::uint32_t data_words, std::uint32_t pointers) noexcept {
  return (static_cast<std::uint64_t>(count) << 2) | (static_cast<std::uint64_t>(data_words) << 32) |
         (static_cast<std::uint64_t>(pointers) << 48);
}

// Where the struct pointer at word `pointer` (of value `word`) points.
constexpr std::size_t struct_target(std::size_t pointer, std::uint64_t word) noexcept {
  const auto offset = static_cast<std::int32_t>(static_cast<std::uint32_t>(word)) >> 2;
  return static_cast<std::size_t>(static_cast<std::int64_t>(pointer) + 1 + offset);
}

constexpr std::size_t words_for_bytes(std::size_t bytes) noexcept { return (bytes + 7) / 8; }

}  // namespace fanout::wire::layout
