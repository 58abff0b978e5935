// value.cpp: ValueBuilder / ValueReader / Payload over the capnp Value struct.
#include <fanout/value.hpp>

#include <algorithm>
#include <cstring>
#include <new>
#include <optional>
#include <vector>

#include <fanout/error.hpp>
#include <kj/exception.h>

#include "limits.hpp"
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

void ValueBuilder::set_none() { wire::unwrap(*this).setNone(); }
void ValueBuilder::set_bool(bool value) { wire::unwrap(*this).setBool(value); }
void ValueBuilder::set_int(std::int64_t value) { wire::unwrap(*this).setInt(value); }
void ValueBuilder::set_uint(std::uint64_t value) { wire::unwrap(*this).setUint(value); }
void ValueBuilder::set_float32(float value) { wire::unwrap(*this).setFloat32(value); }
void ValueBuilder::set_float64(double value) { wire::unwrap(*this).setFloat64(value); }

void ValueBuilder::set_text(std::string_view value) {
  // initText + copy rather than setText: a string_view need not be NUL-terminated.
  auto text = wire::unwrap(*this).initText(static_cast<unsigned>(value.size()));
  if (!value.empty()) std::memcpy(text.begin(), value.data(), value.size());
}

void ValueBuilder::set_bytes(std::span<const std::byte> value) {
  auto data = wire::unwrap(*this).initBytes(static_cast<unsigned>(value.size()));
  if (!value.empty()) std::memcpy(data.begin(), value.data(), value.size());
}

SequenceBuilder ValueBuilder::init_list(std::size_t size) {
  return make_sequence(wire::unwrap(*this).initList(static_cast<unsigned>(size)));
}

SequenceBuilder ValueBuilder::init_tuple(std::size_t size) {
  return make_sequence(wire::unwrap(*this).initTuple(static_cast<unsigned>(size)));
}

MapBuilder ValueBuilder::init_map(std::size_t size) {
  MapBuilder builder;
  builder.storage_ = store(wire::unwrap(*this).initMap(static_cast<unsigned>(size)));
  return builder;
}

ValueBuilder ValueBuilder::init_some() { return wire::wrap(wire::unwrap(*this).initSome()); }

std::size_t SequenceBuilder::size() const { return load<SequenceList::Builder>(storage_).size(); }

ValueBuilder SequenceBuilder::operator[](std::size_t index) const {
  return wire::wrap(load<SequenceList::Builder>(storage_)[static_cast<unsigned>(index)]);
}

std::size_t MapBuilder::size() const { return load<EntryList::Builder>(storage_).size(); }

ValueBuilder MapBuilder::key(std::size_t index) const {
  return wire::wrap(load<EntryList::Builder>(storage_)[static_cast<unsigned>(index)].getKey());
}

ValueBuilder MapBuilder::value(std::size_t index) const {
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

struct Payload::Impl {
  // Exactly one of these holds the encoding. Small values are flattened into one exact-size
  // buffer (tens of bytes per call, which matters for million-task batches); large ones keep the
  // builder's segments so that big byte strings are not copied a second time.
  kj::Array<capnp::word> flat;
  std::unique_ptr<capnp::MallocMessageBuilder> builder;
  std::vector<kj::ArrayPtr<const capnp::word>> segments;
  wire::PayloadRoot root = wire::PayloadRoot::value;
  // Built here by Payload::build, one segment: read without a message reader or limits (a reader
  // per read costs more than the rest of a small task's trip through the client).
  bool own_single_segment = false;
};

namespace {

// Words a single-segment encoding may have to be flattened rather than kept as a builder.
constexpr unsigned kFlattenLimitWords = 512;
constexpr unsigned kFirstSegmentWords = 64;

std::shared_ptr<const Payload::Impl> none_payload() {
  static const auto none = [] {
    auto impl = std::make_shared<Payload::Impl>();
    capnp::MallocMessageBuilder message(8);
    message.initRoot<Value>().setNone();
    impl->flat = capnp::messageToFlatArray(message);
    impl->own_single_segment = true;
    return std::shared_ptr<const Payload::Impl>(std::move(impl));
  }();
  return none;
}

}  // namespace

Payload::Payload() : impl_(none_payload()) {}
Payload::~Payload() = default;
Payload::Payload(const Payload&) = default;
Payload& Payload::operator=(const Payload&) = default;
Payload::Payload(Payload&&) noexcept = default;
Payload& Payload::operator=(Payload&&) noexcept = default;
Payload::Payload(std::shared_ptr<const Impl> impl) noexcept : impl_(std::move(impl)) {}

Payload Payload::build(FunctionRef<void(ValueBuilder)> fill) {
  auto builder = std::make_unique<capnp::MallocMessageBuilder>(kFirstSegmentWords);
  fill(wire::wrap(builder->initRoot<Value>()));
  auto impl = std::make_shared<Impl>();
  const auto segments = builder->getSegmentsForOutput();
  if (segments.size() == 1 && segments[0].size() <= kFlattenLimitWords) {
    impl->flat = capnp::messageToFlatArray(segments);
    impl->own_single_segment = true;
  } else {
    impl->segments.assign(segments.begin(), segments.end());
    impl->builder = std::move(builder);
  }
  return Payload(std::move(impl));
}

void Payload::read(FunctionRef<void(ValueReader)> read) const {
  // The reader is made and its root located inside guarded(): a truncated or corrupt buffer (a
  // result read from a pipe, say) surfaces as fanout::Error.
  const auto read_root = [&](capnp::MessageReader& message) {
    const auto root = guarded([&] {
      return impl_->root == wire::PayloadRoot::result_value ? message.getRoot<wire::Result>().getValue()
                                                            : message.getRoot<Value>();
    });
    read(wire::wrap(root));
  };
  if (impl_->builder) {
    std::size_t words = 0;
    for (const auto& segment : impl_->segments) words += segment.size();
    capnp::SegmentArrayMessageReader message(
        kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>(impl_->segments.data(), impl_->segments.size()),
        wire::reader_options(words));
    read_root(message);
    return;
  }
  if (impl_->own_single_segment) {
    // The flat form of a one-segment message is one word of segment table, then the segment,
    // whose first word is the root pointer.
    read(wire::wrap(capnp::readMessageUnchecked<Value>(impl_->flat.begin() + 1)));
    return;
  }
  std::optional<capnp::FlatArrayMessageReader> message;
  guarded([&] { message.emplace(impl_->flat, wire::reader_options(impl_->flat.size())); });
  read_root(*message);
}

std::size_t Payload::encoded_size() const {
  if (!impl_->builder) return impl_->flat.size() * sizeof(capnp::word);
  std::size_t words = 0;
  for (const auto& segment : impl_->segments) words += segment.size();
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
  auto impl = std::make_shared<Payload::Impl>();
  impl->flat = std::move(words);
  impl->root = root;
  return Payload(std::move(impl));
}

kj::Array<capnp::word> to_flat(capnp::MessageBuilder& message) { return capnp::messageToFlatArray(message); }

}  // namespace wire

}  // namespace fanout
