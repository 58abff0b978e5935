// refusal.hpp: why the broker refused or dropped a message, as one closed set of reasons: the
// label values of fanout_broker_messages_refused_total{reason}, of `fanout status` and of the
// status page. Every part that refuses input says which of these it is (through the outbox).
#pragma once

#include <array>
#include <cstddef>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "wire.hpp"

namespace fanout::broker {

enum class Refusal : std::size_t {
  bad_message,       // unreadable, or of another protocol version
  refused,           // readable, but not what this peer may send now (e.g. a worker submitting)
  unknown_peer,      // from a peer that never announced (or announced to a broker since restarted)
  over_limit,        // a frame or a list count over the limits (limits.hpp)
  busy,              // a window past a client's or the broker's caps (admission.hpp)
  not_a_client,      // with keys: the sender's key is not a client's (roles.hpp)
  not_a_worker,      //   ... not a worker's
  not_an_admin,      //   ... not an admin's
  foreign_executor,  // a supervisor reporting about another worker's executor
  unknown_key,       // with keys: the sender's key is not listed (any more)
};
inline constexpr std::size_t kRefusals = static_cast<std::size_t>(Refusal::unknown_key) + 1;

constexpr std::string_view refusal_label(Refusal refusal) noexcept {
  constexpr std::array<std::string_view, kRefusals> kLabels{
      "bad_message", "refused", "unknown_peer", "over_limit", "busy", "not_a_client", "not_a_worker", "not_an_admin",
      "foreign_executor", "unknown_key"};
  return kLabels[static_cast<std::size_t>(refusal)];
}

// A message answered with an error of `kind` and no reason of its own is counted as this.
constexpr Refusal refusal_of(wire::ErrorKind kind) noexcept {
  return kind == wire::ErrorKind::BAD_MESSAGE ? Refusal::bad_message : Refusal::refused;
}

// Remembers which peers were refused for which reason, so that each (peer, reason) is logged
// once: a peer that keeps sending what it may not send costs a lookup, not a log line each time.
// Bounded: past kLimit entries it starts over (a few repeats logged).
class RefusalLog {
 public:
  // True the first time this peer is refused for this reason.
  bool first(std::string_view peer, Refusal reason) {
    if (seen_.size() >= kLimit) seen_.clear();
    return seen_.emplace(std::string(peer), reason).second;
  }

 private:
  static constexpr std::size_t kLimit = 4096;
  std::set<std::pair<std::string, Refusal>> seen_;
};

}  // namespace fanout::broker
