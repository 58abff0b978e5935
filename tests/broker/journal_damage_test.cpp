// The journal against damage and misuse, as an attacker or a bad disk would do it: flipped bits,
// a cut, garbage appended, records smuggled into a payload, LOCK deleted under a running journal,
// and a disk that fills up. Acknowledged records are never dropped for damage elsewhere, and what
// is dropped is logged and kept aside.
#include <doctest/doctest.h>

#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fanout/error.hpp>

#include "child.hpp"
#include "journal_helpers.hpp"
#include "test_support.hpp"

using namespace journal_test;
using fanout_test::read_file;
using fanout_test::TempDir;
using fanout_test::write_file;

namespace {

// Three acknowledged batches, each with a payload.
std::vector<JournalRecord> three_batches() {
  return {BatchAccepted{1, 2, payload_for(1, 300)}, BatchAccepted{2, 2, payload_for(2, 300)},
          BatchAccepted{3, 2, payload_for(3, 300)}};
}

void flip_bit(const fs::path& file, std::uint64_t offset, int bit) {
  std::string bytes = read_file(file);
  REQUIRE(offset < bytes.size());
  bytes[offset] = static_cast<char>(bytes[offset] ^ (1 << bit));
  write_file(file, bytes);
}

std::vector<fs::path> kept_aside_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("journal.damaged.", 0) == 0 || name.rfind("journal.tail.", 0) == 0) out.push_back(entry.path());
  }
  return out;
}

}  // namespace

TEST_CASE("one flipped bit in the first of three batches costs that batch only, and its bytes are kept aside") {
  TempDir dir;
  CapturedLog log;
  const auto records = three_batches();
  write_journal(dir.path(), log, records);
  const fs::path file = dir.path() / "journal";
  const std::string before = read_file(file);
  for (const std::uint64_t at : {header_bytes, header_bytes + 5, header_bytes + 100}) {  // length, CRC, payload
    CAPTURE(at);
    write_file(file, before);
    for (const auto& path : kept_aside_in(dir.path())) fs::remove(path);
    flip_bit(file, at, 3);
    const std::string damaged = read_file(file);
    {
      Journal journal(options_for(dir.path(), log));
      const auto& report = journal.recovery();
      CHECK(report.records == 2);
      REQUIRE(report.damaged.size() == 1);
      CHECK(report.damaged[0].offset == header_bytes);
      CHECK(report.damaged[0].bytes == framed_size(records[0]));
      CHECK_FALSE(report.damaged[0].tail);
      CHECK(report.dropped_bytes == 0);
      INFO(log.text.str());
      CHECK(report.rewritten);
      const DeferredState state = journal.take_recovered();
      CHECK(state.find(1) == nullptr);
      REQUIRE(state.find(2) != nullptr);
      REQUIRE(state.find(3) != nullptr);
      CHECK(state.find(2)->payload == payload_for(2, 300));
      CHECK(state.find(3)->payload == payload_for(3, 300));
      // Appends after recovery land after the last good record.
      journal.submit(TaskFinished{2, 0});
      journal.flush();
    }
    const auto aside = kept_aside_in(dir.path());
    REQUIRE(aside.size() == 1);
    CHECK(read_file(aside[0]) == damaged.substr(header_bytes, framed_size(records[0])));
    CHECK(log.text.str().find("skipped " + std::to_string(framed_size(records[0])) + " damaged bytes at offset " +
                              std::to_string(header_bytes)) != std::string::npos);
    // The journal was written again without the damage: the next open finds none, and the work is there.
    Journal again(options_for(dir.path(), log));
    CHECK(again.recovery().damaged.empty());
    const DeferredState state = again.take_recovered();
    CHECK(state.batches().size() == 2);
    CHECK(state.find(2)->tasks[0].status == TaskStatus::done);
    CHECK(state.next_receipt() >= 4);  // receipt 1 is never handed out again
  }
}

TEST_CASE("a flipped bit in a middle record skips that record and keeps every record after it") {
  TempDir dir;
  CapturedLog log;
  const std::vector<JournalRecord> records{BatchAccepted{1, 3, payload_for(1, 200)}, TaskFinished{1, 0},
                                           TaskFailedAttempt{1, 1, 1, "boom"}, TaskFinished{1, 2},
                                           BatchAccepted{2, 1, payload_for(2, 200)}};
  write_journal(dir.path(), log, records);
  const fs::path file = dir.path() / "journal";
  const std::uint64_t third = header_bytes + framed_size(records[0]) + framed_size(records[1]);
  flip_bit(file, third + 10, 0);
  Journal journal(options_for(dir.path(), log));
  CHECK(journal.recovery().records == 4);
  REQUIRE(journal.recovery().damaged.size() == 1);
  CHECK(journal.recovery().damaged[0].offset == third);
  CHECK(journal.recovery().damaged[0].reason == "checksum mismatch");
  const std::vector<JournalRecord> survivors{records[0], records[1], records[3], records[4]};
  CHECK(describe_state(journal.take_recovered(), false) == describe_state(replay(survivors, survivors.size()), false));
}

