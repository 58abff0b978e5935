#include "outbox.hpp"

namespace fanout::broker {

void Outbox::count_refusal(Refusal reason) {
  ++counters_.dropped_messages;
  metrics_.refused(reason);
}

void Outbox::drop(const PeerId& peer, wire::ErrorKind kind, const std::string& why, std::optional<Refusal> reason) {
  count_refusal(reason.value_or(refusal_of(kind)));
  reply_error(peer, kind, why);
}

void Outbox::unknown_peer(const PeerId& peer) {
  count_refusal(Refusal::unknown_peer);
  reply_error(peer, wire::ErrorKind::REFUSED, "unknown peer: announce first (the broker may have restarted)");
}

void Outbox::refuse_window(const PeerId& client, std::uint64_t id, std::uint32_t count, const std::string& why,
                           wire::ErrorKind kind, std::optional<Refusal> reason) {
  count_refusal(reason.value_or(refusal_of(kind)));
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

void Outbox::refuse_message(const PeerId& peer, Refusal reason, const std::string& why, bool reply) {
  count_refusal(reason);
  if (reply) reply_error(peer, wire::ErrorKind::BAD_MESSAGE, why);
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
