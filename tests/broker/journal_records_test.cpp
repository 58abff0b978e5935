// The deferred-batch journal's records: the state machine they build, their encoding, and the
// recovery of a journal file from torn and corrupt tails.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include <fanout/error.hpp>

#include "journal_helpers.hpp"
#include "test_support.hpp"

using namespace journal_test;
using fanout_test::read_file;
using fanout_test::TempDir;
using fanout_test::write_file;

// ---------------------------------------------------------------------------------------------
TEST_CASE("crc32c matches the Castagnoli check value and continues across calls") {
  const std::string text = "123456789";
  CHECK(crc32c(0, text.data(), text.size()) == 0xE3069283u);
  CHECK(crc32c(crc32c(0, text.data(), 4), text.data() + 4, 5) == 0xE3069283u);
  CHECK(crc32c(0, nullptr, 0) == 0u);
}

TEST_CASE("a batch leaves the state once every slot is done or dropped") {
  DeferredState state;
  REQUIRE(state.apply(BatchAccepted{7, 3, "frame"}) == ApplyResult::applied);
  CHECK(state.next_receipt() == 8);
  CHECK(state.apply(TaskFinished{7, 0}) == ApplyResult::applied);
  CHECK(state.apply(TaskFailedAttempt{7, 1, 1, "boom"}) == ApplyResult::applied);
  CHECK(state.apply(TaskFailedAttempt{7, 1, 2, "boom again"}) == ApplyResult::applied);
  CHECK(state.apply(TaskDead{7, 1, 5, "worker lost"}) == ApplyResult::applied);
  CHECK(state.apply(TaskDead{7, 2, 0, "threw"}) == ApplyResult::applied);

  const DeferredBatch* batch = state.find(7);
  REQUIRE(batch != nullptr);
  CHECK(batch->tasks[0].status == TaskStatus::done);
  CHECK(batch->tasks[1].status == TaskStatus::dead);
  CHECK(batch->tasks[1].attempts == 2);
  CHECK(batch->tasks[1].error == "worker lost");
  CHECK(batch->tasks[1].error_kind == 5);

  CHECK(state.apply(DeadTaskRetried{7, 1}) == ApplyResult::applied);
  CHECK(state.find(7)->tasks[1].status == TaskStatus::pending);
  CHECK(state.find(7)->tasks[1].attempts == 0);
  CHECK(state.apply(TaskFinished{7, 1}) == ApplyResult::applied);
  CHECK(state.find(7) != nullptr);  // slot 2 is still dead
  CHECK(state.apply(DeadTaskDropped{7, 2}) == ApplyResult::applied);
  CHECK(state.find(7) == nullptr);
  CHECK(state.batches().empty());
  CHECK(state.next_receipt() == 8);
}

TEST_CASE("records that do not fit the state are ignored and change nothing") {
  DeferredState state;
  state.apply(BatchAccepted{1, 2, "x"});
  const std::string before = describe_state(state);
  CHECK(state.apply(TaskFinished{2, 0}) == ApplyResult::unknown_receipt);
  CHECK(state.apply(TaskFinished{1, 2}) == ApplyResult::index_out_of_range);
  CHECK(state.apply(DeadTaskRetried{1, 0}) == ApplyResult::wrong_status);
  CHECK(state.apply(DeadTaskDropped{1, 0}) == ApplyResult::wrong_status);
  CHECK(state.apply(BatchAccepted{1, 5, "again"}) == ApplyResult::duplicate_receipt);
  CHECK(describe_state(state) == before);
  state.apply(TaskFinished{1, 0});
  CHECK(state.apply(TaskFinished{1, 0}) == ApplyResult::wrong_status);
  CHECK(state.apply(TaskDead{1, 0, 1, "late"}) == ApplyResult::wrong_status);
}

