// outbox.hpp: everything the broker sends goes out through here, on its one ROUTER socket.
//
// Owns nothing but the way out: the socket belongs to the loop (loop.hpp), which creates the
// outbox beside it and hands it to every part that answers a peer. Besides sending a frame as it
// is, the outbox builds the broker's complaints (an `error` reply, a refused window's `ack`) and
// counts each of them as a dropped message (Counters::dropped_messages, and by reason in Metrics), so that every part
// refuses input the same way.
//
// Threads: the loop's thread only, like the socket.
//
// Promises: a send never blocks and never throws for a peer that is gone (ZMQ_ROUTER_MANDATORY
// makes that a `false`). Does not: queue, retry, or remember anything about peers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <spdlog/logger.h>
#include <zmq.hpp>

#include <fanout/broker/broker.hpp>

#include "metrics.hpp"
#include "records.hpp"
#include "transport.hpp"

namespace fanout::broker {

class Outbox {
 public:
  Outbox(zmq::socket_t& router, Counters& counters, Metrics& metrics, spdlog::logger& logger)
      : router_(router), counters_(counters), metrics_(metrics), logger_(logger) {}

  // Sends `frame` to `peer` as it is (the bytes are not copied). False when the peer is gone.
  bool send(std::string_view peer, zmq::message_t&& frame) { return wire::send_to(router_, peer, std::move(frame)); }

  // A message dropped: counted under `reason` (by default the one `kind` stands for,
  // refusal.hpp), and its sender told why with an `error` of `kind`.
  void drop(const PeerId& peer, wire::ErrorKind kind, const std::string& why,
            std::optional<Refusal> reason = std::nullopt);

  // A message from a peer the broker does not know (it never announced, or the broker restarted):
  // counted, and answered with `refused`, which tells a worker to announce again.
  void unknown_peer(const PeerId& peer);

  // Refuses a whole window of `count` tasks of batch `id`: counted (as `drop` does), and answered
  // with an `ack` that accepts nothing and carries the reason, so that every slot of the window
  // fails with it.
  void refuse_window(const PeerId& client, std::uint64_t id, std::uint32_t count, const std::string& why,
                     wire::ErrorKind kind = wire::ErrorKind::BAD_MESSAGE, std::optional<Refusal> reason = std::nullopt);

  // A message refused by the sender's key (roles.hpp): counted under `reason` and answered with
  // an `error` of kind `badMessage` when `reply` (kind `refused` would tell a client its broker
  // restarted, and a worker to announce again, forever). A refused window gets refuse_window.
  void refuse_message(const PeerId& peer, Refusal reason, const std::string& why, bool reply);

  // True the first time `peer` is refused for `reason` (then it is logged; after, only counted).
  // The refusals above log themselves at info; a caller that logs its own (at warning) asks first.
  bool first_refusal(const PeerId& peer, Refusal reason) { return refusal_log_.first(peer, reason); }

  // Tells `client` that deferred batch `id` of `count` tasks is durable, as `receipt`.
  void acknowledge_deferred(const PeerId& client, std::uint64_t id, std::uint32_t count, std::uint64_t receipt);

 private:
  void reply_error(const PeerId& peer, wire::ErrorKind kind, const std::string& why);
  // Every refusal: the dropped-message count and the reason's, and a line at info the first time
  // this peer is refused for this reason.
  void count_refusal(const PeerId& peer, Refusal reason, const std::string& why);

  zmq::socket_t& router_;
  Counters& counters_;
  Metrics& metrics_;
  spdlog::logger& logger_;
  RefusalLog refusal_log_;
};

}  // namespace fanout::broker
