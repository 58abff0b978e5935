// transport.hpp: Envelopes over ZeroMQ, for fanout's own parts (broker, worker, process driver).
//
// One ZeroMQ message = one frame = one Envelope in capnp's flat format (ROUTER sockets add the
// routing-id frame in front). Building hands the encoded words to ZeroMQ without a copy; reading
// uses the received frame in place when it is 8-byte aligned (it copies once otherwise), always
// under reader limits proportional to the frame.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <zmq.hpp>

#include "limits.hpp"
#include "wire.hpp"

namespace fanout::wire {

class FrameBuilder;

// An Envelope under construction. It is built in a first segment of `first_segment_words` (more
// segments only when it outgrows that), preceded by a word kept free for capnp's segment table,
// so that a message of one segment becomes its frame without a copy.
class OutMessage {
 public:
  OutMessage();
  explicit OutMessage(unsigned first_segment_words);
  ~OutMessage();
  OutMessage(OutMessage&&) noexcept;
  OutMessage& operator=(OutMessage&&) noexcept;

  // The envelope, with `version` already set.
  Envelope::Builder envelope() noexcept { return envelope_; }
  capnp::MessageBuilder& builder() noexcept;

  // The encoded frame; hands ownership of the words to ZeroMQ: a message of one segment (sized
  // right) is not copied at all, one of several is copied once into capnp's flat format. Call
  // once; the message is spent afterwards.
  zmq::message_t frame();

 private:
  std::unique_ptr<FrameBuilder> builder_;
  Envelope::Builder envelope_;
};

// A received Envelope. Keeps the frame alive; readers obtained from it are valid as long as it.
class InMessage {
 public:
  // How much of a message parse() checks.
  enum class Check {
    // The frame and the envelope: the rest is checked by capnp as it is read, and a read of a
    // bad part throws kj::Exception. For peers that only hear from the broker, which checks
    // whole every frame it forwards and builds the others itself.
    envelope,
    // Every pointer in the message, now (bounds, nesting, no capabilities, within the traversal
    // limit); afterwards reading or copying any part, any number of times, cannot fail except on
    // a pointer of the wrong kind (a list where a struct belongs). For the broker, which hears
    // from anyone and must keep serving.
    whole,
    // As `whole`, except a `results` message, which is checked as `envelope`: the broker reads
    // only a few fields of each result, all on arrival (Batches::on_results), and forwards the
    // frame unread to a client, which reads each result under a guard of its own (a malformed one
    // fails its slot only). Walking every result whole cost the broker as much as the rest of its
    // handling of them.
    whole_except_results,
  };

  // Why parse() refused a frame, for the refusal's count.
  enum class Fault {
    unreadable,  // bad pointers, bad size
    over_limit,  // larger than `max_bytes`, or a list claiming more elements than it has bytes
    other_version,  // of another protocol version (the reason quotes the peer's error, if it is one)
  };

  // Parses `frame`. On a malformed frame (bad size, bad pointers, another protocol version, a
  // frame over `max_bytes`, a list whose count its bytes cannot hold: limits.hpp) returns nullopt
  // and, if `error` is given, says why in a sentence (and `fault`, if given, which kind of fault).
  static std::optional<InMessage> parse(zmq::message_t&& frame, std::string* error = nullptr,
                                        std::size_t max_bytes = max_frame_bytes(), Check check = Check::envelope,
                                        Fault* fault = nullptr);

  Envelope::Reader envelope() const noexcept { return envelope_; }
  // The frame as received, e.g. to forward it unchanged.
  zmq::message_t& frame() noexcept { return frame_; }
  std::size_t size() const noexcept { return frame_.size(); }

  InMessage(InMessage&&) noexcept = default;
  InMessage& operator=(InMessage&&) noexcept = default;
  InMessage(const InMessage&) = delete;
  InMessage& operator=(const InMessage&) = delete;
  ~InMessage();

 private:
  InMessage() = default;

  zmq::message_t frame_;
  kj::Array<capnp::word> aligned_copy_;  // only when the frame was not 8-byte aligned
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
  Envelope::Reader envelope_;
};

// Socket options every fanout socket gets: no linger on close, bounded frame size, generous
// high-water marks (flow control is fanout's own, by windows and credit).
void configure_socket(zmq::socket_t& socket, std::size_t frame_limit = max_frame_bytes());

// Sends `frame` to the peer `routing_id` on a ROUTER socket. Returns false when the peer is gone
// (with ZMQ_ROUTER_MANDATORY) or the send would block; never throws for those.
bool send_to(zmq::socket_t& router, std::string_view routing_id, zmq::message_t&& frame);

// Milliseconds since the epoch (for heartbeats' sentUnixMs, deadlines that cross machines).
std::int64_t unix_ms() noexcept;

}  // namespace fanout::wire
