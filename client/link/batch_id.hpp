// batch_id.hpp: the ids clients give their batches.
#pragma once

#include <cstdint>
#include <random>

namespace fanout::detail {

// A random, non-zero 64-bit batch id: unique among the batches in flight at a broker with
// overwhelming probability, with no coordination between clients.
inline std::uint64_t random_batch_id() {
  static thread_local std::mt19937_64 generator{std::random_device{}()};
  std::uint64_t id = 0;
  while (id == 0) id = generator();
  return id;
}

}  // namespace fanout::detail
