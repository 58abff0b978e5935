// fanout/value.hpp: a Cap'n Proto-free view of the wire `Value` (schema/fanout.capnp).
//
// ValueBuilder writes one Value in place inside a message under construction; ValueReader reads
// one without copying (text and bytes come back as views into the message). Both are small
// handles, cheap to copy, valid while the message they point into is alive. Payload owns one
// encoded Value. The Codec<T> templates (codec.hpp) are written against these handles only, so the
// wire library can change without breaking users (STYLE habit 4).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace fanout {

// The members of the wire union, in schema order.
enum class ValueKind : std::uint8_t {
  none,
  boolean,
  int64,
  uint64,
  float32,
  float64,
  text,
  bytes,
  list,
  tuple,
  map,
  some,
  unknown,  // a member this build does not know (a newer peer)
};

// "int", "text", "list"... as written in the schema.
std::string_view kind_name(ValueKind kind) noexcept;

// A non-owning reference to a callable, for the few callbacks that cross from templates into the
// compiled library. It must not outlive the callable it refers to.
template <class Signature>
class FunctionRef;

template <class R, class... A>
class FunctionRef<R(A...)> {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef> && std::is_invocable_r_v<R, F&, A...>)
  FunctionRef(F&& f) noexcept  // NOLINT(google-explicit-constructor): used like a function parameter
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* object, A... args) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(object))(std::forward<A>(args)...);
        }) {}

  R operator()(A... args) const { return call_(object_, std::forward<A>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, A...);
};

class SequenceBuilder;
class MapBuilder;

namespace detail {
// Room for a capnp::*::Builder or Reader; the library static_asserts that they fit. A builder
// may instead be the library's own direct writer (`direct`), which Payload::build uses.
struct alignas(8) HandleStorage {
  unsigned char bytes[48];
  bool direct = false;
};

// One argument of a call whose arguments are all bools, numbers or enums, as its Codec encodes
// it: the Value member and the member's bits (Payload::of_scalars).
struct Scalar {
  ValueKind kind;      // boolean, int64, uint64, float32 or float64
  std::uint64_t bits;  // the bool, the integer, or the float's bit pattern (float32 in the low half)
};
}  // namespace detail

class ValueBuilder {
 public:
  void set_none();
  void set_bool(bool value);
  void set_int(std::int64_t value);
  void set_uint(std::uint64_t value);
  void set_float32(float value);
  void set_float64(double value);
  void set_text(std::string_view value);
  void set_bytes(std::span<const std::byte> value);
  SequenceBuilder init_list(std::size_t size);
  SequenceBuilder init_tuple(std::size_t size);
  MapBuilder init_map(std::size_t size);
  // Marks the value as an engaged optional and returns the builder of its content.
  ValueBuilder init_some();

  detail::HandleStorage storage_;  // a builder of the library's; public only so the library can make one
};

class SequenceBuilder {
 public:
  std::size_t size() const;
  ValueBuilder operator[](std::size_t index) const;

  detail::HandleStorage storage_;
};

class MapBuilder {
 public:
  std::size_t size() const;
  ValueBuilder key(std::size_t index) const;
  ValueBuilder value(std::size_t index) const;

  detail::HandleStorage storage_;
};

class SequenceReader;
class MapReader;

// Names the C++ type being decoded, for error messages only: a function so that the (possibly
// long) name is built when a mismatch is reported, never on the successful path.
using TypeName = std::string (*)();

// Reads one Value in place. Every accessor throws TypeMismatch naming `expected` and the actual
// wire type when the value is of another kind, and fanout::Error when the message itself is
// malformed (a bad pointer, a traversal or nesting limit hit).
class ValueReader {
 public:
  ValueKind kind() const;

  // Integers convert between int and uint when the number fits exactly; float32 widens to float64.
  bool as_bool(TypeName expected) const;
  std::int64_t as_int(TypeName expected) const;
  std::uint64_t as_uint(TypeName expected) const;
  float as_float32(TypeName expected) const;
  double as_float64(TypeName expected) const;
  // Views into the message: valid as long as the message.
  std::string_view as_text(TypeName expected) const;
  std::span<const std::byte> as_bytes(TypeName expected) const;
  SequenceReader as_list(TypeName expected) const;
  SequenceReader as_tuple(TypeName expected) const;
  MapReader as_map(TypeName expected) const;
  // Content of an engaged optional; requires kind() == some.
  ValueReader as_some(TypeName expected) const;

  // A tuple of exactly out.size() bools and numbers, read in one call: fills `out` and returns
  // true. Anything else (other members, another size, an unreadable value) returns false and
  // leaves the reasons to the as_* accessors. What an executor reads a scalar call with.
  bool read_scalars(std::span<detail::Scalar> out) const noexcept;

