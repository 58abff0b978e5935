// journal_helpers.hpp: what the journal's tests share: a logger they can read, options for a
// journal in a directory, reproducible payloads and record streams, and a canonical text of a
// state so that doctest shows what differs.
#pragma once

#include <poll.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>

#include "deferred_store.hpp"
#include "journal.hpp"
#include "journal_io.hpp"

namespace journal_test {

using namespace fanout::broker;
namespace fs = std::filesystem;

// The header of a journal this broker creates (version 2: magic, salt, checksum).
inline constexpr std::uint64_t header_bytes = journal_io::header_v2_bytes;

// A logger whose output the test can read.
struct CapturedLog {
  std::ostringstream text;
  std::shared_ptr<spdlog::logger> logger =
      std::make_shared<spdlog::logger>("journal-test", std::make_shared<spdlog::sinks::ostream_sink_st>(text));
  CapturedLog() { logger->set_level(spdlog::level::info); }
};

inline JournalOptions options_for(const fs::path& dir, const CapturedLog& log) {
  JournalOptions options;
  options.directory = dir;
  options.logger = log.logger;
  return options;
}

inline std::string payload_for(std::uint64_t receipt, std::size_t size) {
  std::string payload(size, '\0');
  std::uint64_t x = receipt * 0x9E3779B97F4A7C15ull + 1;
  for (char& c : payload) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return payload;
}

// A canonical text of a state, so that doctest shows what differs. Without `with_next`, the receipt
// counter is left out (recovery from damage raises it past any receipt the damage may have held).
inline std::string describe_state(const DeferredState& state, bool with_next = true) {
  std::ostringstream out;
  if (with_next) out << "next " << state.next_receipt() << "\n";
  for (const auto& [receipt, batch] : state.batches()) {
    out << "batch " << receipt << " tasks " << batch.task_count << " payload " << batch.payload.size() << "/"
        << crc32c(0, batch.payload.data(), batch.payload.size()) << ":";
    for (const TaskState& task : batch.tasks) {
      out << " " << static_cast<int>(task.status) << "/" << task.attempts << "/" << task.error_kind << "/" << task.error;
    }
    out << "\n";
  }
  return out.str();
}

// A journal in `dir` holding `records`, all durable, closed again.
inline void write_journal(const fs::path& dir, const CapturedLog& log, const std::vector<JournalRecord>& records) {
  Journal journal(options_for(dir, log));
  for (const auto& record : records) journal.submit(record);
  journal.flush();
}

inline DeferredState replay(const std::vector<JournalRecord>& records, std::size_t count) {
  DeferredState state;
  for (std::size_t i = 0; i < count; ++i) state.apply(records[i]);
  return state;
}

// A plausible stream of deferred-feature records: batches accepted with payloads, and slot events
// on live batches, most of which apply (some deliberately do not).
inline std::vector<JournalRecord> random_records(std::mt19937_64& rng, std::size_t count, std::size_t max_payload) {
  std::vector<JournalRecord> records;
  std::uint64_t next_receipt = 1;
  for (std::size_t i = 0; i < count; ++i) {
    const auto pick = rng() % 10;
    const std::uint64_t receipt = next_receipt > 1 ? 1 + rng() % (next_receipt - 1) : 1;
    const auto index = static_cast<std::uint32_t>(rng() % 4);
    if (pick < 3 || next_receipt == 1) {
      const std::uint64_t r = next_receipt++;
      // A batch's payload is its window, which takes more than a byte per task (decode_body
      // refuses a record claiming more tasks than that).
      const auto tasks = static_cast<std::uint32_t>(1 + rng() % 4);
      records.emplace_back(BatchAccepted{r, tasks, payload_for(r, tasks + rng() % max_payload)});
    } else if (pick < 6) {
      records.emplace_back(TaskFinished{receipt, index});
    } else if (pick < 7) {
      records.emplace_back(TaskFailedAttempt{receipt, index, static_cast<std::uint32_t>(1 + rng() % 3), "boom " + std::to_string(i)});
    } else if (pick < 8) {
      records.emplace_back(TaskDead{receipt, index, 5, "worker lost " + std::to_string(i)});
    } else if (pick < 9) {
      records.emplace_back(DeadTaskRetried{receipt, index});
    } else {
      records.emplace_back(DeadTaskDropped{receipt, index});
    }
  }
  return records;
}

inline std::uint64_t size_of(const fs::path& path) { return fs::file_size(path); }

inline bool readable_within(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1 && (p.revents & POLLIN) != 0;
}


}  // namespace journal_test
