// timing.hpp: the protocol's timing defaults, defined once for every peer (docs/protocol.md,
// "Liveness"). Each part may be configured otherwise (fanout-broker --heartbeat-ms...), but what
// it assumes of a peer it cannot configure is these.
#pragma once

#include <chrono>

namespace fanout::wire {

// Every peer sends something (a heartbeat when it has nothing else) at least this often.
inline constexpr std::chrono::milliseconds kHeartbeatInterval{500};
// The broker takes a peer silent this long for dead; a worker takes a broker silent this long
// for gone and reconnects.
inline constexpr std::chrono::milliseconds kPeerLiveness{2000};
// A client with work out takes a broker silent this long for gone. Longer than kPeerLiveness: a
// broker under load answers late, and a client's work is not lost to a slow broker.
inline constexpr std::chrono::milliseconds kBrokerSilence{4000};

}  // namespace fanout::wire
