// journal.hpp: the broker's durable journal of deferred batches (`fanout-broker --journal DIR`).
//
// The broker acknowledges a deferred batch only once its BatchAccepted record is on disk. The
// broker's ZeroMQ loop is single-threaded, so the journal never blocks it on the disk: submit()
// queues a record and returns its token at once; a writer thread appends everything queued so far
// and makes it durable with one fdatasync (group commit: however many records arrive while one
// fdatasync runs share the next one); then ready_fd() becomes readable and collect_durable() says
// which tokens are durable.
//
//   Journal journal(JournalOptions{.directory = dir, .logger = log});
//   DeferredState state = journal.take_recovered();      // what survived the last run
//   Token t = journal.submit(BatchAccepted{...});        // never blocks on the disk
//   ... zmq::poll on journal.ready_fd() (POLLIN) next to the sockets ...
//   Token through = journal.collect_durable();           // every token <= through is durable:
//                                                        // acknowledge those batches now
//
// Threads: submit(), flush() and stats() may be called from any thread; collect_durable() from one
// thread at a time (the broker's loop). Tokens are numbered in the order submit() calls return.
//
// Files in DIR: `journal` (the log), `journal.compact` (a compaction in progress; never valid,
// removed by open), `LOCK` (the pid of the broker holding DIR; the lock itself is an flock on DIR,
// see lock() in journal.cpp, so deleting LOCK lets no second journal in), and copies of damaged
// bytes found on open: `journal.damaged.<unix time>.<offset>` and `journal.tail.<unix time>.<offset>`.
//
// Format of `journal`: a header (journal_io.hpp: magic, version, a random salt), then records, each
//   u32 LE body length | u32 LE CRC32C, from the salt, of (length bytes, body) | body (deferred_store.hpp)
// Open replays the records into a DeferredState. Nothing acknowledged is dropped for damage
// elsewhere: a record that fails its length, checksum or decoding is skipped, and the scan
// resynchronises on the next valid record (journal_scan.hpp); the damaged bytes are copied aside,
// logged (offset, size, why), and the journal is rewritten without them. Damage with no valid
// record after it (a torn last write, garbage appended) is copied aside, logged and truncated away,
// so that new appends never follow garbage. After any damage the receipt counter skips as many
// receipts as the damaged bytes could have held batches (a Checkpoint appended at once), so that
// a receipt a client holds for a lost batch never names another one. A damaged header is an
// error: nothing is changed.
//
// A full disk (ENOSPC, EDQUOT on write or fdatasync) stalls the writer, it does not fail it: the
// partial write is cut off, stats().stalled says why, and the writer tries again until space
// returns; everything submitted meanwhile waits and becomes durable then, in order.
//
// Compaction: once the file is larger than compact_min_bytes and the live state (pending or dead
// work) would fit in compact_live_ratio of it, the writer writes the state as a fresh journal into
// `journal.compact`, fsyncs it, renames it over `journal` and fsyncs DIR. A crash at any point
// leaves either the old or the new journal whole.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "deferred_store.hpp"
#include "journal_scan.hpp"
#include "ops/histogram.hpp"

namespace fanout::broker {

// Submissions are numbered 1, 2, 3... in submit() order; they become durable in that order.
using Token = std::uint64_t;

struct JournalOptions {
  std::filesystem::path directory;  // created when missing
  // Compact when the file is at least this large and the live state would take at most
  // compact_live_ratio of it.
  std::uint64_t compact_min_bytes = std::uint64_t{64} << 20;
  double compact_live_ratio = 0.25;
  // A record longer than this is refused by submit() and, on open, taken for corruption. It
  // bounds what a damaged length field can make open() allocate.
  std::uint32_t max_record_bytes = std::uint32_t{1} << 30;
  // Where recovery and compaction report; spdlog's default logger when empty.
  std::shared_ptr<spdlog::logger> logger;
};

// What open() found.
struct RecoveryReport {
  std::uint64_t records = 0;          // good records replayed (checkpoint included)
  std::uint64_t ignored_records = 0;  // good records that did not apply to the state (logged)
  std::uint64_t good_bytes = 0;       // file size after recovery
  std::uint64_t dropped_bytes = 0;    // torn or corrupt tail truncated away (kept aside first)
  std::string dropped_reason;         // why, when dropped_bytes > 0
  std::uint64_t skipped_bytes = 0;    // damaged bytes between valid records, skipped (kept aside)
  std::vector<journal_io::DamagedSpan> damaged;     // every damaged span, the tail last
  std::vector<std::filesystem::path> kept_aside;    // a copy of each, in `damaged` order
  bool rewritten = false;  // the file was written again without the skipped spans
  bool removed_compaction_leftover = false;
  bool created = false;  // no journal existed
};

// Counters for tests and `fanout status`; readable from the broker thread at any time.
struct JournalStats {
  std::uint64_t submitted = 0;
  std::uint64_t durable = 0;  // highest durable token
  std::uint64_t fsyncs = 0;   // fdatasyncs of the journal (one per group commit)
  ops::Histogram fsync_seconds{ops::kSyncSecondsBounds};  // how long each of them took
  std::uint64_t bytes_appended = 0;
  std::uint64_t compactions = 0;
  std::uint64_t file_bytes = 0;  // size of the current journal file
  std::uint64_t write_stalls = 0;  // failed attempts to write while the disk was full
  std::string stalled;  // while writes wait for disk space: the error (empty otherwise)
};

class Journal {
 public:
  // Opens (or creates) the journal in options.directory, recovers it and starts the writer thread.
  // Throws fanout::Error, with the path and the errno text, when the directory or file cannot be
  // created, read, locked (another process has it open) or truncated, when damaged bytes cannot be
  // copied aside, or when the file is not a fanout journal or its header is damaged. Damaged
  // records are not an error (see above).
  explicit Journal(JournalOptions options);
  // Stops the writer after it has written and synced everything submitted (a clean shutdown loses
  // nothing). Errors at that point are logged, not thrown.
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  const RecoveryReport& recovery() const noexcept;

  // The state the journal held when opened, payloads included. Call once: later calls return an
  // empty state. The journal keeps its own (payload-less) copy for compaction.
  DeferredState take_recovered();

  // Queues `record` for the disk and returns its token. Never waits for the disk. Throws
  // fanout::Error once the journal has failed (a write or fsync error: nothing submitted after
  // that point can be made durable, and collect_durable() throws the same error) or when a record
  // is longer than max_record_bytes. Whether the record applies to the state is not checked here:
  // one that does not is written and ignored on replay alike.
  Token submit(JournalRecord record);

  // Readable (POLLIN) when collect_durable() has something new to say. Owned by the journal.
  int ready_fd() const noexcept;

  // Clears ready_fd() and returns the highest durable token (0 before the first). Throws
  // fanout::Error once the journal has failed; tokens reported durable before stay durable.
  Token collect_durable();

  // Blocks until every record submitted so far is durable; returns the highest durable token.
  // Throws like collect_durable(). For shutdown and tests; the broker's loop polls instead.
  Token flush();

  JournalStats stats() const;

  class Impl;  // journal.cpp

 private:
  std::unique_ptr<Impl> impl_;
};

// CRC32C (Castagnoli) of `size` bytes, continuing from `crc` (0 to start). Uses the SSE4.2
// instruction where the CPU has it.
std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size) noexcept;

}  // namespace fanout::broker
