// fuzz_frame.hpp: what every fuzz target shares: the fuzzer's bytes as a ZeroMQ frame, parsed
// the way the peer that receives it parses it, and a walk that reads every field a handler may
// read (texts, data, values) so that a bad pointer anywhere shows up under the sanitizers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <kj/exception.h>
#include <zmq.hpp>

#include <fanout/error.hpp>
#include <fanout/value.hpp>

#include "transport.hpp"

namespace fanout_fuzz {

namespace wire = fanout::wire;

// The bytes as the frame a socket would deliver, parsed under `check` (the broker: whole, and
// whole_except_results for what it takes from peers; clients and workers: envelope) with the
// default frame limit.
inline std::optional<wire::InMessage> parse(const std::uint8_t* data, std::size_t size, wire::InMessage::Check check) {
  zmq::message_t frame(data, size);
  return wire::InMessage::parse(std::move(frame), nullptr, wire::kDefaultMaxFrameBytes, check);
}

// Reads a Value as a client or a task would: its description (which walks it all) under the
// codec's own error handling. A bad message may throw fanout::Error (a TypeMismatch among them)
// or kj::Exception; nothing else, and nothing may crash.
inline void read_value(wire::Value::Reader value) {
  try {
    (void)wire::wrap(value).describe();
  } catch (const fanout::Error&) {
  } catch (const kj::Exception&) {
  }
}

inline std::size_t touch(capnp::Text::Reader text) { return text.size() == 0 ? 0 : std::size_t(text.cStr()[0]) + text.size(); }
inline std::size_t touch(capnp::Data::Reader bytes) { return bytes.size() == 0 ? 0 : std::size_t(bytes[0]) + bytes.size(); }

}  // namespace fanout_fuzz
