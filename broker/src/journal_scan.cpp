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

// A cheap filter before the CRC: the length fits and the body starts with a record kind.
bool plausible_at(const unsigned char* data, std::uint64_t size, std::uint64_t pos, std::uint32_t max_record_bytes) {
  if (size - pos <= frame_header_bytes) return false;
  const std::uint32_t body = get_u32(data + pos);
  if (body == 0 || body > max_record_bytes || body > size - pos - frame_header_bytes) return false;
  const unsigned char kind = data[pos + frame_header_bytes];
  return kind >= static_cast<unsigned char>(RecordKind::batch_accepted) &&
         kind <= static_cast<unsigned char>(RecordKind::checkpoint);
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
