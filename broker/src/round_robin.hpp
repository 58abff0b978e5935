// round_robin.hpp: the order in which queued work is served (docs/protocol.md, "Fairness"):
// clients in turn, and within a client its batches in turn, so that a 3-task batch submitted
// while a 1,000,000-task batch runs is served at the next free credit.
//
// Owns the turn order only: which clients have batches, and the ids of each one's batches. It
// holds no batch itself. Batches (batches.hpp) enters a batch when it creates one and takes it out
// when it forgets it; Dispatch (dispatch.hpp) walks the turns with serve_one().
//
// Threads: the loop's thread only.
//
// Promises: every batch entered and not yet removed is offered once per full turn of its client's
// list, and every client once per full turn of the ring, wherever the previous walk stopped.
// Does not: look at a batch's queue or decide whether it may run (the caller's `take` does).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <utility>

#include "records.hpp"

namespace fanout::broker {

class RoundRobin {
 public:
  // Appends batch `id` to `client`'s turns (the client joins the ring if it was not in it).
  void enter(const PeerId& client, std::uint64_t id) {
    batches_[client].push_back(id);
    if (std::find(ring_.begin(), ring_.end(), client) == ring_.end()) ring_.push_back(client);
  }

  // Takes batch `id` out of `client`'s turns. The client keeps its place in the ring.
  void remove(const PeerId& client, std::uint64_t id) {
    if (auto found = batches_.find(client); found != batches_.end()) std::erase(found->second, id);
  }

  // Takes `client` out of the ring and returns the batches it had, in turn order.
  std::deque<std::uint64_t> remove_client(const PeerId& client) {
    std::deque<std::uint64_t> its;
    if (auto found = batches_.find(client); found != batches_.end()) {
      its = std::move(found->second);
      batches_.erase(found);
    }
    std::erase(ring_, client);
    return its;
  }

  // Offers batch ids to `take` (bool(std::uint64_t)) in turn order, starting with the next client
  // and that client's next batch, until one is taken; returns whether one was. Every client and
  // batch offered moves to the back of its turn, whatever `take` said, so the next call starts
  // with the next one.
  template <class Take>
  bool serve_one(Take&& take) {
    const std::size_t candidates = ring_.size();
    for (std::size_t turn = 0; turn < candidates; ++turn) {
      const PeerId client = ring_.front();
      ring_.pop_front();
      ring_.push_back(client);
      auto found = batches_.find(client);
      if (found == batches_.end()) continue;
      auto& order = found->second;
      for (std::size_t b = 0; b < order.size(); ++b) {
        const std::uint64_t id = order.front();
        order.pop_front();
        order.push_back(id);
        if (take(id)) return true;
      }
    }
    return false;
  }

 private:
  std::deque<PeerId> ring_;                                          // clients in turn order
  std::unordered_map<PeerId, std::deque<std::uint64_t>> batches_;    // each client's batches in turn order
};

}  // namespace fanout::broker