TEST_CASE("a snapshot replays into an equal state and its size is tracked exactly") {
  std::mt19937_64 rng(42);
  const auto records = random_records(rng, 2000, 300);
  DeferredState state;
  for (std::size_t i = 0; i < records.size(); ++i) {
    state.apply(records[i]);
    if (i % 97 == 0 || i + 1 == records.size()) {
      const auto snapshot = state.snapshot();
      std::uint64_t bytes = 0;
      for (const auto& record : snapshot) bytes += framed_size(record);
      REQUIRE(bytes == state.snapshot_bytes());
      CHECK(describe_state(replay(snapshot, snapshot.size())) == describe_state(state));
    }
  }
  CHECK_FALSE(state.batches().empty());  // the stream leaves some work live
}

TEST_CASE("every record kind survives encoding") {
  const std::vector<JournalRecord> records{
      BatchAccepted{1, 3, std::string("pay\0load", 8)}, TaskFinished{1, 2}, TaskFailedAttempt{1, 0, 4, "e"},
      TaskDead{1, 1, 9, "dead"}, DeadTaskRetried{1, 1}, DeadTaskDropped{1, 1}, Checkpoint{77}};
  for (const auto& record : records) {
    std::string body;
    encode_body_prefix(record, body);
    if (const auto* accepted = std::get_if<BatchAccepted>(&record)) body += accepted->payload;
    CHECK(body.size() + frame_header_bytes == framed_size(record));
    JournalRecord decoded;
    REQUIRE(decode_body(body.data(), body.size(), decoded));
    CHECK(decoded.index() == record.index());
    std::string again;
    encode_body_prefix(decoded, again);
    if (const auto* accepted = std::get_if<BatchAccepted>(&decoded)) again += accepted->payload;
    CHECK(again == body);
    if (std::holds_alternative<BatchAccepted>(record)) continue;  // its payload is the body's tail
    CHECK_FALSE(decode_body(body.data(), body.size() - 1, decoded));
    body.push_back('x');
    CHECK_FALSE(decode_body(body.data(), body.size(), decoded));
  }
}
TEST_CASE("a journal file that lost its header starts empty") {
  TempDir dir;
  CapturedLog log;
  write_file(dir.path() / "journal", "");
  {
    Journal journal(options_for(dir.path(), log));
    CHECK(journal.take_recovered().batches().empty());
    journal.submit(BatchAccepted{1, 1, "x"});
  }
  Journal reopened(options_for(dir.path(), log));
  CHECK(reopened.take_recovered().find(1) != nullptr);
}

TEST_CASE("a directory is used by one journal at a time") {
  TempDir dir;
  CapturedLog log;
  Journal journal(options_for(dir.path(), log));
  CHECK_THROWS_WITH_AS(Journal(options_for(dir.path(), log)), doctest::Contains("in use"), fanout::Error);
}

// ---------------------------------------------------------------------------------------------
TEST_CASE("a torn last record is dropped, logged and truncated away, at every cut") {
  TempDir dir;
  CapturedLog log;
  std::vector<JournalRecord> records{BatchAccepted{1, 2, payload_for(1, 64)}, TaskFinished{1, 0},
                                     TaskFailedAttempt{1, 1, 1, "boom"}};
  write_journal(dir.path(), log, records);
  const fs::path file = dir.path() / "journal";
  const std::string whole = read_file(file);
  const std::uint64_t last_start = whole.size() - framed_size(records.back());
  for (std::uint64_t cut = last_start + 1; cut < whole.size(); ++cut) {
    CAPTURE(cut);
    write_file(file, whole.substr(0, cut));
    {
      Journal journal(options_for(dir.path(), log));
      CHECK(journal.recovery().records == 2);
      CHECK(journal.recovery().dropped_bytes == cut - last_start);
      // Cut off, then a Checkpoint that skips the receipts the damage may have held.
      CHECK(size_of(file) == last_start + framed_size(Checkpoint{}));
      const DeferredState state = journal.take_recovered();
      CHECK(describe_state(state, false) == describe_state(replay(records, 2), false));
      CHECK(state.next_receipt() > replay(records, 3).next_receipt());
      // New appends follow the last good record, not the garbage.
      journal.submit(records.back());
      journal.flush();
    }
    Journal again(options_for(dir.path(), log));
    CHECK(again.recovery().dropped_bytes == 0);
    CHECK(describe_state(again.take_recovered(), false) == describe_state(replay(records, 3), false));
  }
  CHECK(log.text.str().find("torn or corrupt tail") != std::string::npos);
}