TEST_CASE("a record cut short at the end is logged with its offset and size, kept aside, then cut off") {
  TempDir dir;
  CapturedLog log;
  const auto records = three_batches();
  write_journal(dir.path(), log, records);
  const fs::path file = dir.path() / "journal";
  const std::string whole = read_file(file);
  const std::uint64_t last = whole.size() - framed_size(records[2]);
  write_file(file, whole.substr(0, last + 50));
  {
    Journal journal(options_for(dir.path(), log));
    CHECK(journal.recovery().records == 2);
    CHECK(journal.recovery().dropped_bytes == 50);
    REQUIRE(journal.recovery().kept_aside.size() == 1);
    CHECK(read_file(journal.recovery().kept_aside[0]) == whole.substr(last, 50));
    CHECK(size_of(file) == last + framed_size(Checkpoint{}));  // cut, then the receipts skipped
  }
  CHECK(log.text.str().find("dropping 50 bytes of torn or corrupt tail at offset " + std::to_string(last)) !=
        std::string::npos);
}

TEST_CASE("garbage appended after the last record is cut off, kept aside and logged; the records stay") {
  TempDir dir;
  CapturedLog log;
  const auto records = three_batches();
  write_journal(dir.path(), log, records);
  const fs::path file = dir.path() / "journal";
  const std::string whole = read_file(file);
  const std::string garbage = "\x05\x00\x00\x00garbage that is no record at all \x01\x02\x03";
  write_file(file, whole + garbage);
  Journal journal(options_for(dir.path(), log));
  CHECK(journal.recovery().records == 3);
  CHECK(journal.recovery().dropped_bytes == garbage.size());
  REQUIRE(journal.recovery().kept_aside.size() == 1);
  CHECK(read_file(journal.recovery().kept_aside[0]) == garbage);
  CHECK(read_file(file).substr(0, whole.size()) == whole);
  CHECK(journal.take_recovered().batches().size() == 3);
}

TEST_CASE("the receipt of a damaged last batch is never handed out again, after any number of restarts") {
  TempDir dir;
  CapturedLog log;
  const auto records = three_batches();
  write_journal(dir.path(), log, records);
  flip_bit(dir.path() / "journal", read_file(dir.path() / "journal").size() - 10, 4);  // batch 3, now the tail
  for (int open = 0; open < 2; ++open) {
    Journal journal(options_for(dir.path(), log));
    const DeferredState state = journal.take_recovered();
    CHECK(state.batches().size() == 2);
    CHECK(state.next_receipt() > 3);
  }
}

TEST_CASE("a record smuggled inside a payload is never taken for a record of the journal") {
  // A client controls its batch's bytes. It can frame a record as an older, unsalted journal
  // would (CRC from 0), hoping that damage to the record around it makes recovery resynchronise
  // into its own: here a DeadTaskDropped for someone else's batch, and a batch of its own.
  TempDir dir;
  CapturedLog log;
  std::string smuggled;
  for (const JournalRecord& fake : {JournalRecord{DeadTaskDropped{1, 0}}, JournalRecord{BatchAccepted{7, 1, "evil"}}}) {
    const auto frame = journal_io::make_frame(fake, 0);
    smuggled += frame.frame;
    smuggled += frame.payload;
  }
  const std::vector<JournalRecord> records{BatchAccepted{1, 1, payload_for(1, 50)},
                                           BatchAccepted{2, 1, "client bytes: " + smuggled},
                                           BatchAccepted{3, 1, payload_for(3, 50)}};
  write_journal(dir.path(), log, records);
  const fs::path file = dir.path() / "journal";
  flip_bit(file, header_bytes + framed_size(records[0]) + 9, 1);  // the smuggler's own record
  Journal journal(options_for(dir.path(), log));
  CHECK(journal.recovery().records == 2);
  const DeferredState state = journal.take_recovered();
  CHECK(state.find(7) == nullptr);
  REQUIRE(state.find(1) != nullptr);
  CHECK(state.find(1)->tasks[0].status == TaskStatus::pending);
  CHECK(state.find(3) != nullptr);
}

TEST_CASE("a damaged header is refused with a clear error and the file is left as it was") {
  TempDir dir;
  CapturedLog log;
  write_journal(dir.path(), log, three_batches());
  const fs::path file = dir.path() / "journal";
  flip_bit(file, 9, 2);  // the salt
  const std::string damaged = read_file(file);
  CHECK_THROWS_WITH_AS(Journal(options_for(dir.path(), log)), doctest::Contains("header is damaged"), fanout::Error);
  CHECK(read_file(file) == damaged);
}

