// wire.hpp: the Cap'n Proto side of the schema library, for fanout's own parts (client drivers,
// broker, worker). Never included from a public header.
#pragma once

#include <string_view>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include <fanout/value.hpp>

#include "fanout.capnp.h"

namespace fanout::wire {

// The task name of shell commands (Task.shell set): what executors of --allow-shell workers
// announce, what the broker routes one command per executor, what remote pools send.
inline constexpr std::string_view kShellTaskName = "fanout.shell";
// The most slots of a unit (fanout.capnp, Task.slots) a broker accepts and an executor runs;
// clients send at most that many.
inline constexpr std::uint32_t kMostUnitSlots = 1024;
// The most arguments per slot of a unit laid out together (Task.scalarArgs) an executor runs.
inline constexpr std::size_t kMostScalarArity = 8;

// Limits for reading a message of `size_words` from a peer: the traversal limit is proportional to
// the message (so a small hostile message cannot make us walk gigabytes) and nesting is capped.
capnp::ReaderOptions reader_options(std::size_t size_words) noexcept;

// Handles <-> capnp. The handles are plain storage for the capnp builder/reader of a Value;
// unwrap(ValueBuilder) is for builders made by wrap(), never for Payload::build's direct ones.
ValueBuilder wrap(Value::Builder builder) noexcept;
ValueReader wrap(Value::Reader reader) noexcept;
Value::Builder unwrap(ValueBuilder builder) noexcept;
Value::Reader unwrap(ValueReader reader) noexcept;

// A tuple of exactly out.size() bools and numbers into `out` (ValueReader::read_scalars, without
// the handle); false for anything else, or an unreadable value.
bool read_scalar_tuple(Value::Reader value, std::span<detail::Scalar> out) noexcept;
// A bool or number into `value`, as its Codec writes it.
void write_scalar(Value::Builder value, const detail::Scalar& scalar);

// A Payload whose Value lives inside a larger message: e.g. the `value` of a Result read from a
// pipe. `words` holds the whole flat message; `root_of` locates the Value in it.
enum class PayloadRoot { value, result_value };
Payload payload_from_flat(kj::Array<capnp::word> words, PayloadRoot root);

// Serializes a message into one contiguous, 8-byte aligned buffer ready for a pipe or a frame.
kj::Array<capnp::word> to_flat(capnp::MessageBuilder& message);

}  // namespace fanout::wire
