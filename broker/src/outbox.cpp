#include "outbox.hpp"

namespace fanout::broker {

void Outbox::drop(const PeerId& peer, wire::ErrorKind kind, const std::string& why,
                  std::optional<Metrics::Reason> reason) {
  ++counters_.dropped_messages;
  if (reason) {
    metrics_.refused(*reason);
  } else {
    metrics_.refused(kind);
  }
  reply_error(peer, kind, why);
}

void Outbox::unknown_peer(const PeerId& peer) {
  ++counters_.dropped_messages;
  metrics_.unknown_peer();
  reply_error(peer, wire::ErrorKind::REFUSED, "unknown peer: announce first (the broker may have restarted)");
}

void Outbox::refuse_window(const PeerId& client, std::uint64_t id, std::uint32_t count, const std::string& why,
                           wire::ErrorKind kind, std::optional<Metrics::Reason> reason) {
  ++counters_.dropped_messages;
  if (reason) {
    metrics_.refused(*reason);
  } else {
    metrics_.refused(kind);
  }
  wire::OutMessage out;
  auto ack = out.envelope().initAck();
  ack.setBatchId(id);
  ack.setAccepted(0);
  auto refused = ack.initRefused();
  refused.setKind(kind);
  refused.setMessage(why + " (" + std::to_string(count) + " task(s) refused)");
  refused.setRanOn("broker");
  send(client, out.frame());
}

void Outbox::refuse_for(const PeerId& peer, std::string_view reason, const std::string& why, bool reply) {
  ++counters_.dropped_messages;
  metrics_.refused_for(reason);
  if (reply) reply_error(peer, wire::ErrorKind::BAD_MESSAGE, why);
}

void Outbox::refuse_for(const PeerId& client, std::string_view reason, const std::string& why, std::uint64_t id,
                        std::uint32_t count) {
  ++counters_.dropped_messages;
  metrics_.refused_for(reason);
  wire::OutMessage out;
  auto ack = out.envelope().initAck();
  ack.setBatchId(id);
  ack.setAccepted(0);
  auto refused = ack.initRefused();
  refused.setKind(wire::ErrorKind::REFUSED);
  refused.setMessage(why + " (" + std::to_string(count) + " task(s) refused)");
  refused.setRanOn("broker");
  send(client, out.frame());
}

void Outbox::acknowledge_deferred(const PeerId& client, std::uint64_t id, std::uint32_t count, std::uint64_t receipt) {
  wire::OutMessage out;
  auto ack = out.envelope().initAck();
  ack.setBatchId(id);
  ack.setAccepted(count);
  ack.setReceipt(std::to_string(receipt));
  send(client, out.frame());
}

void Outbox::reply_error(const PeerId& peer, wire::ErrorKind kind, const std::string& why) {
  wire::OutMessage out;
  auto error = out.envelope().initError();
  error.setKind(kind);
  error.setMessage(why);
  error.setRanOn("broker");
  send(peer, out.frame());
}

}  // namespace fanout::broker
