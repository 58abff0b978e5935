// deferred_endpoint.cpp: FANOUT_BROKER when set, else this program's local service.
#include "deferred_endpoint.hpp"

#include <cstdlib>

#include "local_service.hpp"

namespace fanout::detail {

std::optional<std::string> remote_broker() {
  const char* remote = std::getenv("FANOUT_BROKER");
  if (remote == nullptr || *remote == '\0') return std::nullopt;
  return std::string(remote);
}

std::string deferred_endpoint() {
  if (auto remote = remote_broker()) return *std::move(remote);
  return ensure_local_service();
}

}  // namespace fanout::detail
