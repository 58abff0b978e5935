// The deferred-batch journal's durability: group commit, compaction and its crash windows,
// SIGKILL (of a forked child writing the journal), and errors that stop it from claiming
// durability.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fanout/error.hpp>

#include "child.hpp"
#include "journal_helpers.hpp"
#include "test_support.hpp"

using namespace journal_test;
using fanout_test::read_file;
using fanout_test::TempDir;
using fanout_test::write_file;

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
  write_journal(dir.path(), log, records);
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
  // The child submits without end, keeping up to 64 records in flight, and tells the parent each
  // durable token the journal reports (on its stdout).
  fanout_test::Child child = fanout_test::Child::fork([&]() -> int {
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
          if (::write(STDOUT_FILENO, &durable, sizeof(durable)) != sizeof(durable)) ::_exit(3);
        }
      }
    } catch (...) {
      ::_exit(2);
    }
  });
  Token reported = 0;
  int reports = 0;
  while (reported < 3000) {
    Token token = 0;
    REQUIRE(child.read_exact(&token, sizeof(token), fanout_test::kPatience));
    CHECK(token > reported);
    reported = token;
    ++reports;
  }
  child.signal(SIGKILL);
  const auto status = child.wait_exit();
  REQUIRE(status.has_value());
  CHECK(WIFSIGNALED(*status));
  // Reports the child wrote before it died are as good as the ones read.
  Token token = 0;
  while (child.read_exact(&token, sizeof(token), std::chrono::milliseconds(0))) reported = token;

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
    case 0: return BatchAccepted{receipt, 2, payload_for(receipt, 2 + receipt % 2000)};  // a byte a task at least
    case 1: return TaskFinished{receipt, 0};
    default:
      if (receipt % 8 == 0) return TaskDead{receipt, 1, 3, "crashed"};
      return TaskFinished{receipt, 1};
  }
}

TEST_CASE("after SIGKILL during constant compaction the journal is a durable prefix") {
  TempDir dir;
  constexpr std::uint64_t window = 64;
  // The child reports (durable token, compactions so far) on its stdout.
  fanout_test::Child child = fanout_test::Child::fork([&]() -> int {
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
          if (::write(STDOUT_FILENO, report, sizeof(report)) != sizeof(report)) ::_exit(3);
        }
      }
    } catch (...) {
      ::_exit(2);
    }
  });
  std::uint64_t report[2] = {0, 0};
  while (report[0] < 9000) REQUIRE(child.read_exact(report, sizeof(report), fanout_test::kPatience));
  child.signal(SIGKILL);
  const auto status = child.wait_exit();
  REQUIRE(status.has_value());
  CHECK(WIFSIGNALED(*status));
  while (child.read_exact(report, sizeof(report), std::chrono::milliseconds(0))) {
  }
  const Token reported = report[0];
  CHECK(report[1] >= 1);  // compactions had happened before the kill

  CapturedLog log;
  Journal reopened(options_for(dir.path(), log));
  const DeferredState recovered = reopened.take_recovered();
  // The receipt counter is the prefix's, unless a torn tail was cut off: then it skips the
  // receipts those bytes could have held (journal.hpp), and is never below the prefix's.
  const bool tail_cut = !reopened.recovery().damaged.empty();
  const auto is_recovered = [&](const DeferredState& prefix_state) {
    if (describe_state(prefix_state, /*with_next=*/false) != describe_state(recovered, false)) return false;
    return tail_cut ? recovered.next_receipt() >= prefix_state.next_receipt()
                    : recovered.next_receipt() == prefix_state.next_receipt();
  };
  // The child never had more than `window` records beyond what it reported in flight: the journal
  // must be the state after some prefix of at least `reported` records, and at most that many more.
  DeferredState state;
  for (Token t = 1; t <= reported; ++t) state.apply(record_for_token(t));
  bool matched = is_recovered(state);
  Token prefix = reported;
  for (Token t = reported + 1; !matched && t <= reported + window; ++t) {
    state.apply(record_for_token(t));
    matched = is_recovered(state);
    prefix = t;
  }
  MESSAGE("reported durable " << reported << " after " << report[1] << " compactions; recovered the first " << prefix
                              << " records" << (tail_cut ? " (a torn tail cut off)" : ""));
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
  fanout_test::Child child = fanout_test::Child::fork([&] {
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
    return code;
  });
  const auto status = child.wait_exit(std::chrono::seconds(60));
  REQUIRE(status.has_value());
  REQUIRE(WIFEXITED(*status));
  INFO(child.err());
  CHECK(WEXITSTATUS(*status) == 0);

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