TEST_CASE("random truncations and byte flips lose only the records they touch") {
  TempDir dir;
  CapturedLog log;
  log.logger->set_level(spdlog::level::critical);  // hundreds of expected warnings and errors
  std::mt19937_64 rng(2024);
  const auto records = random_records(rng, 400, 700);
  write_journal(dir.path(), log, records);
  const fs::path file = dir.path() / "journal";
  const std::string whole = read_file(file);
  // starts[k], ends[k]: file offsets where record k starts and ends.
  std::vector<std::uint64_t> starts;
  std::vector<std::uint64_t> ends;
  std::uint64_t end = header_bytes;
  for (const auto& record : records) {
    starts.push_back(end);
    ends.push_back(end += framed_size(record));
  }
  REQUIRE(end == whole.size());

#ifdef FANOUT_TEST_SANITIZED
  constexpr int rounds = 45;
#else
  constexpr int rounds = 120;
#endif
  for (int round = 0; round < rounds; ++round) {
    std::string damaged = whole;
    std::vector<std::uint64_t> hits;
    if (round % 3 != 1) {  // truncate
      const std::uint64_t cut = header_bytes + rng() % (damaged.size() - header_bytes);
      damaged.resize(cut);
    }
    if (round % 3 != 0) {  // flip 1..4 bytes past the header
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        const std::uint64_t at = header_bytes + rng() % (damaged.size() - header_bytes);
        damaged[at] = static_cast<char>(damaged[at] ^ static_cast<char>(1 + rng() % 255));
        hits.push_back(at);
      }
    }
    // A record survives when it is whole and no flipped byte is in it.
    std::vector<JournalRecord> intact;
    std::uint64_t handed_out = 0;  // the highest receipt of a batch whose record is (partly) there
    for (std::size_t k = 0; k < records.size(); ++k) {
      if (starts[k] < damaged.size() && std::holds_alternative<BatchAccepted>(records[k])) {
        handed_out = std::max(handed_out, receipt_of(records[k]));
      }
      const bool hit = std::any_of(hits.begin(), hits.end(), [&](auto at) { return at >= starts[k] && at < ends[k]; });
      if (ends[k] <= damaged.size() && !hit) intact.push_back(records[k]);
    }
    write_file(file, damaged);
    CAPTURE(round);
    std::string recovered;
    {
      Journal journal(options_for(dir.path(), log));
      CHECK(journal.recovery().records == intact.size());
      std::uint64_t aside = 0;
      for (const auto& path : journal.recovery().kept_aside) aside += size_of(path);
      CHECK(aside == journal.recovery().dropped_bytes + journal.recovery().skipped_bytes);
      const DeferredState state = journal.take_recovered();
      recovered = describe_state(state);
      CHECK(describe_state(state, false) == describe_state(replay(intact, intact.size()), false));
      // Receipts the damage may have held are never handed out again.
      CHECK(state.next_receipt() > handed_out);
    }
    if (round % 5 == 0) {  // the damage is gone from the file: the next open finds none
      Journal again(options_for(dir.path(), log));
      CHECK(again.recovery().damaged.empty());
      CHECK(describe_state(again.take_recovered()) == recovered);
    }
  }
}

TEST_CASE("a file that is not a journal is refused, not overwritten") {
  TempDir dir;
  CapturedLog log;
  write_file(dir.path() / "journal", "hello, this is somebody's file");
  CHECK_THROWS_WITH_AS(Journal(options_for(dir.path(), log)), doctest::Contains("not a fanout journal"), fanout::Error);
  CHECK(read_file(dir.path() / "journal") == "hello, this is somebody's file");
}
