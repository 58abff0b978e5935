#include "outbox.hpp"

#include "printable.hpp"

namespace fanout::broker {

void Outbox::count_refusal(const PeerId& peer, Refusal reason, const std::string& why) {
  ++counters_.dropped_messages;
  metrics_.refused(reason);
  if (refusal_log_.first(peer, reason)) {
    logger_.info("broker: refused a message from {} ({}): {}", wire::printable(peer, wire::kLogTextLimit),
                 refusal_label(reason), wire::printable(why, wire::kLogTextLimit));
  }
}

void Outbox::drop(const PeerId& peer, wire::ErrorKind kind, const std::string& why, std::optional<Refusal> reason) {
  count_refusal(peer, reason.value_or(refusal_of(kind)), why);
  reply_error(peer, kind, why);
}

void Outbox::unknown_peer(const PeerId& peer) {
  const std::string why = "unknown peer: announce first (the broker may have restarted)";
  count_refusal(peer, Refusal::unknown_peer, why);
  reply_error(peer, wire::ErrorKind::REFUSED, why);
}

void Outbox::refuse_window(const PeerId& client, std::uint64_t id, std::uint32_t count, const std::string& why,
                           wire::ErrorKind kind, std::optional<Refusal> reason) {
  count_refusal(client, reason.value_or(refusal_of(kind)), why);
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
  count_refusal(peer, reason, why);
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