TEST_CASE("a journal of the first version (no salt) is still read and appended to") {
  TempDir dir;
  CapturedLog log;
  const auto records = three_batches();
  std::string file(journal_io::magic_v1, journal_io::magic_bytes);
  for (const auto& record : records) {
    const auto frame = journal_io::make_frame(record, 0);
    file += frame.frame;
    file += frame.payload;
  }
  write_file(dir.path() / "journal", file);
  {
    Journal journal(options_for(dir.path(), log));
    CHECK(journal.recovery().records == 3);
    CHECK(journal.recovery().damaged.empty());
    journal.submit(TaskFinished{1, 0});
    journal.flush();
  }
  Journal again(options_for(dir.path(), log));
  CHECK(again.recovery().records == 4);
  CHECK(again.take_recovered().find(1)->tasks[0].status == TaskStatus::done);
  CHECK(read_file(dir.path() / "journal").substr(0, 8) == std::string(journal_io::magic_v1, 8));
}

TEST_CASE("deleting LOCK under an open journal lets no second journal open the directory") {
  TempDir dir;
  CapturedLog log;
  Journal journal(options_for(dir.path(), log));
  REQUIRE(fs::exists(dir.path() / "LOCK"));
  CHECK(read_file(dir.path() / "LOCK") == std::to_string(::getpid()) + "\n");
  fs::remove(dir.path() / "LOCK");
  CHECK_THROWS_WITH_AS(Journal(options_for(dir.path(), log)), doctest::Contains("in use by another journal"),
                       fanout::Error);
  // In another process too (flock is per open file, so this is what a second broker meets).
  fanout_test::Child other = fanout_test::Child::fork([&] {
    try {
      CapturedLog child_log;
      Journal second(options_for(dir.path(), child_log));
      return 1;
    } catch (const fanout::Error& e) {
      return std::string(e.what()).find("in use") != std::string::npos ? 0 : 2;
    }
  });
  CHECK(other.finish() == 0);
}

TEST_CASE("a full disk stalls the journal; it loses nothing and carries on by itself once space returns") {
  // A real full disk: a 1 MiB tmpfs in a private mount namespace of a forked child (root only).
  if (::geteuid() != 0) {
    MESSAGE("skipped: a private tmpfs needs root");
    return;
  }
  TempDir dir;
  fanout_test::Child child = fanout_test::Child::fork([&]() -> int {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", dir.path().c_str(), "tmpfs", 0, "size=1m") != 0) {
      std::fprintf(stderr, "no private tmpfs: %s\n", std::strerror(errno));
      return 77;
    }
    try {
      CapturedLog log;
      const fs::path journal_dir = dir.path() / "j";
      {
        Journal journal(options_for(journal_dir, log));
        for (std::uint64_t r = 1; r <= 3; ++r) journal.submit(BatchAccepted{r, 1, payload_for(r, 20000)});
        if (journal.flush() != 3) return 10;
        // Fill the disk.
        {
          std::FILE* filler = std::fopen((dir.path() / "filler").c_str(), "w");
          if (filler == nullptr) return 11;
          const std::string chunk(4096, 'f');
          while (std::fwrite(chunk.data(), 1, chunk.size(), filler) == chunk.size() && std::fflush(filler) == 0) {
          }
          std::fclose(filler);
        }
        journal.submit(BatchAccepted{4, 1, payload_for(4, 20000)});
        if (!fanout_test::eventually([&] { return !journal.stats().stalled.empty(); })) return 12;
        if (journal.stats().stalled.find("No space left") == std::string::npos) return 13;
        journal.submit(TaskFinished{1, 0});  // waits with the stalled group
        if (journal.stats().durable != 3 || !fanout_test::eventually([&] { return journal.stats().write_stalls >= 2; })) {
          return 14;  // claimed durability without space, or stopped retrying
        }
        if (log.text.str().find("No space left") == std::string::npos) return 15;
        fs::remove(dir.path() / "filler");
        if (journal.flush() != 5) return 16;
        if (!fanout_test::eventually([&] { return journal.stats().stalled.empty(); })) return 17;
      }
      // Read once the writer thread has stopped: the log is not written to concurrently then.
      if (log.text.str().find("writing again") == std::string::npos) return 18;
      Journal reopened(options_for(journal_dir, log));
      if (!reopened.recovery().damaged.empty()) return 19;
      const DeferredState state = reopened.take_recovered();
      if (state.find(1) != nullptr) return 20;  // its one task finished
      for (std::uint64_t r = 2; r <= 4; ++r) {
        if (state.find(r) == nullptr || state.find(r)->payload != payload_for(r, 20000)) return 21;
      }
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      return 30;
    }
  });
  const auto status = child.wait_exit(std::chrono::seconds(60));
  REQUIRE(status.has_value());
  REQUIRE(WIFEXITED(*status));
  INFO(child.err());
  if (WEXITSTATUS(*status) == 77) {
    MESSAGE("skipped: " << child.err());
    return;
  }
  CHECK(WEXITSTATUS(*status) == 0);
}
