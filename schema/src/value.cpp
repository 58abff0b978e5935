// value.cpp: ValueBuilder / ValueReader / Payload over the capnp Value struct.
#include <fanout/value.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fanout/error.hpp>
#include <kj/exception.h>

#include "capnp_layout.hpp"
#include "limits.hpp"
#include "value_writer.hpp"
#include "wire.hpp"

namespace fanout {

namespace {

using wire::Value;
using wire::MapEntry;
using SequenceList = capnp::List<Value>;
using EntryList = capnp::List<MapEntry>;

template <class Handle>
void check_fits() {
  static_assert(sizeof(Handle) <= sizeof(detail::HandleStorage), "grow detail::HandleStorage");
  static_assert(alignof(Handle) <= alignof(detail::HandleStorage));
  static_assert(std::is_trivially_copyable_v<Handle>, "handles are copied as bytes");
  static_assert(std::is_trivially_destructible_v<Handle>, "handles are never destroyed");
}

template <class Handle>
detail::HandleStorage store(Handle handle) noexcept {
  check_fits<Handle>();
  detail::HandleStorage storage;
  new (storage.bytes) Handle(handle);
  return storage;
}

template <class Handle>
Handle load(const detail::HandleStorage& storage) noexcept {
  check_fits<Handle>();
  return *std::launder(reinterpret_cast<const Handle*>(storage.bytes));
}

ValueKind kind_of(Value::Which which) noexcept {
  switch (which) {
    case Value::NONE: return ValueKind::none;
    case Value::BOOL: return ValueKind::boolean;
    case Value::INT: return ValueKind::int64;
    case Value::UINT: return ValueKind::uint64;
    case Value::FLOAT32: return ValueKind::float32;
    case Value::FLOAT64: return ValueKind::float64;
    case Value::TEXT: return ValueKind::text;
    case Value::BYTES: return ValueKind::bytes;
    case Value::LIST: return ValueKind::list;
    case Value::TUPLE: return ValueKind::tuple;
    case Value::MAP: return ValueKind::map;
    case Value::SOME: return ValueKind::some;
  }
  return ValueKind::unknown;
}

SequenceBuilder make_sequence(SequenceList::Builder list) {
  SequenceBuilder builder;
  builder.storage_ = store(list);
  return builder;
}

void describe_into(std::string& out, Value::Reader value, int depth) {
  if (depth > 8) {
    out += "...";
    return;
  }
  const auto describe_sequence = [&](const char* name, SequenceList::Reader items, bool all) {
    out += name;
    out += '<';
    const unsigned shown = all ? std::min(items.size(), 8u) : std::min(items.size(), 1u);
    for (unsigned i = 0; i < shown; ++i) {
      if (i > 0) out += ", ";
      describe_into(out, items[i], depth + 1);
    }
    if (all && items.size() > shown) out += ", ...";
    out += '>';
  };
  switch (value.which()) {
    case Value::NONE: out += "none"; return;
    case Value::BOOL: out += "bool"; return;
    case Value::INT: out += "int"; return;
    case Value::UINT: out += "uint"; return;
    case Value::FLOAT32: out += "float32"; return;
    case Value::FLOAT64: out += "float64"; return;
    case Value::TEXT: out += "text"; return;
    case Value::BYTES: out += "bytes"; return;
    case Value::LIST: describe_sequence("list", value.getList(), false); return;
    case Value::TUPLE: describe_sequence("tuple", value.getTuple(), true); return;
    case Value::MAP: {
      out += "map<";
      const auto entries = value.getMap();
      if (entries.size() > 0) {
        describe_into(out, entries[0].getKey(), depth + 1);
        out += ", ";
        describe_into(out, entries[0].getValue(), depth + 1);
      }
      out += '>';
      return;
    }
    case Value::SOME:
      out += "optional<";
      describe_into(out, value.getSome(), depth + 1);
      out += '>';
      return;
  }
  out += "unknown";
}

}  // namespace

TypeMismatch::TypeMismatch(std::string expected, std::string actual, std::string detail)
    : Error("type mismatch: expected " + expected + ", got " + actual +
            (detail.empty() ? std::string() : " (" + detail + ")")),
      expected_(std::move(expected)),
      actual_(std::move(actual)) {}

std::string_view kind_name(ValueKind kind) noexcept {
  switch (kind) {
    case ValueKind::none: return "none";
    case ValueKind::boolean: return "bool";
    case ValueKind::int64: return "int";
    case ValueKind::uint64: return "uint";
    case ValueKind::float32: return "float32";
    case ValueKind::float64: return "float64";
    case ValueKind::text: return "text";
    case ValueKind::bytes: return "bytes";
    case ValueKind::list: return "list";
    case ValueKind::tuple: return "tuple";
    case ValueKind::map: return "map";
    case ValueKind::some: return "some";
    case ValueKind::unknown: break;
  }
  return "unknown";
}

// ---- ValueBuilder -----------------------------------------------------------------------------

// A builder is either a capnp builder (a Value inside a message being built: a result at an
// executor) or, for Payload::build, a position in the library's own writer (value_writer.hpp).

namespace {

struct Direct {
  wire::ValueWriter* writer;
  std::uint32_t at;         // a Value; or a list's first element, a map's first entry
  std::uint32_t count = 0;  // lists and maps: their length
};

template <class Handle>
Handle direct_handle(wire::ValueWriter& writer, std::uint32_t at, std::uint32_t count = 0) {
  Handle handle;
  handle.storage_ = store(Direct{&writer, at, count});
  handle.storage_.direct = true;
  return handle;
}

Direct direct_of(const detail::HandleStorage& storage) { return load<Direct>(storage); }

constexpr std::uint16_t which(Value::Which member) { return static_cast<std::uint16_t>(member); }

std::uint32_t element(const Direct& list, std::size_t index, std::uint32_t words) {
  if (index >= list.count) throw Error("element " + std::to_string(index) + " out of range");
  return list.at + static_cast<std::uint32_t>(index) * words;
}

}  // namespace

void ValueBuilder::set_none() {
  if (storage_.direct) return direct_of(storage_).writer->set_which(direct_of(storage_).at, which(Value::NONE));
  wire::unwrap(*this).setNone();
}

void ValueBuilder::set_bool(bool value) {
  if (storage_.direct) return direct_of(storage_).writer->set_bool(direct_of(storage_).at, which(Value::BOOL), value);
  wire::unwrap(*this).setBool(value);
}

void ValueBuilder::set_int(std::int64_t value) {
  if (storage_.direct) {
    const auto at = direct_of(storage_);
    return at.writer->set_scalar(at.at, which(Value::INT), std::bit_cast<std::uint64_t>(value), 8);
  }
  wire::unwrap(*this).setInt(value);
}

void ValueBuilder::set_uint(std::uint64_t value) {
  if (storage_.direct) return direct_of(storage_).writer->set_scalar(direct_of(storage_).at, which(Value::UINT), value, 8);
  wire::unwrap(*this).setUint(value);
}

void ValueBuilder::set_float32(float value) {
  if (storage_.direct) {
    const auto at = direct_of(storage_);
    return at.writer->set_scalar(at.at, which(Value::FLOAT32), std::bit_cast<std::uint32_t>(value), 4);
  }
  wire::unwrap(*this).setFloat32(value);
}

void ValueBuilder::set_float64(double value) {
  if (storage_.direct) {
    const auto at = direct_of(storage_);
    return at.writer->set_scalar(at.at, which(Value::FLOAT64), std::bit_cast<std::uint64_t>(value), 8);
  }
  wire::unwrap(*this).setFloat64(value);
}

void ValueBuilder::set_text(std::string_view value) {
  if (storage_.direct) {
    const auto at = direct_of(storage_);
    return at.writer->set_blob(at.at, which(Value::TEXT), std::as_bytes(std::span(value.data(), value.size())), true);
  }
  // initText + copy rather than setText: a string_view need not be NUL-terminated.
  auto text = wire::unwrap(*this).initText(static_cast<unsigned>(value.size()));
  if (!value.empty()) std::memcpy(text.begin(), value.data(), value.size());
}

void ValueBuilder::set_bytes(std::span<const std::byte> value) {
  if (storage_.direct) return direct_of(storage_).writer->set_blob(direct_of(storage_).at, which(Value::BYTES), value, false);
  auto data = wire::unwrap(*this).initBytes(static_cast<unsigned>(value.size()));
  if (!value.empty()) std::memcpy(data.begin(), value.data(), value.size());
}

SequenceBuilder ValueBuilder::init_list(std::size_t size) {
  if (storage_.direct) {
    const auto at = direct_of(storage_);
    return direct_handle<SequenceBuilder>(*at.writer, at.writer->init_values(at.at, which(Value::LIST), size),
                                          static_cast<std::uint32_t>(size));
  }
  return make_sequence(wire::unwrap(*this).initList(static_cast<unsigned>(size)));
}

SequenceBuilder ValueBuilder::init_tuple(std::size_t size) {
  if (storage_.direct) {
    const auto at = direct_of(storage_);
    return direct_handle<SequenceBuilder>(*at.writer, at.writer->init_values(at.at, which(Value::TUPLE), size),
                                          static_cast<std::uint32_t>(size));
  }
  return make_sequence(wire::unwrap(*this).initTuple(static_cast<unsigned>(size)));
}

MapBuilder ValueBuilder::init_map(std::size_t size) {
  if (storage_.direct) {
    const auto at = direct_of(storage_);
    return direct_handle<MapBuilder>(*at.writer, at.writer->init_entries(at.at, which(Value::MAP), size),
                                     static_cast<std::uint32_t>(size));
  }
  MapBuilder builder;
  builder.storage_ = store(wire::unwrap(*this).initMap(static_cast<unsigned>(size)));
  return builder;
}

ValueBuilder ValueBuilder::init_some() {
  if (storage_.direct) {
    const auto at = direct_of(storage_);
    return direct_handle<ValueBuilder>(*at.writer, at.writer->init_some(at.at, which(Value::SOME)));
  }
  return wire::wrap(wire::unwrap(*this).initSome());
}

std::size_t SequenceBuilder::size() const {
  if (storage_.direct) return direct_of(storage_).count;
  return load<SequenceList::Builder>(storage_).size();
}

ValueBuilder SequenceBuilder::operator[](std::size_t index) const {
  if (storage_.direct) {
    const auto list = direct_of(storage_);
    return direct_handle<ValueBuilder>(*list.writer, element(list, index, wire::ValueWriter::kValueWords));
  }
  return wire::wrap(load<SequenceList::Builder>(storage_)[static_cast<unsigned>(index)]);
}

std::size_t MapBuilder::size() const {
  if (storage_.direct) return direct_of(storage_).count;
  return load<EntryList::Builder>(storage_).size();
}

ValueBuilder MapBuilder::key(std::size_t index) const {
  if (storage_.direct) {
    const auto map = direct_of(storage_);
    return direct_handle<ValueBuilder>(*map.writer,
                                       map.writer->entry_value(element(map, index, wire::ValueWriter::kEntryWords)));
  }
  return wire::wrap(load<EntryList::Builder>(storage_)[static_cast<unsigned>(index)].getKey());
}

ValueBuilder MapBuilder::value(std::size_t index) const {
  if (storage_.direct) {
    const auto map = direct_of(storage_);
    return direct_handle<ValueBuilder>(
        *map.writer, map.writer->entry_value(element(map, index, wire::ValueWriter::kEntryWords) + 1));
  }
  return wire::wrap(load<EntryList::Builder>(storage_)[static_cast<unsigned>(index)].getValue());
}

// ---- ValueReader ------------------------------------------------------------------------------

namespace {

// Reading a pointer can hit a malformed message or a reader limit, which capnp reports as
// kj::Exception; callers of the codec only ever see fanout errors.
template <class Read>
auto guarded(Read&& read) -> decltype(read()) {
  try {
    return read();
  } catch (const kj::Exception& error) {
    throw Error(std::string("malformed value: ") + error.getDescription().cStr());
  }
}

std::string name_of(TypeName expected) { return expected != nullptr ? expected() : std::string("?"); }

[[noreturn]] void mismatch(TypeName expected, const ValueReader& actual) {
  throw TypeMismatch(name_of(expected), actual.describe());
}

Value::Reader checked(const ValueReader& handle, Value::Which which, TypeName expected) {
  const auto value = wire::unwrap(handle);
  if (value.which() != which) mismatch(expected, handle);
  return value;
}

// A list of zero-sized elements claims any count in no bytes (limits.hpp): refused before a
// decoder sizes a container by it (std::vector::reserve) or loops over it.
template <class List>
List counted(List list) {
  if (wire::amplified(capnp::AnyList::Reader(list))) {
    throw Error("malformed value: a list claims " + std::to_string(list.size()) + " elements in 0 bytes");
  }
  return list;
}

SequenceReader make_sequence_reader(SequenceList::Reader items) {
  SequenceReader reader;
  reader.storage_ = store(items);
  return reader;
}

}  // namespace

ValueKind ValueReader::kind() const { return kind_of(wire::unwrap(*this).which()); }

namespace {

// A bool or number as its member and bits; false for any other member.
bool read_scalar(Value::Reader value, detail::Scalar& out) {
  switch (value.which()) {
    case Value::BOOL: out = {ValueKind::boolean, value.getBool() ? 1U : 0U}; return true;
    case Value::INT: out = {ValueKind::int64, static_cast<std::uint64_t>(value.getInt())}; return true;
    case Value::UINT: out = {ValueKind::uint64, value.getUint()}; return true;
    case Value::FLOAT32: out = {ValueKind::float32, std::bit_cast<std::uint32_t>(value.getFloat32())}; return true;
    case Value::FLOAT64: out = {ValueKind::float64, std::bit_cast<std::uint64_t>(value.getFloat64())}; return true;
    default: return false;
  }
}

}  // namespace

bool ValueReader::read_scalars(std::span<detail::Scalar> out) const noexcept {
  return wire::read_scalar_tuple(wire::unwrap(*this), out);
}

bool wire::read_scalar_tuple(Value::Reader value, std::span<detail::Scalar> out) noexcept {
  try {
    if (value.which() != Value::TUPLE) return false;
    const auto elements = value.getTuple();
    if (elements.size() != out.size()) return false;
    for (unsigned i = 0; i < elements.size(); ++i) {
      if (!read_scalar(elements[i], out[i])) return false;
    }
    return true;
  } catch (...) {  // unreadable: the accessors say why
    return false;
  }
}

bool ValueReader::as_bool(TypeName expected) const { return checked(*this, Value::BOOL, expected).getBool(); }

std::int64_t ValueReader::as_int(TypeName expected) const {
  const auto value = wire::unwrap(*this);
  if (value.which() == Value::INT) return value.getInt();
  if (value.which() == Value::UINT) {
    const std::uint64_t number = value.getUint();
    if (number <= static_cast<std::uint64_t>(INT64_MAX)) return static_cast<std::int64_t>(number);
    throw TypeMismatch(name_of(expected), "uint " + std::to_string(number), "out of range");
  }
  mismatch(expected, *this);
}

std::uint64_t ValueReader::as_uint(TypeName expected) const {
  const auto value = wire::unwrap(*this);
  if (value.which() == Value::UINT) return value.getUint();
  if (value.which() == Value::INT) {
    const std::int64_t number = value.getInt();
    if (number >= 0) return static_cast<std::uint64_t>(number);
    throw TypeMismatch(name_of(expected), "int " + std::to_string(number), "out of range");
  }
  mismatch(expected, *this);
}

float ValueReader::as_float32(TypeName expected) const {
  return checked(*this, Value::FLOAT32, expected).getFloat32();
}

double ValueReader::as_float64(TypeName expected) const {
  const auto value = wire::unwrap(*this);
  if (value.which() == Value::FLOAT64) return value.getFloat64();
  if (value.which() == Value::FLOAT32) return value.getFloat32();
  mismatch(expected, *this);
}

std::string_view ValueReader::as_text(TypeName expected) const {
  const auto value = checked(*this, Value::TEXT, expected);
  const auto text = guarded([&] { return value.getText(); });
  return {text.begin(), text.size()};
}

std::span<const std::byte> ValueReader::as_bytes(TypeName expected) const {
  const auto value = checked(*this, Value::BYTES, expected);
  const auto data = guarded([&] { return value.getBytes(); });
  return {reinterpret_cast<const std::byte*>(data.begin()), data.size()};
}

SequenceReader ValueReader::as_list(TypeName expected) const {
  const auto value = checked(*this, Value::LIST, expected);
  return make_sequence_reader(counted(guarded([&] { return value.getList(); })));
}

SequenceReader ValueReader::as_tuple(TypeName expected) const {
  const auto value = checked(*this, Value::TUPLE, expected);
  return make_sequence_reader(counted(guarded([&] { return value.getTuple(); })));
}

MapReader ValueReader::as_map(TypeName expected) const {
  const auto value = checked(*this, Value::MAP, expected);
  MapReader reader;
  reader.storage_ = store(counted(guarded([&] { return value.getMap(); })));
  return reader;
}

ValueReader ValueReader::as_some(TypeName expected) const {
  const auto value = checked(*this, Value::SOME, expected);
  return wire::wrap(guarded([&] { return value.getSome(); }));
}

std::string ValueReader::describe() const {
  std::string out;
  try {
    describe_into(out, wire::unwrap(*this), 0);
  } catch (const kj::Exception&) {
    out += "(malformed)";
  }
  return out;
}

std::size_t SequenceReader::size() const { return load<SequenceList::Reader>(storage_).size(); }

ValueReader SequenceReader::operator[](std::size_t index) const {
  const auto items = load<SequenceList::Reader>(storage_);
  if (index >= items.size()) {
    throw Error("value element " + std::to_string(index) + " out of range (size " + std::to_string(items.size()) + ")");
  }
  return wire::wrap(items[static_cast<unsigned>(index)]);
}

void wire::write_scalar(Value::Builder value, const detail::Scalar& scalar) {
  switch (scalar.kind) {
    case ValueKind::boolean: value.setBool(scalar.bits != 0); break;
    case ValueKind::int64: value.setInt(static_cast<std::int64_t>(scalar.bits)); break;
    case ValueKind::uint64: value.setUint(scalar.bits); break;
    case ValueKind::float32: value.setFloat32(std::bit_cast<float>(static_cast<std::uint32_t>(scalar.bits))); break;
    case ValueKind::float64: value.setFloat64(std::bit_cast<double>(scalar.bits)); break;
    default: value.setNone(); break;  // scalar_of makes none of these
  }
}

std::size_t SequenceReader::read_scalars(std::size_t first, std::span<detail::Scalar> out) const noexcept {
  const auto items = load<SequenceList::Reader>(storage_);
  std::size_t read = 0;
  // Elements are structs inside the list: reading one cannot throw (capnp checked the list's
  // bounds when it was read, and a struct's fields past its size read as zero).
  for (; read < out.size() && first + read < items.size(); ++read) {
    if (!read_scalar(items[static_cast<unsigned>(first + read)], out[read])) break;
  }
  return read;
}

std::size_t MapReader::size() const { return load<EntryList::Reader>(storage_).size(); }

ValueReader MapReader::key(std::size_t index) const {
  const auto entries = load<EntryList::Reader>(storage_);
  if (index >= entries.size()) throw Error("map entry " + std::to_string(index) + " out of range");
  return wire::wrap(guarded([&] { return entries[static_cast<unsigned>(index)].getKey(); }));
}

ValueReader MapReader::value(std::size_t index) const {
  const auto entries = load<EntryList::Reader>(storage_);
  if (index >= entries.size()) throw Error("map entry " + std::to_string(index) + " out of range");
  return wire::wrap(guarded([&] { return entries[static_cast<unsigned>(index)].getValue(); }));
}

// ---- Payload ----------------------------------------------------------------------------------

// A Payload's storage is one allocation: this header, then (for a value built here that fits in
// one small segment) the segment's words. Anything else, a large value or a message received from
// elsewhere, is held by `other`. Shared by every copy of the Payload; freed with the last one.
struct alignas(capnp::word) Payload::Impl {
  // Segments of a value too large to keep inline, or a flat message from another process.
  struct Other {
    std::vector<kj::Array<capnp::word>> owned;
    std::vector<kj::ArrayPtr<const capnp::word>> segments;  // to read, when built here
    kj::Array<capnp::word> flat;                            // to read, when received
  };

