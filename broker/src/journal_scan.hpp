// journal_scan.hpp: reading a journal's records back (Journal's recovery, journal.cpp), damage
// included. Private to the broker.
//
// Records are length-prefixed and checksummed (journal_io.hpp), so damage is found where a record
// fails its length, checksum or decoding. The scan then resynchronises: it looks, byte by byte,
// for the next offset where a whole valid record starts, and carries on from there. So a flipped
// bit costs the one record it hit, never the records after it. Damage with no valid record after
// it is the tail (a torn last write, or garbage appended). Each damaged span is reported, never
// dropped silently: the journal copies it aside and logs it (journal.cpp).
//
// Cost: a clean file is read once. After damage, each offset up to the next valid record costs a
// few comparisons (the claimed length must fit the file and agree with the fields of the record
// kind it claims; its receipt must be below 2^48); only one that passes costs a CRC over that
// length. On random bytes that is about one offset in 10^8. Crafted bytes could pass the filter
// more often, but are scanned only when the record that holds them is itself damaged, and cost
// time, never correctness. Records are salted (journal_io.hpp), so a record-shaped sequence of
// bytes inside a batch's payload does not pass for a record.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "deferred_store.hpp"

namespace fanout::broker::journal_io {

struct DamagedSpan {
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;
  std::string reason;  // what was wrong with the first record there
  bool tail = false;   // no valid record follows: the span runs to the end of the file
};

struct ScanResult {
  std::uint64_t records = 0;  // valid records handed to the sink
  std::uint64_t end = 0;      // where the last valid record ends (the header's end when none)
  std::vector<DamagedSpan> damaged;
};

// Called for each valid record, in file order, with the offset of its frame.
using RecordSink = std::function<void(std::uint64_t offset, JournalRecord record)>;

// Scans data[start, size) for records whose CRC starts from `salt` and whose body is at most
// `max_record_bytes` long.
ScanResult scan_records(const unsigned char* data, std::uint64_t size, std::uint64_t start, std::uint32_t salt,
                        std::uint32_t max_record_bytes, const RecordSink& sink);

// Writes `size` bytes to a new file (mode 0600: a batch's payload is a client's data) named
// `stem`, or `stem.1`, `stem.2`... when that exists, never over an existing file, and makes it
// durable. Returns its path. Throws std::system_error with the path and the errno text.
std::filesystem::path keep_aside(const std::filesystem::path& stem, const unsigned char* data, std::uint64_t size);

}  // namespace fanout::broker::journal_io