  // The wire type as a readable type expression ("list<text>", "tuple<int, none>") for messages.
  std::string describe() const;

  detail::HandleStorage storage_;
};

// The elements of a list or tuple, read once (element access does not re-read the list).
class SequenceReader {
 public:
  std::size_t size() const;
  ValueReader operator[](std::size_t index) const;  // bounds-checked

  // Elements first, first + 1, ... that are bools or numbers, read in one call into `out` (each
  // one's member and bits) up to out.size() of them; stops at the first element of another
  // member, or at the end. Returns how many it read. What the client reads a unit's values with.
  std::size_t read_scalars(std::size_t first, std::span<detail::Scalar> out) const noexcept;

  detail::HandleStorage storage_;
};

class MapReader {
 public:
  std::size_t size() const;
  ValueReader key(std::size_t index) const;  // bounds-checked
  ValueReader value(std::size_t index) const;

  detail::HandleStorage storage_;
};

// One encoded Value with its own storage: the arguments of a call, or a result.
// Copying a Payload shares the immutable encoding; it is never re-encoded. A small value (the
// arguments of nearly every call) is one allocation: a reference count, then its words. The
// arguments of a call of one or two bools or numbers (of_scalars) take no allocation at all:
// the Payload holds them, and their words are written out when they are read or sent.
class Payload {
 public:
  Payload();  // holds `none`
  // Moving and destroying are inline: a vector of a million calls moves and frees each one, and
  // one that holds its scalars has nothing to release.
  ~Payload() {
    if (impl_ != nullptr) release(impl_);
  }
  Payload(const Payload&);
  Payload& operator=(const Payload&);
  Payload(Payload&& other) noexcept
      : impl_(std::exchange(other.impl_, nullptr)),
        held_(std::exchange(other.held_, 0)),
        kinds_{other.kinds_[0], other.kinds_[1]},
        bits_{other.bits_[0], other.bits_[1]} {}
  Payload& operator=(Payload&&) noexcept;

  // Encodes a value with `fill`; the builder passed to it is the payload's root.
  static Payload build(FunctionRef<void(ValueBuilder)> fill);

  // The tuple of `scalars` (at least one), as build() would encode it with their Codecs, written
  // without a writer: what a call of a task whose parameters are all scalars costs (task.hpp).
  static Payload of_scalars(std::span<const detail::Scalar> scalars) {
    if (scalars.empty() || scalars.size() > kHeldScalars) return scalars_in_block(scalars);
    Payload payload(nullptr);  // held here: no block at all
    payload.held_ = static_cast<std::uint8_t>(scalars.size());
    for (std::size_t i = 0; i < scalars.size(); ++i) {
      payload.kinds_[i] = scalars[i].kind;
      payload.bits_[i] = scalars[i].bits;
    }
    return payload;
  }

  // Calls `read` with the root, under reader limits derived from the encoded size. The reader is
  // valid only inside the call.
  void read(FunctionRef<void(ValueReader)> read) const;

  // Size of the encoding in bytes (all segments).
  std::size_t encoded_size() const;

  // Scalars a Payload holds itself, and the words their tuple takes once written out.
  static constexpr std::size_t kHeldScalars = 2;
  static constexpr std::size_t kHeldWords = 2 + 3 * (1 + kHeldScalars);
  using WordRoom = std::uint64_t[kHeldWords];

  // The encoding as one block of words (a Cap'n Proto segment, root pointer first) when it is one,
  // as every built payload is (a payload that holds its scalars writes them into `room` first,
  // which the span then points into); else empty. For the library's own encoders, which copy it
  // whole.
  std::span<const std::uint64_t> words(WordRoom& room) const noexcept;
  // The scalars the payload holds, into `out`; 0 when it holds none (its words are elsewhere).
  // For the window writer, which writes them straight into a window.
  std::size_t held_scalars(detail::Scalar (&out)[kHeldScalars]) const noexcept;

  struct Impl;
  // Adopts one reference to `impl` (the library's own constructor).
  explicit Payload(const Impl* impl) noexcept;

 private:
  // The scalars held here, written out as their tuple's words (of_scalars' layout) into `out`;
  // returns how many words.
  std::size_t write_held(std::uint64_t* out) const noexcept;
  // of_scalars for more scalars than a Payload holds (or none, which throws).
  static Payload scalars_in_block(std::span<const detail::Scalar> scalars);
  // Drops one reference to `impl`, freeing it with the last.
  static void release(const Impl* impl) noexcept;

  // Shared, reference-counted, immutable; null when the payload holds scalars (held_ > 0), or
  // once moved from.
  const Impl* impl_;
  std::uint8_t held_ = 0;  // scalars held in kinds_ and bits_
  ValueKind kinds_[kHeldScalars]{};
  std::uint64_t bits_[kHeldScalars]{};
};

}  // namespace fanout
