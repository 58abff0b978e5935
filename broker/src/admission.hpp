// admission.hpp: how much each client may have at the broker at once, and all of them together
// (Config::max_client_tasks, max_client_bytes, max_total_tasks, max_total_bytes).
//
// A window is admitted before anything of it is kept: admit() either hands back a Hold on the
// client's budget for the window's tasks and bytes, or says why the broker is busy. The Hold
// lives in the window's Frame (records.hpp), so it is released exactly when the broker lets go of
// the window's bytes: when its last task settled, was dropped with its batch or its client, and
// no executor holds it. A client's entry goes with its last Hold, so a client that left costs
// nothing.
//
// Why counts of windows held and not of tasks queued: the memory a client costs the broker is the
// windows it sent (a frame stays whole while any of its tasks waits or runs), so that is what is
// capped; an honest client holds at most its window of 16,384 tasks per batch (docs/limits.md).
// Deferred batches are not counted here: they are bounded by the frame size and the journal.
//
// Results a client does not read cost the broker too (they wait in its socket's queue): the
// client says in each heartbeat how much of a batch it has read, and a client too far behind gets
// no more of its tasks dispatched until it catches up (back-pressure, not a refusal: an honest
// client that reads slowly only waits). What a client that lies about reading can make the
// broker queue is bounded by the socket's high-water mark (transport.cpp).
//
// Threads: the loop's thread only (Holds are released there too, with the frames).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>

#include <fanout/broker/broker.hpp>

#include "records.hpp"

namespace fanout::broker {

class Admission {
 public:
  struct Usage {
    std::size_t tasks = 0;
    std::size_t bytes = 0;
    std::size_t unread = 0;  // bytes of results and output sent and not yet reported read
  };

  // A window's share of its client's budget, given back when destroyed.
  class Hold {
   public:
    Hold(Admission& admission, PeerId client, Usage usage) noexcept
        : admission_(admission), client_(std::move(client)), usage_(usage) {}
    ~Hold() { admission_.release(client_, usage_); }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    Admission& admission_;
    PeerId client_;
    Usage usage_;
  };

  explicit Admission(const Config& config) : config_(config) {}

  // Admits a window of `tasks` tasks in `bytes` from `client`: a Hold on them, or (nothing
  // taken) the sentence that tells the client which cap it hit.
  std::variant<std::unique_ptr<Hold>, std::string> admit(const PeerId& client, std::size_t tasks, std::size_t bytes);

  // Bytes of results or output sent to `client` (sent), or reported read by it, or forgotten with
  // a batch that ended (read). A client over max_client_unread_bytes, or every client together
  // over max_total_unread_bytes, is behind: Dispatch gives its batches nothing until it reads.
  void sent(const PeerId& client, std::size_t bytes);
  void read(const PeerId& client, std::size_t bytes) noexcept;
  bool behind(const PeerId& client) const;

  // What `client` holds now (zero for a client with nothing).
  Usage of(const PeerId& client) const;
  Usage total() const noexcept { return total_; }
  // Clients holding anything: entries go with their last Hold.
  std::size_t clients() const noexcept { return by_client_.size(); }

 private:
  void release(const PeerId& client, Usage usage) noexcept;
  void forget_if_empty(std::unordered_map<PeerId, Usage>::iterator entry) noexcept;

  const Config& config_;
  std::unordered_map<PeerId, Usage> by_client_;
  Usage total_;
};

}  // namespace fanout::broker
