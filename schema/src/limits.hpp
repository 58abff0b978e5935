// limits.hpp: how much a peer may make a fanout process read, iterate or allocate, checked before
// any of it is done.
//
// Two bounds. The frame: ZMQ_MAXMSGSIZE on every socket and InMessage::parse refuse frames above
// max_frame_bytes (16 MiB unless FANOUT_MAX_FRAME_BYTES or a --max-frame-bytes flag says
// otherwise), a few MiB above the largest frame fanout itself sends (a client window holds at most
// 4 MiB of arguments, an executor's results message leaves once it holds kResultsFlushBytes).
// The counts: every list a peer's message claims is checked against the bytes that carry it.
// Cap'n Proto lets a list of zero-sized elements (empty structs, Void) claim 2^29 elements in one
// word, and its traversal limit does not charge for them; a loop over such a list, or a reserve()
// of its size, is the amplification (a 72-byte frame, 2^29 tasks). Every element fanout writes
// costs at least one byte, so a list is refused when it claims more elements than it has bytes.
//
// Promises: every check here is O(1) per list (no walk of the message), throws nothing, and
// names in its answer what was refused and why, for the error sent back to the peer.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include <capnp/any.h>

#include "wire.hpp"

namespace fanout::wire {

// The largest frame fanout's sockets accept by default (ZMQ_MAXMSGSIZE, InMessage::parse).
inline constexpr std::size_t kDefaultMaxFrameBytes = std::size_t{16} << 20;
// The smallest limit that may be configured: every control message and a window of small tasks
// must fit.
inline constexpr std::size_t kMinMaxFrameBytes = std::size_t{64} << 10;
// An executor's `results` message leaves once it holds this much, so that results of many quick
// tasks with large values never add up to a frame over the limit.
inline constexpr std::size_t kResultsFlushBytes = std::size_t{4} << 20;

// FANOUT_MAX_FRAME_BYTES when set (a byte count, at least kMinMaxFrameBytes), else
// kDefaultMaxFrameBytes: the one knob for broker, worker and client, so that all three agree
// where they share an environment. Throws fanout::Error for a value that is not such a count.
std::size_t max_frame_bytes_from_env();

// max_frame_bytes_from_env(), read once per process: what a client and the sockets made with
// default arguments use. Throws fanout::Error (each time it is asked) when the variable is bad.
std::size_t max_frame_bytes();

// Parses a byte count as the --max-frame-bytes flags take it: digits, optionally followed by
// K, M or G (powers of 1024). nullopt for anything else or below kMinMaxFrameBytes.
std::optional<std::size_t> parse_frame_bytes(const std::string& text);

// A list whose elements take no bytes (a list of Void, or of structs with no data and no
// pointers), which can therefore claim any count: the amplification. Looks at the list's element
// size and its first element only.
bool amplified(capnp::AnyList::Reader list);

// Checks every list of `envelope` that its receiver iterates (a window's tasks and their argv and
// env, results, announced task names, handed-back tasks, status and deferred reports) against
// the bytes that carry it. Returns why the message is refused, or nullopt when every count is
// honest. Assumes the message passed InMessage::parse (pointers in bounds).
std::optional<std::string> check_counts(Envelope::Reader envelope);

}  // namespace fanout::wire
