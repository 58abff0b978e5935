// deferred_batches.hpp: deferred batches as the broker's own work (docs/protocol.md, "Deferred
// batches"): a deferred window checked and handed to the journal, its tasks queued once durable
// (and again after a restart), and `fanout deferred` requests about dead tasks.
//
// Owns nothing but the rules: the journal side (receipts, records, acknowledgements, attempts)
// is the DeferredLedger's (deferred_ledger.hpp); the queued batches are Batches' (batches.hpp),
// made with Batches::open_deferred(), under the broker's deferred client, so that they take their
// turn in the round-robin like any client's.
//
// Threads: the loop's thread only.
//
// Promises: a deferred window is refused (kind `refused`) without a journal or once the journal
// failed, and (kind `badMessage`) unless it holds the whole batch, task i at index i, under a
// batch id not in use; a window taken is acknowledged only when durable (DeferredLedger). On
// recovery, pending tasks are queued, finished ones never run again, dead ones wait for `retry`;
// a batch that cannot be read back is logged and skipped. Does not: forward a deferred batch's
// results to anyone (Batches reports them to the ledger).
#pragma once

#include <optional>
#include <string>
#include <unordered_map>

#include <cstdint>

#include <spdlog/logger.h>

#include <fanout/broker/broker.hpp>

#include "batches.hpp"
#include "deferred_ledger.hpp"
#include "outbox.hpp"
#include "records.hpp"

namespace fanout::broker {

class DeferredBatches {
 public:
  DeferredBatches(const Config& config, spdlog::logger& logger, Outbox& outbox, DeferredLedger& ledger,
                  Batches& batches);

  // Opens the journal (config.journal) and queues every pending task it holds. Throws
  // fanout::Error as Journal's constructor does.
  void recover();

  // A window with `deferred` set. Returns false when it was refused before anything changed
  // (answered with an `ack` refusing it); true once it went to the journal, or was refused because
  // the journal failed on it. Throws kj::Exception for a task name that is not text, with nothing
  // changed.
  // `key` is the client's (empty without keys): the batch is that key's to list and drop.
  bool on_window(const PeerId& client, const std::string& key, wire::InMessage message);

  // The journal made records durable: acknowledge those batches and queue their tasks.
  void on_journal_ready();

  // `fanout deferred`: list, retry or drop dead tasks; answered with a `deferredReport`.
  // With `owner` (a client key that is no admin's), only the batches that key deferred since this
  // broker started are seen and changed.
  void on_request(const PeerId& peer, wire::DeferredRequest::Reader request, const std::optional<std::string>& owner);

 private:
  // Queues the pending tasks of deferred batch `receipt` (all of them when `state` is null).
  void queue(std::uint64_t receipt, FramePtr frame, const DeferredBatch* state);

  const Config& config_;
  spdlog::logger& logger_;
  Outbox& outbox_;
  DeferredLedger& ledger_;
  Batches& batches_;
  // Who deferred what (with keys only): batch id -> key until durable, then receipt -> key. Kept in
  // memory: after a restart, recovered batches are an admin's to manage (docs/security.md).
  std::unordered_map<std::uint64_t, std::string> owner_by_batch_;
  std::unordered_map<std::uint64_t, std::string> owner_by_receipt_;
};

}  // namespace fanout::broker
