#include "journal_scan.hpp"

#include <fcntl.h>

#include <cerrno>

#include <utility>

#include "journal.hpp"
#include "journal_io.hpp"

namespace fanout::broker::journal_io {

namespace {

// Whether a whole valid record starts at `pos`; if so fills `record` and `framed` (its size with
// the frame header), else says why in `reason`.
bool record_at(const unsigned char* data, std::uint64_t size, std::uint64_t pos, std::uint32_t salt,
               std::uint32_t max_record_bytes, JournalRecord& record, std::uint64_t& framed, std::string& reason) {
  const std::uint64_t left = size - pos;
  if (left < frame_header_bytes) {
    reason = "torn record header";
    return false;
  }
  const std::uint32_t body = get_u32(data + pos);
  if (body == 0 || body > max_record_bytes) {
    reason = "bad record length " + std::to_string(body);
    return false;
  }
  if (body > left - frame_header_bytes) {
    reason = "torn record (length " + std::to_string(body) + ", " + std::to_string(left - frame_header_bytes) +
             " bytes left)";
    return false;
  }
  const char* body_data = reinterpret_cast<const char*>(data + pos + frame_header_bytes);
  if (crc32c(crc32c(salt, data + pos, 4), body_data, body) != get_u32(data + pos + 4)) {
    reason = "checksum mismatch";
    return false;
  }
  if (!decode_body(body_data, body, record)) {
    reason = "undecodable record";
    return false;
  }
  framed = frame_header_bytes + body;
  return true;
}

std::uint64_t get_u64(const unsigned char* in) {
  return std::uint64_t{get_u32(in)} | std::uint64_t{get_u32(in + 4)} << 32;
}

// Receipts count up from 1; one past 2^48 is never reached, and makes a random u64 implausible.
bool plausible_receipt(std::uint64_t receipt) { return receipt >= 1 && receipt < (std::uint64_t{1} << 48); }

// A cheap filter before the CRC: the length fits the file and agrees with the body's own fields
// (deferred_store.cpp's encoding: a kind byte, a receipt, then per kind), so that only a few
// offsets in a damaged span cost a CRC over the length they claim.
bool plausible_at(const unsigned char* data, std::uint64_t size, std::uint64_t pos, std::uint32_t max_record_bytes) {
  if (size - pos <= frame_header_bytes) return false;
  const std::uint32_t length = get_u32(data + pos);
  if (length == 0 || length > max_record_bytes || length > size - pos - frame_header_bytes) return false;
  const unsigned char* body = data + pos + frame_header_bytes;
  constexpr std::uint32_t slot = 1 + 8 + 4;  // kind, receipt, index (or task count)
  if (length >= 9 && !plausible_receipt(get_u64(body + 1))) return false;
  switch (static_cast<RecordKind>(body[0])) {
    case RecordKind::checkpoint:
      return length == 9;
    case RecordKind::task_finished:
    case RecordKind::dead_task_retried:
    case RecordKind::dead_task_dropped:
      return length == slot;
    case RecordKind::batch_accepted:
      return length >= slot && get_u32(body + 9) >= 1;
    case RecordKind::task_failed_attempt:  // + attempts, error length, error
      return length >= slot + 8 && get_u32(body + slot + 4) == length - (slot + 8);
    case RecordKind::task_dead:  // + kind (u16), error length, error
      return length >= slot + 6 && get_u32(body + slot + 2) == length - (slot + 6);
  }
  return false;
}

}  // namespace

ScanResult scan_records(const unsigned char* data, std::uint64_t size, std::uint64_t start, std::uint32_t salt,
                        std::uint32_t max_record_bytes, const RecordSink& sink) {
  ScanResult result;
  result.end = start;
  std::uint64_t pos = start;
  std::string reason;
  while (pos < size) {
    JournalRecord record;
    std::uint64_t framed = 0;
    if (record_at(data, size, pos, salt, max_record_bytes, record, framed, reason)) {
      sink(pos, std::move(record));
      ++result.records;
      pos += framed;
      result.end = pos;
      continue;
    }
    // Damage at `pos`: resynchronise on the next offset where a valid record starts.
    std::uint64_t next = pos + 1;
    std::string ignored;
    for (; next < size; ++next) {
      if (!plausible_at(data, size, next, max_record_bytes)) continue;
      JournalRecord candidate;
      if (record_at(data, size, next, salt, max_record_bytes, candidate, framed, ignored)) break;
    }
    if (next >= size) {
      result.damaged.push_back(DamagedSpan{pos, size - pos, reason, true});
      break;
    }
    result.damaged.push_back(DamagedSpan{pos, next - pos, reason, false});
    pos = next;
  }
  return result;
}

std::filesystem::path keep_aside(const std::filesystem::path& stem, const unsigned char* data, std::uint64_t size) {
  std::filesystem::path path = stem;
  Fd out;
  for (int n = 1;; ++n) {
    out = Fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (out || errno != EEXIST || n > 1000) break;
    path = stem.string() + "." + std::to_string(n);
  }
  if (!out) throw_errno("cannot create", path, errno);
  write_all(out.get(), data, size, path);
  sync_or_throw(out.get(), path, false);
  sync_directory(path.parent_path());
  return path;
}

}  // namespace fanout::broker::journal_io