  mutable std::atomic<std::uint32_t> refs{1};
  wire::PayloadRoot root = wire::PayloadRoot::value;
  std::uint32_t inline_words = 0;  // words of the one segment that follows this header
  std::unique_ptr<Other> other;

  const capnp::word* words() const noexcept { return reinterpret_cast<const capnp::word*>(this + 1); }
  capnp::word* words() noexcept { return reinterpret_cast<capnp::word*>(this + 1); }

  // A new Impl with room for `count` inline words after it (uninitialised), one reference.
  static Impl* make(std::size_t count) {
    void* memory = ::operator new(sizeof(Impl) + count * sizeof(capnp::word));
    auto* impl = new (memory) Impl;
    impl->inline_words = static_cast<std::uint32_t>(count);
    return impl;
  }
  static void release(const Impl* impl) noexcept {
    if (impl == nullptr || impl->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    auto* owned = const_cast<Impl*>(impl);
    owned->~Impl();
    ::operator delete(static_cast<void*>(owned));
  }
};

namespace {

const Payload::Impl* none_payload() {
  // Never freed: the static keeps a reference of its own.
  static const Payload::Impl* const none = [] {
    capnp::MallocMessageBuilder message(8);
    message.initRoot<Value>().setNone();
    const auto segment = message.getSegmentsForOutput()[0];
    auto* impl = Payload::Impl::make(segment.size());
    std::memcpy(impl->words(), segment.begin(), segment.size() * sizeof(capnp::word));
    return impl;
  }();
  none->refs.fetch_add(1, std::memory_order_relaxed);
  return none;
}

}  // namespace

Payload::Payload() : impl_(none_payload()) {}
void Payload::release(const Impl* impl) noexcept { Impl::release(impl); }
static_assert(Payload::kHeldScalars == 2, "the copy and move constructors copy two held scalars");
Payload::Payload(const Payload& other)
    : impl_(other.impl_), held_(other.held_), kinds_{other.kinds_[0], other.kinds_[1]}, bits_{other.bits_[0], other.bits_[1]} {
  if (impl_ != nullptr) impl_->refs.fetch_add(1, std::memory_order_relaxed);
}
Payload& Payload::operator=(const Payload& other) {
  if (this != &other) {
    if (other.impl_ != nullptr) other.impl_->refs.fetch_add(1, std::memory_order_relaxed);
    Impl::release(std::exchange(impl_, other.impl_));
    held_ = other.held_;
    std::copy(std::begin(other.kinds_), std::end(other.kinds_), std::begin(kinds_));
    std::copy(std::begin(other.bits_), std::end(other.bits_), std::begin(bits_));
  }
  return *this;
}
Payload& Payload::operator=(Payload&& other) noexcept {
  if (this != &other) {
    Impl::release(std::exchange(impl_, std::exchange(other.impl_, nullptr)));
    held_ = std::exchange(other.held_, 0);
    std::copy(std::begin(other.kinds_), std::end(other.kinds_), std::begin(kinds_));
    std::copy(std::begin(other.bits_), std::end(other.bits_), std::begin(bits_));
  }
  return *this;
}
Payload::Payload(const Impl* impl) noexcept : impl_(impl) {}

Payload Payload::build(FunctionRef<void(ValueBuilder)> fill) {
  // Written straight into capnp's layout (value_writer.hpp): on the stack, then in one heap block
  // that has room for this header in front, so that a large value (a big byte string) is copied
  // once, into that block, and the block becomes the payload.
  static_assert(sizeof(Impl) % sizeof(capnp::word) == 0);
  wire::ValueWriter writer(sizeof(Impl));
  fill(direct_handle<ValueBuilder>(writer, writer.start()));
  // Up to kCopiedWords the value moves to a block of its own size: the writer's block grows by
  // doubling, and a million mid-sized arguments must not each keep up to twice their size.
  constexpr std::size_t kCopiedWords = 512;
  if (!writer.on_heap() || writer.size() <= kCopiedWords) {
    Impl* impl = Impl::make(writer.size());
    std::memcpy(static_cast<void*>(impl->words()), writer.words(), writer.size() * sizeof(capnp::word));
    return Payload(impl);
  }
  const std::size_t words = writer.size();
  auto* impl = new (writer.release()) Impl;
  impl->inline_words = static_cast<std::uint32_t>(words);
  return Payload(impl);
}

namespace {

constexpr std::uint32_t kScalarValue = wire::ValueWriter::kValueData + wire::ValueWriter::kValuePointers;

// The words of a tuple of `count` scalars.
constexpr std::size_t scalar_tuple_words(std::size_t count) { return 1 + kScalarValue + 1 + count * kScalarValue; }
static_assert(scalar_tuple_words(Payload::kHeldScalars) == Payload::kHeldWords);

// Writes the tuple of `count` scalars, the i-th of kind kinds(i) and bits bits(i), into `out`
// (scalar_tuple_words(count) words) in the layout ValueWriter makes for it: the root pointer, the
// root Value (a tuple), the list's tag, one Value per element (its member in bytes 0-1, a bool in
// byte 2, every other scalar in word 1).
template <class Kinds, class Bits>
void write_scalar_tuple(std::uint64_t* out, std::size_t count, Kinds kinds, Bits bits) {
  using namespace wire::layout;
  constexpr std::uint32_t kData = wire::ValueWriter::kValueData;
  constexpr std::uint32_t kPointers = wire::ValueWriter::kValuePointers;
  std::memset(out, 0, scalar_tuple_words(count) * sizeof(std::uint64_t));
  out[0] = struct_pointer(0, 1, kData, kPointers);
  const auto tuple = static_cast<std::uint16_t>(wire::Value::TUPLE);
  std::memcpy(&out[1], &tuple, sizeof tuple);
  out[1 + kData] = list_pointer(1 + kData, 1 + kScalarValue, kCompositeElements, count * kScalarValue);
  out[1 + kScalarValue] = composite_tag(count, kData, kPointers);
  for (std::size_t i = 0; i < count; ++i) {
    std::uint64_t* element = out + 2 + kScalarValue + i * kScalarValue;
    const ValueKind kind = kinds(i);  // ValueKind follows the schema's order
    wire::ValueWriter::write_scalar(element, static_cast<std::uint16_t>(kind), bits(i), kind == ValueKind::boolean);
  }
}

}  // namespace

Payload Payload::scalars_in_block(std::span<const detail::Scalar> scalars) {
  const std::size_t count = scalars.size();
  if (count == 0 || count > wire::layout::kMaxCount / kScalarValue) {
    throw Error("Payload::of_scalars: " + std::to_string(count) + " scalars");
  }
  Impl* impl = Impl::make(scalar_tuple_words(count));
  write_scalar_tuple(
      reinterpret_cast<std::uint64_t*>(impl->words()), count, [&](std::size_t i) { return scalars[i].kind; },
      [&](std::size_t i) { return scalars[i].bits; });
  return Payload(impl);
}

std::size_t Payload::held_scalars(detail::Scalar (&out)[kHeldScalars]) const noexcept {
  for (std::size_t i = 0; i < held_; ++i) out[i] = {kinds_[i], bits_[i]};
  return held_;
}

std::size_t Payload::write_held(std::uint64_t* out) const noexcept {
  write_scalar_tuple(out, held_, [this](std::size_t i) { return kinds_[i]; }, [this](std::size_t i) { return bits_[i]; });
  return scalar_tuple_words(held_);
}

void Payload::read(FunctionRef<void(ValueReader)> read) const {
  if (held_ > 0) {
    alignas(capnp::word) WordRoom room;
    write_held(room);
    read(wire::wrap(capnp::readMessageUnchecked<Value>(reinterpret_cast<const capnp::word*>(room))));
    return;
  }
  if (impl_->other == nullptr) {
    // Built here, in one segment whose first word is the root pointer: trusted, read without a
    // message reader or limits (a reader per read costs more than the rest of a small task's
    // trip through the client).
    read(wire::wrap(capnp::readMessageUnchecked<Value>(impl_->words())));
    return;
  }
  // The reader is made and its root located inside guarded(): a truncated or corrupt buffer (a
  // result read from a pipe, say) surfaces as fanout::Error.
  const auto read_root = [&](capnp::MessageReader& message) {
    const auto root = guarded([&] {
      return impl_->root == wire::PayloadRoot::result_value ? message.getRoot<wire::Result>().getValue()
                                                            : message.getRoot<Value>();
    });
    read(wire::wrap(root));
  };
  const auto& other = *impl_->other;
  if (!other.segments.empty()) {
    std::size_t words = 0;
    for (const auto& segment : other.segments) words += segment.size();
    capnp::SegmentArrayMessageReader message(
        kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>(other.segments.data(), other.segments.size()),
        wire::reader_options(words));
    read_root(message);
    return;
  }
  std::optional<capnp::FlatArrayMessageReader> message;
  guarded([&] { message.emplace(other.flat, wire::reader_options(other.flat.size())); });
  read_root(*message);
}

std::span<const std::uint64_t> Payload::words(WordRoom& room) const noexcept {
  if (held_ > 0) return {room, write_held(room)};
  if (impl_ == nullptr || impl_->other != nullptr) return {};
  return {reinterpret_cast<const std::uint64_t*>(impl_->words()), impl_->inline_words};
}

std::size_t Payload::encoded_size() const {
  if (held_ > 0) return scalar_tuple_words(held_) * sizeof(capnp::word);
  if (impl_->other == nullptr) return impl_->inline_words * sizeof(capnp::word);
  std::size_t words = impl_->other->flat.size();
  for (const auto& segment : impl_->other->segments) words += segment.size();
  return words * sizeof(capnp::word);
}

// ---- wire helpers -----------------------------------------------------------------------------

namespace wire {

capnp::ReaderOptions reader_options(std::size_t size_words) noexcept {
  capnp::ReaderOptions options;
  // Each word may be visited a few times (a describe() after a failed decode); a message cannot
  // make us read more than a small multiple of itself.
  options.traversalLimitInWords = size_words * 8 + 1024;
  options.nestingLimit = 64;
  return options;
}

ValueBuilder wrap(Value::Builder builder) noexcept {
  ValueBuilder handle;
  handle.storage_ = store(builder);
  return handle;
}

ValueReader wrap(Value::Reader reader) noexcept {
  ValueReader handle;
  handle.storage_ = store(reader);
  return handle;
}

Value::Builder unwrap(ValueBuilder builder) noexcept { return load<Value::Builder>(builder.storage_); }
Value::Reader unwrap(ValueReader reader) noexcept { return load<Value::Reader>(reader.storage_); }

Payload payload_from_flat(kj::Array<capnp::word> words, PayloadRoot root) {
  auto* impl = Payload::Impl::make(0);
  const Payload payload(impl);
  impl->root = root;
  impl->other = std::make_unique<Payload::Impl::Other>();
  impl->other->flat = std::move(words);
  return payload;
}

kj::Array<capnp::word> to_flat(capnp::MessageBuilder& message) { return capnp::messageToFlatArray(message); }

}  // namespace wire

}  // namespace fanout
