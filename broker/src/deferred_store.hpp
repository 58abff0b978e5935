// deferred_store.hpp: what the broker remembers about deferred batches, as records and as the
// state those records build. The journal (journal.hpp) makes the records durable; this file knows
// nothing about files, so the state machine is tested and reused on its own.
//
// A receipt (the broker's id for one accepted deferred batch) has a fixed number of task slots.
// Each slot moves through
//
//   pending --finished--> done
//   pending --failed attempt--> pending (attempts, last error recorded)
//   pending --dead--> dead --retried--> pending (attempts back to 0)
//                     dead --dropped--> dropped
//
// A batch whose every slot is done or dropped is settled and leaves the state: that is what lets
// compaction throw finished work away.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace fanout::broker {

inline constexpr std::size_t frame_header_bytes = 8;  // in the journal: u32 body length + u32 CRC32C

// ---- records: one per durable event, in the order the broker decided them ----

struct BatchAccepted {
  std::uint64_t receipt = 0;
  std::uint32_t task_count = 0;
  std::string payload;  // the TaskBatch frame as received (opaque here), may be many MiB
};
struct TaskFinished {
  std::uint64_t receipt = 0;
  std::uint32_t index = 0;
};
// `attempts` is the absolute count so far (not an increment), so replaying a record twice is
// harmless.
struct TaskFailedAttempt {
  std::uint64_t receipt = 0;
  std::uint32_t index = 0;
  std::uint32_t attempts = 0;
  std::string error;
};
// `kind` is the wire's ErrorKind value (schema/fanout.capnp); the store does not interpret it.
struct TaskDead {
  std::uint64_t receipt = 0;
  std::uint32_t index = 0;
  std::uint16_t kind = 0;
  std::string error;
};
struct DeadTaskRetried {
  std::uint64_t receipt = 0;
  std::uint32_t index = 0;
};
struct DeadTaskDropped {
  std::uint64_t receipt = 0;
  std::uint32_t index = 0;
};
// Written first in every compacted journal: receipts below `next_receipt` were handed out
// before, even when their batches have since been compacted away, so a restarted broker never
// reuses one.
struct Checkpoint {
  std::uint64_t next_receipt = 0;
};

using JournalRecord = std::variant<BatchAccepted, TaskFinished, TaskFailedAttempt, TaskDead, DeadTaskRetried,
                                   DeadTaskDropped, Checkpoint>;

// The receipt a record is about (0 for a Checkpoint).
std::uint64_t receipt_of(const JournalRecord& record) noexcept;

// ---- state ----

enum class TaskStatus : std::uint8_t { pending, done, dead, dropped };

struct TaskState {
  TaskStatus status = TaskStatus::pending;
  std::uint32_t attempts = 0;  // failed attempts since accepted or last retried
  std::uint16_t error_kind = 0;  // meaningful when dead
  std::string error;  // last failed attempt's error while pending; the fatal one when dead or dropped
};

struct DeferredBatch {
  std::uint32_t task_count = 0;
  // The TaskBatch frame. Filled in the state that Journal::open recovers; the journal's writer
  // keeps only where the bytes live in its file (below) and reads them back when compacting.
  std::string payload;
  std::uint64_t payload_offset = 0;
  std::uint64_t payload_size = 0;
  std::vector<TaskState> tasks;  // task_count entries
  std::uint32_t settled = 0;     // slots done or dropped; at task_count the batch leaves the state
  std::uint64_t snapshot_bytes = 0;  // what this batch costs in a compacted journal
};

// Why apply() left the state as it was. Not an error for the journal: a record that does not apply
// is ignored the same way on every replay, so the state stays a function of the record sequence.
enum class ApplyResult : std::uint8_t {
  applied,
  unknown_receipt,     // never accepted, or already settled and gone
  duplicate_receipt,   // BatchAccepted for a receipt that is live
  index_out_of_range,
  wrong_status,        // e.g. finishing a dead task, retrying a pending one
};
const char* describe(ApplyResult result) noexcept;

class DeferredState {
 public:
  // Applies one record. Never throws for any record content (replay feeds it whatever passed a
  // checksum); only std::bad_alloc escapes.
  ApplyResult apply(JournalRecord record);

  // As apply() for a BatchAccepted whose payload stays in a file: records where the bytes are and
  // keeps no copy. Used by the journal's writer.
  ApplyResult accept_at(std::uint64_t receipt, std::uint32_t task_count, std::uint64_t payload_offset,
                        std::uint64_t payload_size);

  // Live (unsettled) batches by receipt.
  const std::map<std::uint64_t, DeferredBatch>& batches() const noexcept { return batches_; }
  const DeferredBatch* find(std::uint64_t receipt) const;

  // Records that a live batch's payload has moved (the journal rewrote its file). No-op for a
  // receipt that is not live.
  void move_payload(std::uint64_t receipt, std::uint64_t payload_offset) noexcept;

  // One past the highest receipt ever accepted or checkpointed: where a restarted broker's
  // receipt counter continues.
  std::uint64_t next_receipt() const noexcept { return next_receipt_; }

  // Size in bytes of the records snapshot() returns, framing included, kept up to
  // date on every apply, so that deciding whether to compact costs nothing.
  std::uint64_t snapshot_bytes() const noexcept { return snapshot_bytes_; }

  // The records that rebuild this state from nothing: a Checkpoint, then per live batch its
  // BatchAccepted (with whatever payload the batch holds) and one or two records per slot that is
  // not a fresh pending one. Replaying them into an empty DeferredState gives an equal state.
  std::vector<JournalRecord> snapshot() const;

 private:
  ApplyResult accept(std::uint64_t receipt, std::uint32_t task_count, std::string payload,
                     std::uint64_t payload_offset, std::uint64_t payload_size);
  void set_task(std::uint64_t receipt, DeferredBatch& batch, std::uint32_t index, TaskState next);

  std::map<std::uint64_t, DeferredBatch> batches_;
  std::uint64_t next_receipt_ = 1;
  std::uint64_t snapshot_bytes_ = frame_header_bytes + 1 + 8;  // the Checkpoint
};

// ---- encoding (shared by the journal and the state's size accounting) ----

// A record's body: one kind byte, then its fields little-endian, strings as u32 length + bytes.
// The payload of a BatchAccepted is the tail of its body (not length-prefixed), so that the
// journal can write it straight from the caller's buffer.
enum class RecordKind : std::uint8_t {
  batch_accepted = 1,
  task_finished = 2,
  task_failed_attempt = 3,
  task_dead = 4,
  dead_task_retried = 5,
  dead_task_dropped = 6,
  checkpoint = 7,
};

// Appends the body of `record` to `out`, except a BatchAccepted's payload (the caller adds it).
void encode_body_prefix(const JournalRecord& record, std::string& out);

// Decodes a whole body. Returns false (leaving `record` unspecified) for a body that is not
// exactly one well-formed record: unknown kind, short or trailing bytes.
bool decode_body(const char* data, std::size_t size, JournalRecord& record);

// Bytes a record occupies in the journal file, framing included.
std::uint64_t framed_size(const JournalRecord& record) noexcept;

}  // namespace fanout::broker
