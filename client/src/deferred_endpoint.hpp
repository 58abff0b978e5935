// deferred_endpoint.hpp: where the process driver sends deferred batches in local mode.
//
// A deferred batch must outlive the program that deferred it, so in local mode (no FANOUT_BROKER)
// it cannot go to the embedded broker, which dies with the program. It goes to a per-user local
// service with a journal instead.
#pragma once

#include <optional>
#include <string>

namespace fanout::detail {

// FANOUT_BROKER when it is set and not empty: remote mode. nullopt: local mode.
std::optional<std::string> remote_broker();

// The ZeroMQ endpoint of the local service that keeps deferred batches for this user, started if
// it has to be; the process driver calls it only in local mode. The service must answer a deferred
// `tasks` window with an `ack` carrying a receipt (or `refused`), as a broker with a journal does.
// Throws fanout::Error, saying what to do, when there is no such service.
std::string deferred_endpoint();

}  // namespace fanout::detail
