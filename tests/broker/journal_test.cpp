// The deferred-batch journal: the state machine its records build, durability through group
// commit, recovery from torn and corrupt tails, compaction and its crash windows, SIGKILL, and
// errors that stop it from claiming durability.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>
#include <fanout/error.hpp>

#include "deferred_store.hpp"
#include "journal.hpp"
#include "test_support.hpp"

using namespace fanout::broker;
using fanout_test::TempDir;

namespace {

namespace fs = std::filesystem;

// A logger whose output the test can read.
struct CapturedLog {
  std::ostringstream text;
  std::shared_ptr<spdlog::logger> logger =
      std::make_shared<spdlog::logger>("journal-test", std::make_shared<spdlog::sinks::ostream_sink_st>(text));
  CapturedLog() { logger->set_level(spdlog::level::info); }
};

JournalOptions options_for(const fs::path& dir, const CapturedLog& log) {
  JournalOptions options;
  options.directory = dir;
  options.logger = log.logger;
  return options;
}

std::string payload_for(std::uint64_t receipt, std::size_t size) {
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

// A canonical text of a state, so that doctest shows what differs.
std::string describe_state(const DeferredState& state) {
  std::ostringstream out;
  out << "next " << state.next_receipt() << "\n";
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

DeferredState replay(const std::vector<JournalRecord>& records, std::size_t count) {
  DeferredState state;
  for (std::size_t i = 0; i < count; ++i) state.apply(records[i]);
  return state;
}

// A plausible stream of deferred-feature records: batches accepted with payloads, and slot events
// on live batches, most of which apply (some deliberately do not).
std::vector<JournalRecord> random_records(std::mt19937_64& rng, std::size_t count, std::size_t max_payload) {
  std::vector<JournalRecord> records;
  std::uint64_t next_receipt = 1;
  for (std::size_t i = 0; i < count; ++i) {
    const auto pick = rng() % 10;
    const std::uint64_t receipt = next_receipt > 1 ? 1 + rng() % (next_receipt - 1) : 1;
    const auto index = static_cast<std::uint32_t>(rng() % 4);
    if (pick < 3 || next_receipt == 1) {
      const std::uint64_t r = next_receipt++;
      records.emplace_back(BatchAccepted{r, static_cast<std::uint32_t>(1 + rng() % 4), payload_for(r, rng() % max_payload)});
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

std::uint64_t size_of(const fs::path& path) { return fs::file_size(path); }

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool readable_within(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1 && (p.revents & POLLIN) != 0;
}

}  // namespace

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

// ---------------------------------------------------------------------------------------------
TEST_CASE("durable records are all there after reopening") {
  TempDir dir;
  CapturedLog log;
  std::mt19937_64 rng(1);
  const auto records = random_records(rng, 500, 5000);
  {
    Journal journal(options_for(dir.path(), log));
    CHECK(journal.recovery().created);
    CHECK(journal.take_recovered().batches().empty());
    Token last = 0;
    for (const auto& record : records) last = journal.submit(record);
    CHECK(last == records.size());
    CHECK(journal.flush() == last);
    CHECK(journal.stats().durable == last);
    CHECK(journal.stats().fsyncs >= 1);
    CHECK(journal.stats().fsyncs <= records.size());
  }
  Journal reopened(options_for(dir.path(), log));
  CHECK_FALSE(reopened.recovery().created);
  CHECK(reopened.recovery().records == records.size());
  CHECK(reopened.recovery().dropped_bytes == 0);
  CHECK(describe_state(reopened.take_recovered()) == describe_state(replay(records, records.size())));
  CHECK(reopened.take_recovered().batches().empty());  // handed over once
}

TEST_CASE("the ready fd wakes the poll loop and says which tokens are durable") {
  TempDir dir;
  CapturedLog log;
  Journal journal(options_for(dir.path(), log));
  CHECK(journal.collect_durable() == 0);
  CHECK_FALSE(readable_within(journal.ready_fd(), 0));

  const Token first = journal.submit(BatchAccepted{1, 1, "a"});
  const Token second = journal.submit(TaskFinished{1, 0});
  CHECK(second == first + 1);
  Token durable = 0;
  for (int i = 0; i < 100 && durable < second; ++i) {
    REQUIRE(readable_within(journal.ready_fd(), 10000));
    durable = journal.collect_durable();
  }
  CHECK(durable == second);
  CHECK_FALSE(readable_within(journal.ready_fd(), 0));  // collected: quiet until the next commit
}

TEST_CASE("a clean shutdown makes everything submitted durable") {
  TempDir dir;
  CapturedLog log;
  {
    Journal journal(options_for(dir.path(), log));
    for (std::uint64_t r = 1; r <= 100; ++r) journal.submit(BatchAccepted{r, 1, payload_for(r, 100)});
  }
  Journal reopened(options_for(dir.path(), log));
  CHECK(reopened.take_recovered().batches().size() == 100);
}

TEST_CASE("submissions from many threads all become durable") {
  TempDir dir;
  CapturedLog log;
  constexpr std::uint64_t threads = 8;
  constexpr std::uint64_t each = 200;
  {
    Journal journal(options_for(dir.path(), log));
    std::vector<std::thread> submitters;
    for (std::uint64_t t = 0; t < threads; ++t) {
      submitters.emplace_back([&journal, t] {
        for (std::uint64_t i = 0; i < each; ++i) {
          const std::uint64_t receipt = 1 + t * each + i;
          journal.submit(BatchAccepted{receipt, 1, payload_for(receipt, 64)});
        }
      });
    }
    for (auto& thread : submitters) thread.join();
    CHECK(journal.flush() == threads * each);
    MESSAGE(threads << " threads: " << journal.stats().fsyncs << " fsyncs for " << threads * each << " records");
  }
  Journal reopened(options_for(dir.path(), log));
  const DeferredState state = reopened.take_recovered();
  REQUIRE(state.batches().size() == threads * each);
  for (const auto& [receipt, batch] : state.batches()) CHECK(batch.payload == payload_for(receipt, 64));
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
  {
    Journal journal(options_for(dir.path(), log));
    for (const auto& record : records) journal.submit(record);
    journal.flush();
  }
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
      CHECK(size_of(file) == last_start);
      CHECK(describe_state(journal.take_recovered()) == describe_state(replay(records, 2)));
      // New appends follow the last good record, not the garbage.
      journal.submit(records.back());
      journal.flush();
    }
    Journal again(options_for(dir.path(), log));
    CHECK(again.recovery().dropped_bytes == 0);
    CHECK(describe_state(again.take_recovered()) == describe_state(replay(records, 3)));
  }
  CHECK(log.text.str().find("torn or corrupt tail") != std::string::npos);
}

TEST_CASE("random truncations and byte flips always recover a prefix of the records") {
  TempDir dir;
  CapturedLog log;
  log.logger->set_level(spdlog::level::err);  // hundreds of expected warnings
  std::mt19937_64 rng(2024);
  const auto records = random_records(rng, 400, 700);
  {
    Journal journal(options_for(dir.path(), log));
    for (const auto& record : records) journal.submit(record);
    journal.flush();
  }
  const fs::path file = dir.path() / "journal";
  const std::string whole = read_file(file);
  // ends[k]: file offset where record k ends.
  std::vector<std::uint64_t> ends;
  std::uint64_t end = 8;
  for (const auto& record : records) ends.push_back(end += framed_size(record));
  REQUIRE(end == whole.size());

  std::vector<std::string> prefix_states(records.size() + 1);
  {
    DeferredState state;
    prefix_states[0] = describe_state(state);
    for (std::size_t i = 0; i < records.size(); ++i) {
      state.apply(records[i]);
      prefix_states[i + 1] = describe_state(state);
    }
  }

#ifdef FANOUT_TEST_SANITIZED
  constexpr int rounds = 120;
#else
  constexpr int rounds = 300;
#endif
  for (int round = 0; round < rounds; ++round) {
    std::string damaged = whole;
    std::uint64_t first_damage = damaged.size();
    if (round % 3 != 1) {  // truncate
      const std::uint64_t cut = 8 + rng() % (damaged.size() - 8);
      damaged.resize(cut);
      first_damage = cut;
    }
    if (round % 3 != 0) {  // flip 1..4 bytes past the header
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        const std::uint64_t at = 8 + rng() % (damaged.size() - 8);
        damaged[at] = static_cast<char>(damaged[at] ^ static_cast<char>(1 + rng() % 255));
        first_damage = std::min(first_damage, at);
      }
    }
    write_file(file, damaged);
    CAPTURE(round);
    CAPTURE(first_damage);
    Journal journal(options_for(dir.path(), log));
    const std::uint64_t kept = journal.recovery().records;
    REQUIRE(kept <= records.size());
    // Every record wholly before the first damaged byte is kept, and nothing past it is invented.
    const auto intact = static_cast<std::uint64_t>(std::upper_bound(ends.begin(), ends.end(), first_damage) - ends.begin());
    CHECK(kept == intact);
    CHECK(journal.recovery().good_bytes == (kept == 0 ? 8 : ends[kept - 1]));
    CHECK(size_of(file) == journal.recovery().good_bytes);
    CHECK(describe_state(journal.take_recovered()) == prefix_states[kept]);
  }
}

TEST_CASE("a file that is not a journal is refused, not overwritten") {
  TempDir dir;
  CapturedLog log;
  write_file(dir.path() / "journal", "hello, this is somebody's file");
  CHECK_THROWS_WITH_AS(Journal(options_for(dir.path(), log)), doctest::Contains("not a fanout journal"), fanout::Error);
  CHECK(read_file(dir.path() / "journal") == "hello, this is somebody's file");
}

// ---------------------------------------------------------------------------------------------
TEST_CASE("finished work is compacted away and the live work survives it") {
  TempDir dir;
  CapturedLog log;
  JournalOptions options = options_for(dir.path(), log);
  options.compact_min_bytes = 256 * 1024;
  options.compact_live_ratio = 0.25;
  std::vector<JournalRecord> records;
  {
    Journal journal(options);
    for (std::uint64_t r = 1; r <= 400; ++r) {
      records.emplace_back(BatchAccepted{r, 2, payload_for(r, 4096)});
      if (r % 10 == 0) {
        records.emplace_back(TaskFailedAttempt{r, 0, 2, "flaky"});
        records.emplace_back(TaskDead{r, 1, 3, "crashed"});
      } else {
        records.emplace_back(TaskFinished{r, 0});
        records.emplace_back(TaskFinished{r, 1});
      }
      for (std::size_t i = records.size() - 3; i < records.size(); ++i) journal.submit(records[i]);
      if (r % 50 == 0) journal.flush();  // several group commits, so compaction gets its chances
    }
    journal.flush();
    const JournalStats stats = journal.stats();
    MESSAGE("compactions " << stats.compactions << ", file " << stats.file_bytes << " bytes after "
                           << stats.bytes_appended << " appended");
    CHECK(stats.compactions >= 1);
    CHECK(stats.file_bytes < stats.bytes_appended / 2);
    CHECK(stats.file_bytes == size_of(dir.path() / "journal"));
  }
  Journal reopened(options);
  CHECK(reopened.recovery().dropped_bytes == 0);
  CHECK_FALSE(fs::exists(dir.path() / "journal.compact"));
  DeferredState state = reopened.take_recovered();
  CHECK(state.batches().size() == 40);
  CHECK(state.next_receipt() == 401);
  CHECK(describe_state(state) == describe_state(replay(records, records.size())));
}

TEST_CASE("the receipt counter survives compaction of every batch") {
  TempDir dir;
  CapturedLog log;
  JournalOptions options = options_for(dir.path(), log);
  options.compact_min_bytes = 4096;
  {
    Journal journal(options);
    for (std::uint64_t r = 1; r <= 50; ++r) {
      journal.submit(BatchAccepted{r, 1, payload_for(r, 200)});
      journal.submit(TaskFinished{r, 0});
      journal.flush();
    }
    CHECK(journal.stats().compactions >= 1);
  }
  Journal reopened(options);
  DeferredState state = reopened.take_recovered();
  CHECK(state.batches().empty());
  CHECK(state.next_receipt() == 51);
}

TEST_CASE("a compaction cut short by a crash leaves the old journal in charge") {
  TempDir dir;
  CapturedLog log;
  std::mt19937_64 rng(7);
  const auto records = random_records(rng, 300, 500);
  {
    Journal journal(options_for(dir.path(), log));
    for (const auto& record : records) journal.submit(record);
    journal.flush();
  }
  const std::string expected = describe_state(replay(records, records.size()));
  const std::string whole = read_file(dir.path() / "journal");

  SUBCASE("half-written snapshot") { write_file(dir.path() / "journal.compact", whole.substr(0, whole.size() / 2)); }
  SUBCASE("snapshot written but not renamed") { write_file(dir.path() / "journal.compact", whole); }
  SUBCASE("snapshot created empty") { write_file(dir.path() / "journal.compact", ""); }
  SUBCASE("snapshot of garbage") { write_file(dir.path() / "journal.compact", std::string(10000, '\x5a')); }

  Journal reopened(options_for(dir.path(), log));
  CHECK(reopened.recovery().removed_compaction_leftover);
  CHECK_FALSE(fs::exists(dir.path() / "journal.compact"));
  CHECK(describe_state(reopened.take_recovered()) == expected);
  CHECK(log.text.str().find("unfinished compaction") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
TEST_CASE("after SIGKILL every record reported durable is there") {
  TempDir dir;
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child submits without end, keeping up to 64 records in flight, and tells the parent
    // each durable token the journal reports.
    ::close(pipe_fds[0]);
    try {
      CapturedLog child_log;
      Journal journal(options_for(dir.path(), child_log));
      Token submitted = 0;
      Token durable = 0;
      for (;;) {
        while (submitted - durable < 64) {
          const std::uint64_t receipt = submitted + 1;
          submitted = journal.submit(BatchAccepted{receipt, 1, payload_for(receipt, 1 + receipt % 3000)});
        }
        readable_within(journal.ready_fd(), 1000);
        const Token now = journal.collect_durable();
        if (now != durable) {
          durable = now;
          if (::write(pipe_fds[1], &durable, sizeof(durable)) != sizeof(durable)) ::_exit(3);
        }
      }
    } catch (...) {
      ::_exit(2);
    }
  }
  ::close(pipe_fds[1]);
  Token reported = 0;
  int reports = 0;
  while (reported < 3000) {
    Token token = 0;
    REQUIRE(::read(pipe_fds[0], &token, sizeof(token)) == sizeof(token));
    CHECK(token > reported);
    reported = token;
    ++reports;
  }
  ::kill(child, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  // Reports the child wrote before it died are as good as the ones read.
  Token token = 0;
  while (::read(pipe_fds[0], &token, sizeof(token)) == sizeof(token)) reported = token;
  ::close(pipe_fds[0]);

  CapturedLog log;
  Journal reopened(options_for(dir.path(), log));
  const DeferredState state = reopened.take_recovered();
  MESSAGE("reported durable " << reported << " in " << reports << " reports; recovered " << state.batches().size()
                              << " batches, dropped a tail of " << reopened.recovery().dropped_bytes << " bytes");
  REQUIRE(state.batches().size() >= reported);
  std::uint64_t expected = 1;
  for (const auto& [receipt, batch] : state.batches()) {
    REQUIRE(receipt == expected++);  // a prefix: nothing missing before the end
    REQUIRE(batch.payload == payload_for(receipt, 1 + receipt % 3000));
  }
}

// Token t's record in the compaction crash test: per receipt, accepted with two slots, then both
// finished, except every 8th batch, whose second slot dies and keeps the batch live.
JournalRecord record_for_token(Token token) {
  const std::uint64_t receipt = (token - 1) / 3 + 1;
  switch ((token - 1) % 3) {
    case 0: return BatchAccepted{receipt, 2, payload_for(receipt, 1 + receipt % 2000)};
    case 1: return TaskFinished{receipt, 0};
    default:
      if (receipt % 8 == 0) return TaskDead{receipt, 1, 3, "crashed"};
      return TaskFinished{receipt, 1};
  }
}

TEST_CASE("after SIGKILL during constant compaction the journal is a durable prefix") {
  TempDir dir;
  constexpr std::uint64_t window = 64;
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    try {
      CapturedLog child_log;
      JournalOptions options = options_for(dir.path(), child_log);
      options.compact_min_bytes = 64 * 1024;
      Journal journal(options);
      Token submitted = 0;
      Token durable = 0;
      for (;;) {
        while (submitted - durable < window) submitted = journal.submit(record_for_token(submitted + 1));
        readable_within(journal.ready_fd(), 1000);
        const Token now = journal.collect_durable();
        if (now != durable) {
          durable = now;
          const std::uint64_t report[2] = {durable, journal.stats().compactions};
          if (::write(pipe_fds[1], report, sizeof(report)) != sizeof(report)) ::_exit(3);
        }
      }
    } catch (...) {
      ::_exit(2);
    }
  }
  ::close(pipe_fds[1]);
  std::uint64_t report[2] = {0, 0};
  while (report[0] < 9000) REQUIRE(::read(pipe_fds[0], report, sizeof(report)) == sizeof(report));
  ::kill(child, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  while (::read(pipe_fds[0], report, sizeof(report)) == sizeof(report)) {
  }
  ::close(pipe_fds[0]);
  const Token reported = report[0];
  CHECK(report[1] >= 1);  // compactions had happened before the kill

  CapturedLog log;
  Journal reopened(options_for(dir.path(), log));
  const std::string recovered = describe_state(reopened.take_recovered());
  // The child never had more than `window` records beyond what it reported in flight: the journal
  // must be the state after some prefix of at least `reported` records, and at most that many more.
  DeferredState state;
  for (Token t = 1; t <= reported; ++t) state.apply(record_for_token(t));
  bool matched = describe_state(state) == recovered;
  Token prefix = reported;
  for (Token t = reported + 1; !matched && t <= reported + window; ++t) {
    state.apply(record_for_token(t));
    matched = describe_state(state) == recovered;
    prefix = t;
  }
  MESSAGE("reported durable " << reported << " after " << report[1] << " compactions; recovered the first " << prefix
                              << " records");
  CHECK(matched);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "journal.compact"));
}

// ---------------------------------------------------------------------------------------------
TEST_CASE("an unusable directory is a clear error with the errno text") {
  TempDir dir;
  CapturedLog log;
  write_file(dir.path() / "plain-file", "x");
  CHECK_THROWS_WITH_AS(Journal(options_for(dir.path() / "plain-file" / "journal-dir", log)),
                       doctest::Contains("Not a directory"), std::system_error);
}

TEST_CASE("a record over the size limit is refused at submit") {
  TempDir dir;
  CapturedLog log;
  JournalOptions options = options_for(dir.path(), log);
  options.max_record_bytes = 1000;
  Journal journal(options);
  CHECK_THROWS_WITH_AS(journal.submit(BatchAccepted{1, 1, std::string(2000, 'x')}), doctest::Contains("exceeds"),
                       fanout::Error);
  CHECK(journal.submit(BatchAccepted{1, 1, std::string(100, 'x')}) == 1);
  CHECK(journal.flush() == 1);
}

TEST_CASE("after a failed write the journal claims nothing more and refuses submissions") {
  // A full disk, simulated with RLIMIT_FSIZE (writes past it fail with EFBIG) in a child process,
  // so that the limit never touches the test runner's own files.
  TempDir dir;
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int code = 0;
    try {
      CapturedLog child_log;
      Journal journal(options_for(dir.path(), child_log));
      for (std::uint64_t r = 1; r <= 10; ++r) journal.submit(BatchAccepted{r, 1, payload_for(r, 1000)});
      if (journal.flush() != 10) ::_exit(10);
      ::signal(SIGXFSZ, SIG_IGN);
      const rlimit limit{static_cast<rlim_t>(fs::file_size(dir.path() / "journal") + 20000), RLIM_INFINITY};
      if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(11);
      try {
        for (std::uint64_t r = 11; r <= 100; ++r) journal.submit(BatchAccepted{r, 1, payload_for(r, 1000)});
      } catch (const fanout::Error&) {
        // The writer may fail while we still submit: from then on submit refuses, as it should.
      }
      try {
        journal.flush();
        ::_exit(12);  // claimed durability past the limit
      } catch (const fanout::Error& e) {
        if (std::string(e.what()).find("too large") == std::string::npos) ::_exit(13);  // EFBIG's text
      }
      // Tokens durable before the failure are still reported, then the failure.
      Token durable = 0;
      try {
        for (int i = 0; i < 3; ++i) durable = journal.collect_durable();
        ::_exit(14);
      } catch (const fanout::Error&) {
      }
      if (durable < 10 || durable >= 100) ::_exit(15);
      try {
        journal.submit(TaskFinished{1, 0});
        ::_exit(16);
      } catch (const fanout::Error&) {
      }
      code = 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      code = 20;
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  CapturedLog log;
  Journal reopened(options_for(dir.path(), log));
  const DeferredState state = reopened.take_recovered();
  CHECK(state.batches().size() >= 10);
  CHECK(state.batches().size() < 100);
  for (std::uint64_t r = 1; r <= 10; ++r) {
    REQUIRE(state.find(r) != nullptr);
    CHECK(state.find(r)->payload == payload_for(r, 1000));
  }
}

// ---------------------------------------------------------------------------------------------
TEST_CASE("group commit: many submissions in flight share fsyncs (measured, not asserted)") {
  // Submits for a fixed time with 1, then 32, then 256 records in flight, as the broker's loop
  // would: submit, poll ready_fd, collect. Prints records/s and records per fsync.
  const auto measure = [](unsigned in_flight) {
    TempDir dir;
    CapturedLog log;
    Journal journal(options_for(dir.path(), log));
    const std::string payload = payload_for(1, 1024);
    const auto start = std::chrono::steady_clock::now();
    const auto until = start + std::chrono::milliseconds(400);
    Token submitted = 0;
    Token durable = 0;
    while (std::chrono::steady_clock::now() < until) {
      while (submitted - durable < in_flight) submitted = journal.submit(BatchAccepted{submitted + 1, 1, payload});
      readable_within(journal.ready_fd(), 1000);
      durable = journal.collect_durable();
    }
    durable = journal.flush();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const JournalStats stats = journal.stats();
    MESSAGE(in_flight << " in flight: " << static_cast<long long>(static_cast<double>(durable) / seconds)
                      << " records/s, " << stats.fsyncs << " fsyncs for " << durable << " records ("
                      << static_cast<double>(durable) / static_cast<double>(stats.fsyncs) << " per fsync)");
    CHECK(durable == submitted);
    CHECK(stats.fsyncs <= durable);
  };
  measure(1);
  measure(32);
  measure(256);
}
