// deferred_endpoint.cpp: FANOUT_BROKER when set, else this program's local service.
#include "deferred_endpoint.hpp"

#include <cstdlib>

#include "local_service.hpp"

namespace fanout::detail {

std::string deferred_endpoint() {
  if (const char* remote = std::getenv("FANOUT_BROKER"); remote != nullptr && *remote != '\0') return remote;
  return ensure_local_service();
}

}  // namespace fanout::detail
