// deferred_ledger.hpp: the journal side of deferred batches (docs/protocol.md, "Deferred
// batches"): what the broker has promised to run, made durable before it is acknowledged, and
// each task's attempts until it finishes or is dead.
//
// Owns the Journal (journal.hpp) of `--journal DIR`, a mirror of its state (every record is
// applied here as it is submitted, so the broker reads the state without waiting for the disk),
// the receipt counter, and the batches whose acknowledgement waits for their record to be durable.
// Knows nothing of queues: accepting a window's tasks into the queues, recovery and `fanout
// deferred` requests are DeferredBatches' (deferred_batches.hpp); Batches (batches.hpp) reports
// here how each attempt ended and requeues what the verdict says.
//
// Threads: the loop's thread only. The journal's writer thread is the journal's own; the loop
// polls ready_fd() and calls collect_durable() when it is readable.
//
// Promises: an `ack` with a receipt leaves only once the batch's record is durable; a window
// waiting for that when the journal fails is refused (kind `refused`), and failure() says why
// from then on (DeferredBatches refuses later windows with it). A journal failure stops
// durability, not the broker: the mirror goes on, and the failure is logged once. Without a
// journal nothing here is enabled: the mirror stays empty and no record is kept.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include <fanout/broker/broker.hpp>

#include "journal.hpp"
#include "outbox.hpp"
#include "records.hpp"

namespace fanout::broker {

class DeferredLedger {
 public:
  DeferredLedger(const Config& config, std::shared_ptr<spdlog::logger> logger, Outbox& outbox, Counters& counters);

  // Opens the journal in config.journal and makes what it recovered the mirror, which it returns
  // (payloads included). Throws fanout::Error as Journal's constructor does.
  const DeferredState& open();
  const RecoveryReport& recovery() const { return journal_->recovery(); }

  bool enabled() const noexcept { return journal_ != nullptr; }
  // Why the journal failed; empty while it works.
  const std::string& failure() const noexcept { return failure_; }
  // While the journal waits for disk space (journal.hpp): why; empty otherwise or when not enabled().
  std::string stalled() const { return journal_ ? journal_->stats().stalled : std::string(); }
  // Readable when collect_durable() has batches to acknowledge. Only when enabled().
  int ready_fd() const noexcept { return journal_->ready_fd(); }
  // The journal's counters (its syncs' times among them); nullopt without a journal.
  std::optional<JournalStats> journal_stats() const {
    return journal_ ? std::optional<JournalStats>(journal_->stats()) : std::nullopt;
  }
  // The state every record so far builds (empty without a journal).
  const DeferredState& state() const noexcept { return state_; }

  // True while batch `id` waits for its acknowledgement.
  bool awaiting(std::uint64_t id) const;

  // Gives a checked deferred window of `client` its receipt and journals it; the acknowledgement
  // follows from collect_durable(). A journal that fails here refuses the window.
  void submit(const PeerId& client, std::uint64_t id, FramePtr frame);

  struct Durable {
    std::uint64_t receipt;
    FramePtr frame;
  };
  // Acknowledges (with its receipt) every batch whose record is now durable, in submit order, and
  // returns them for the caller to queue. Counts them (Counters::deferred_accepted).
  std::vector<Durable> collect_durable();

  // Task `index` of `receipt` finished: recorded, and counted (Counters::deferred_done).
  void finished(std::uint64_t receipt, std::uint32_t index);

  enum class Verdict {
    ignored,  // not a pending task (any more): nothing recorded
    retry,    // the failed attempt is recorded; the task is to be queued again, at the back
    dead,     // its attempts are used up (config.deferred_attempts): recorded as dead, logged
  };
  // An attempt at task `index` of `receipt` failed with `kind` and `message`.
  Verdict failed_attempt(std::uint64_t receipt, std::uint32_t index, wire::ErrorKind kind, const std::string& message);

  // Applies `entry` to the mirror and queues it for the journal.
  void record(JournalRecord entry);

 private:
  void journal_failed(const std::string& why);

  // A deferred batch whose record is not durable yet.
  struct AwaitingAck {
    Token token;
    PeerId client;
    std::uint64_t batch_id;
    std::uint64_t receipt;
    FramePtr frame;
  };

  const Config& config_;
  std::shared_ptr<spdlog::logger> logger_;  // shared with the journal
  Outbox& outbox_;
  Counters& counters_;

  std::unique_ptr<Journal> journal_;
  std::string failure_;  // set once the journal failed: deferred batches are refused
  DeferredState state_;
  std::deque<AwaitingAck> awaiting_;
  std::uint64_t next_receipt_ = 1;
};

}  // namespace fanout::broker
