// deferred_endpoint.cpp: a placeholder until the per-user local service exists.
#include "deferred_endpoint.hpp"

#include <cstdlib>

#include <fanout/error.hpp>

namespace fanout::detail {

std::string deferred_endpoint() {
  if (const char* remote = std::getenv("FANOUT_BROKER"); remote != nullptr && *remote != '\0') return remote;
  throw Error("deferred batches in local mode need the local service (not built yet); set FANOUT_BROKER");
}

}  // namespace fanout::detail
