#include "journal.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <iterator>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>
#include <fanout/error.hpp>

#include "journal_io.hpp"
#include "journal_scan.hpp"
#include "system/os_error.hpp"

namespace fanout::broker {

namespace {

constexpr const char* journal_name = "journal";
constexpr const char* compact_name = "journal.compact";
constexpr const char* lock_name = "LOCK";

using namespace journal_io;

// Errors of a full disk: the journal waits for space and tries again (write_loop). Any other
// failure to write or sync is the end of durability for this run.
bool out_of_space(const std::system_error& error) {
  return error.code() == std::errc::no_space_on_device || error.code().value() == EDQUOT;
}

std::string unix_seconds() {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count());
}

}  // namespace

// ---- the journal ----

class Journal::Impl {
 public:
  explicit Impl(JournalOptions options)
      : options_(std::move(options)), logger_(options_.logger ? options_.logger : spdlog::default_logger()) {
    const auto& dir = options_.directory;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw std::system_error(ec, "journal: cannot create directory " + dir.string());
    journal_path_ = dir / journal_name;
    compact_path_ = dir / compact_name;

    lock();

    // A compaction that did not reach its rename: the old journal is whole, the leftover is not.
    if (::unlink(compact_path_.c_str()) == 0) {
      report_.removed_compaction_leftover = true;
      logger_->warn("journal {}: removed an unfinished compaction ({})", dir.string(), compact_path_.string());
    } else if (errno != ENOENT) {
      throw_errno("cannot remove", compact_path_, errno);
    }

    file_ = Fd(::open(journal_path_.c_str(), O_RDWR | O_CLOEXEC));
    if (!file_) {
      if (errno != ENOENT) throw_errno("cannot open", journal_path_, errno);
      create_empty();
    }
    recover();
    if (std::any_of(report_.damaged.begin(), report_.damaged.end(), [](const DamagedSpan& s) { return !s.tail; })) {
      rewrite_without_damage();
    }

    event_ = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!event_) throw_errno("cannot create eventfd for", journal_path_, errno);
    writer_ = std::thread([this] { write_loop(); });
  }

  ~Impl() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_.notify_one();
    if (writer_.joinable()) writer_.join();
  }

  const RecoveryReport& recovery() const noexcept { return report_; }
  DeferredState take_recovered() { return std::exchange(recovered_, DeferredState{}); }
  int ready_fd() const noexcept { return event_.get(); }

  Token submit(JournalRecord record) {
    const std::uint64_t body = framed_size(record) - frame_header_bytes;
    if (body > options_.max_record_bytes) {
      throw Error("journal: record of " + std::to_string(body) + " bytes exceeds the limit of " +
                  std::to_string(options_.max_record_bytes));
    }
    Token token = 0;
    {
      std::lock_guard lock(mutex_);
      if (failed_) throw Error(failure_);
      token = ++submitted_;
      queue_.push_back(Pending{token, std::move(record)});
    }
    work_.notify_one();
    return token;
  }

  Token collect_durable() {
    std::uint64_t ignored = 0;
    while (::read(event_.get(), &ignored, sizeof(ignored)) < 0 && errno == EINTR) {
    }
    // failed_ before durable_: once the writer has failed, durable_ no longer moves, so the value
    // read after it is final.
    const bool failed = failed_flag_.load(std::memory_order_acquire);
    const Token durable = durable_.load(std::memory_order_acquire);
    if (failed) {
      if (durable > reported_) {
        reported_ = durable;
        signal();  // the broker polls again and learns of the failure then
        return durable;
      }
      std::lock_guard lock(mutex_);
      throw Error(failure_);
    }
    reported_ = durable;
    return durable;
  }

  Token flush() {
    std::unique_lock lock(mutex_);
    const Token target = submitted_;
    durable_changed_.wait(lock, [&] { return failed_ || durable_.load() >= target; });
    if (durable_.load() >= target) return durable_.load();
    throw Error(failure_);
  }

  JournalStats stats() const {
    std::lock_guard lock(mutex_);
    JournalStats out = stats_;
    out.submitted = submitted_;
    out.durable = durable_.load();
    return out;
  }

 private:
  struct Pending {
    Token token;
    JournalRecord record;
  };

  void create_empty() {
    // Through a rename, so that `journal` never exists without its whole header.
    {
      const Fd tmp = open_or_throw(compact_path_, O_WRONLY | O_CREAT | O_TRUNC, "cannot create");
      header_ = new_header();
      write_all(tmp.get(), header_.bytes.data(), header_.bytes.size(), compact_path_);
      sync_or_throw(tmp.get(), compact_path_, false);
    }
    if (::rename(compact_path_.c_str(), journal_path_.c_str()) != 0) throw_errno("cannot rename to", journal_path_, errno);
    sync_directory(options_.directory);
    file_ = open_or_throw(journal_path_, O_RDWR, "cannot open");
    report_.created = true;
  }

  // Single writer: an exclusive flock on the journal's directory itself, held while this Journal
  // lives. Not on the LOCK file: an operator (or a cleanup script) may delete LOCK while a broker
  // runs, and a second broker would then lock a fresh LOCK inode and write the same journal. Not on
  // `journal` either: compaction renames a new file over it. The directory is the one thing both
  // brokers must open by the same name and that stays the same inode while the journal lives.
  // LOCK itself only tells an operator which process holds the directory.
  void lock() {
    const auto& dir = options_.directory;
    dir_ = open_or_throw(dir, O_RDONLY | O_DIRECTORY, "cannot open directory");
    if (::flock(dir_.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) throw_errno("cannot lock", dir, errno);
      std::string holder;
      if (const Fd info{::open((dir / lock_name).c_str(), O_RDONLY | O_CLOEXEC)}; info) {
        char buffer[32] = {};
        const ssize_t got = ::read(info.get(), buffer, sizeof(buffer) - 1);
        if (got > 0) holder = std::string(buffer, static_cast<std::size_t>(got));
        while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      }
      throw Error("journal: " + dir.string() + " is in use by another journal" +
                  (holder.empty() ? std::string() : " (process " + holder + ", per its LOCK file)") +
                  "; one directory serves one broker at a time");
    }
    const Fd info = open_or_throw(dir / lock_name, O_WRONLY | O_CREAT | O_TRUNC, "cannot create lock file");
    const std::string pid = std::to_string(::getpid()) + "\n";
    write_all(info.get(), pid.data(), pid.size(), dir / lock_name);
  }

  void recover() {
    struct stat st {};
    if (::fstat(file_.get(), &st) != 0) throw_errno("cannot stat", journal_path_, errno);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    const Mapping map(file_.get(), size, journal_path_);
    const unsigned char* data = map.data();
    const auto prefix_of = [&](const char* magic) {
      return size < magic_bytes && std::memcmp(data, magic, size) == 0;
    };
    if (size == 0 || prefix_of(magic_v1) || prefix_of(magic_v2) ||
        (size < header_v2_bytes && std::memcmp(data, magic_v2, magic_bytes) == 0)) {
      // Only a file system that lost data behind an fsync'ed rename leaves this; nothing was in it.
      logger_->warn("journal {}: header incomplete ({} bytes), starting empty", journal_path_.string(), size);
      header_ = new_header();
      if (::ftruncate(file_.get(), 0) != 0) throw_errno("cannot truncate", journal_path_, errno);
      if (::pwrite(file_.get(), header_.bytes.data(), header_.size, 0) != static_cast<ssize_t>(header_.size)) {
        throw_errno("cannot write", journal_path_, errno);
      }
      sync_or_throw(file_.get(), journal_path_, false);
      return recover();
    }
    std::string why;
    auto header = parse_header(data, size, why);
    if (!header) throw Error("journal: " + journal_path_.string() + " is " + why);
    header_ = std::move(*header);

    const ScanResult scan =
        scan_records(data, size, header_.size, header_.salt, options_.max_record_bytes,
                     [this](std::uint64_t offset, JournalRecord record) { apply_recovered(std::move(record), offset); });
    report_.records = scan.records;
    report_.damaged = scan.damaged;
    const std::string stamp = unix_seconds();
    for (const DamagedSpan& span : report_.damaged) {
      // Never dropped silently: the bytes go aside first (a failure to keep them is an error).
      const auto aside =
          keep_aside(options_.directory / (std::string(span.tail ? "journal.tail." : "journal.damaged.") + stamp + "." +
                                           std::to_string(span.offset)),
                     data + span.offset, span.bytes);
      if (span.tail) {
        report_.dropped_bytes = span.bytes;
        report_.dropped_reason = span.reason;
        logger_->warn("journal {}: dropping {} bytes of torn or corrupt tail at offset {} ({}); {} good records "
                      "kept; the dropped bytes are in {}",
                      journal_path_.string(), span.bytes, span.offset, span.reason, report_.records, aside.string());
      } else {
        report_.skipped_bytes += span.bytes;
        logger_->error("journal {}: skipped {} damaged bytes at offset {} ({}); every valid record after them is "
                       "kept; the damaged bytes are in {}",
                       journal_path_.string(), span.bytes, span.offset, span.reason, aside.string());
      }
      report_.kept_aside.push_back(aside);
    }
    std::uint64_t pos = scan.end;
    if (pos < size) {
      if (::ftruncate(file_.get(), static_cast<off_t>(pos)) != 0) throw_errno("cannot truncate", journal_path_, errno);
      sync_or_throw(file_.get(), journal_path_, false);
    }
    if (!report_.damaged.empty()) pos = skip_lost_receipts(pos);
    if (report_.ignored_records > 0) {
      logger_->warn("journal {}: {} records did not apply to the state and were ignored", journal_path_.string(),
                    report_.ignored_records);
    }
    report_.good_bytes = pos;
    if (::lseek(file_.get(), static_cast<off_t>(pos), SEEK_SET) < 0) throw_errno("cannot seek", journal_path_, errno);
    file_bytes_ = pos;
    stats_.file_bytes = pos;
    compact_floor_ = 0;
  }

  // A damaged span may have held the newest batches, whose receipts their clients hold: those must
  // never be handed out again. The counter skips as many receipts as the spans could have held
  // batches, in both states, and a Checkpoint appended at `end` (the file's end) makes that
  // durable. Returns the new end of the file.
  std::uint64_t skip_lost_receipts(std::uint64_t end) {
    std::uint64_t could_hold = 0;
    for (const DamagedSpan& span : report_.damaged) {
      could_hold += span.bytes / (framed_size(BatchAccepted{}) + 1) + 1;
    }
    const Checkpoint skip{recovered_.next_receipt() + could_hold};
    recovered_.apply(skip);
    writer_state_.apply(skip);
    const Frame frame = make_frame(skip, header_.salt);
    if (::pwrite(file_.get(), frame.frame.data(), frame.frame.size(), static_cast<off_t>(end)) !=
        static_cast<ssize_t>(frame.frame.size())) {
      throw_errno("cannot write", journal_path_, errno);
    }
    sync_or_throw(file_.get(), journal_path_, true);
    return end + frame.frame.size();
  }

  // Damage in the middle of the file was skipped (and kept aside): write the journal again without
  // it, so that the next open does not meet it again. Failing that, the journal carries on as it
  // is (the scan skips the damage each time).
  void rewrite_without_damage() {
    try {
      compact();
      report_.rewritten = true;
      report_.good_bytes = file_bytes_;
    } catch (const CompactionAborted& e) {  // before the rename: the journal as recovered is still the journal
      std::error_code ignored;
      std::filesystem::remove(compact_path_, ignored);
      logger_->warn("journal {}: could not rewrite it without the damaged bytes ({}); carrying on with it as it is",
                    journal_path_.string(), e.what());
    }
  }

  // Feeds one recovered record to both states: the broker's (payloads in memory) and the writer's
  // (payloads left in the file at `record_offset`).
  void apply_recovered(JournalRecord record, std::uint64_t record_offset) {
    ApplyResult result = ApplyResult::applied;
    if (const auto* accepted = std::get_if<BatchAccepted>(&record)) {
      const std::uint64_t payload_offset = record_offset + framed_size(record) - accepted->payload.size();
      writer_state_.accept_at(accepted->receipt, accepted->task_count, payload_offset, accepted->payload.size());
      result = recovered_.apply(std::move(record));
    } else {
      writer_state_.apply(record);
      result = recovered_.apply(std::move(record));
    }
    if (result != ApplyResult::applied) {
      ++report_.ignored_records;
      logger_->debug("journal {}: record at offset {} ignored: {}", journal_path_.string(), record_offset,
                     describe(result));
    }
  }

  void signal() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t ignored = ::write(event_.get(), &one, sizeof(one));
  }

  // Writes what is queued, a group at a time. A full disk (ENOSPC, EDQUOT) is not the end: the
  // group's partial write is cut off again (the file ends at its last durable record), the journal
  // says it is stalled (stats().stalled) and tries again, 50 ms later doubling to 1 s, with
  // whatever was submitted meanwhile, until space returns; nothing durable is touched, nothing is
  // claimed durable before it is. Any other failure, or a full disk at shutdown, ends durability
  // for this run (failed_).
  void write_loop() {
    std::vector<Pending> group;
    auto backoff = std::chrono::milliseconds(50);
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        if (group.empty()) work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (group.empty() && queue_.empty()) break;  // stopping, and everything submitted is written
        std::move(queue_.begin(), queue_.end(), std::back_inserter(group));
        queue_.clear();
      }
      try {
        commit(group);
      } catch (const std::system_error& e) {
        if (!out_of_space(e) || !roll_back()) return fail(e.what());
        std::unique_lock lock(mutex_);
        if (stopping_) {
          lock.unlock();
          logger_->error("journal {}: stopping while the disk is full: {} record(s) never became durable (deferred "
                         "batches among them were never acknowledged; finished tasks among them will run again)",
                         journal_path_.string(), group.size());
          return fail(e.what());
        }
        if (stats_.stalled.empty()) {
          logger_->error("{}; {} record(s) wait, and are written as soon as there is space again",
                         e.what(), group.size());
        }
        stats_.stalled = e.what();
        ++stats_.write_stalls;
        work_.wait_for(lock, backoff, [&] { return stopping_; });
        backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(1));
        continue;
      } catch (const std::exception& e) {
        return fail(e.what());
      }
      group.clear();
      backoff = std::chrono::milliseconds(50);
      bool resumed = false;
      {
        std::lock_guard lock(mutex_);
        resumed = !stats_.stalled.empty();
        stats_.stalled.clear();
      }
      if (resumed) logger_->warn("journal {}: writing again, space is back", journal_path_.string());
      try {
        maybe_compact();
      } catch (const std::exception& e) {
        return fail(e.what());
      }
    }
  }

  void fail(const std::string& why) {
    logger_->error("{}; no further records can be made durable", why);
    {
      std::lock_guard lock(mutex_);
      failed_ = true;
      failure_ = why;
      failed_flag_.store(true, std::memory_order_release);
    }
    durable_changed_.notify_all();
    signal();
  }

  // Cuts a failed group's bytes off again, so that the file ends with its last durable record.
  // False (logged) when even that fails.
  bool roll_back() noexcept {
    if (::ftruncate(file_.get(), static_cast<off_t>(file_bytes_)) != 0 ||
        ::lseek(file_.get(), static_cast<off_t>(file_bytes_), SEEK_SET) < 0) {
      logger_->error("journal {}: cannot cut a failed write off again: {}", journal_path_.string(),
                     std::strerror(errno));
      return false;
    }
    return true;
  }

  // Appends one group with writev, makes it durable with one fdatasync, then publishes it.
  void commit(std::vector<Pending>& group) {
    std::vector<Frame> frames;
    frames.reserve(group.size());
    std::vector<iovec> iov;
    iov.reserve(group.size() * 2);
    std::uint64_t offset = file_bytes_;
    std::vector<std::uint64_t> payload_offsets(group.size());
    for (std::size_t i = 0; i < group.size(); ++i) {
      Frame& frame = frames.emplace_back(make_frame(group[i].record, header_.salt));
      payload_offsets[i] = offset + frame.frame.size();
      offset += frame.frame.size() + frame.payload.size();
      iov.push_back({frame.frame.data(), frame.frame.size()});
      if (!frame.payload.empty()) iov.push_back({const_cast<char*>(frame.payload.data()), frame.payload.size()});
    }
    const std::uint64_t appended = offset - file_bytes_;
    write_all(file_.get(), iov, journal_path_);
    const auto sync_started = std::chrono::steady_clock::now();
    sync_or_throw(file_.get(), journal_path_, true);
    const std::chrono::duration<double> synced_in = std::chrono::steady_clock::now() - sync_started;
    file_bytes_ = offset;  // only now: a failed write or sync is cut back to here (roll_back)

    for (std::size_t i = 0; i < group.size(); ++i) {
      if (auto* accepted = std::get_if<BatchAccepted>(&group[i].record)) {
        writer_state_.accept_at(accepted->receipt, accepted->task_count, payload_offsets[i], accepted->payload.size());
      } else {
        writer_state_.apply(std::move(group[i].record));
      }
    }
    {
      std::lock_guard lock(mutex_);
      ++stats_.fsyncs;
      stats_.fsync_seconds.observe(synced_in.count());
      stats_.bytes_appended += appended;
      stats_.file_bytes = file_bytes_;
      durable_.store(group.back().token, std::memory_order_release);
    }
    durable_changed_.notify_all();
    signal();
  }

  void maybe_compact() {
    if (file_bytes_ < options_.compact_min_bytes || file_bytes_ < compact_floor_) return;
    const auto live = static_cast<double>(header_.size + writer_state_.snapshot_bytes());
    if (live > options_.compact_live_ratio * static_cast<double>(file_bytes_)) return;
    try {
      compact();
    } catch (const CompactionAborted& e) {
      // The old journal is untouched and still the journal: carry on with it, and do not try again
      // before the file has grown by another compact_min_bytes.
      std::error_code ignored;
      std::filesystem::remove(compact_path_, ignored);
      compact_floor_ = file_bytes_ + options_.compact_min_bytes;
      logger_->warn("journal {}: compaction abandoned, keeping the current journal: {}", journal_path_.string(),
                    e.what());
    }
  }

  // Thrown for failures before the rename, which leave the old journal in charge.
  struct CompactionAborted : std::runtime_error {
    using std::runtime_error::runtime_error;
  };

  void compact() {
    std::uint64_t new_size = 0;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> new_payload_offsets;  // receipt, offset
    Fd tmp;
    try {
      tmp = open_or_throw(compact_path_, O_WRONLY | O_CREAT | O_TRUNC, "cannot create");
      std::string buffer;
      constexpr std::size_t buffer_limit = std::size_t{1} << 20;
      const auto flush_buffer = [&] {
        write_all(tmp.get(), buffer.data(), buffer.size(), compact_path_);
        buffer.clear();
      };
      buffer.append(header_.bytes);
      new_size = header_.size;
      for (JournalRecord& record : writer_state_.snapshot()) {
        if (const auto* accepted = std::get_if<BatchAccepted>(&record)) {
          // The record in the old file is byte for byte the one to write: copy it, checking its
          // CRC on the way, so that a corrupted old copy is never the only one left.
          const DeferredBatch& batch = *writer_state_.find(accepted->receipt);
          const std::uint64_t record_size = framed_size(*accepted) + batch.payload_size;
          const std::uint64_t start = batch.payload_offset - framed_size(*accepted);
          flush_buffer();
          copy_checked(tmp.get(), start, record_size);
          new_payload_offsets.emplace_back(accepted->receipt, new_size + framed_size(*accepted));
          new_size += record_size;
          continue;
        }
        const Frame frame = make_frame(record, header_.salt);
        buffer += frame.frame;
        new_size += frame.frame.size();
        if (buffer.size() >= buffer_limit) flush_buffer();
      }
      flush_buffer();
      sync_or_throw(tmp.get(), compact_path_, false);
    } catch (const std::exception& e) {  // fanout::Error or an OS failure (std::system_error)
      throw CompactionAborted(e.what());
    }
    // From here on the new journal may be the one on disk: a failure is a failure of the journal.
    if (::rename(compact_path_.c_str(), journal_path_.c_str()) != 0) {
      const int error = errno;
      throw CompactionAborted(sys::os_error("cannot rename over " + journal_path_.string(), error).what());
    }
    sync_directory(options_.directory);
    Fd fresh = open_or_throw(journal_path_, O_RDWR | O_APPEND, "cannot reopen");
    file_ = std::move(fresh);
    for (const auto& [receipt, offset] : new_payload_offsets) writer_state_.move_payload(receipt, offset);
    const std::uint64_t old_size = file_bytes_;
    file_bytes_ = new_size;
    compact_floor_ = 0;
    {
      std::lock_guard lock(mutex_);
      ++stats_.compactions;
      stats_.file_bytes = file_bytes_;
    }
    logger_->info("journal {}: compacted {} bytes to {} ({} live batches)", journal_path_.string(), old_size,
                  new_size, writer_state_.batches().size());
  }

  // Copies `size` bytes at `start` of the journal to `out` and checks that they are one whole
  // record with a good CRC. Throws fanout::Error otherwise.
  void copy_checked(int out, std::uint64_t start, std::uint64_t size) {
    std::vector<char> chunk(std::min<std::uint64_t>(size, std::uint64_t{1} << 20));
    std::uint32_t crc = 0;
    std::uint32_t stored_crc = 0;
    std::uint64_t done = 0;
    while (done < size) {
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), size - done));
      const ssize_t got = ::pread(file_.get(), chunk.data(), want, static_cast<off_t>(start + done));
      if (got < 0) {
        if (errno == EINTR) continue;
        throw_errno("cannot read", journal_path_, errno);
      }
      if (got == 0) throw Error("journal: " + journal_path_.string() + " is shorter than its state says");
      const auto n = static_cast<std::size_t>(got);
      std::size_t skip = 0;
      if (done == 0) {
        if (n < frame_header_bytes) throw Error("journal: short read of a record header");
        const auto* bytes = reinterpret_cast<const unsigned char*>(chunk.data());
        if (get_u32(bytes) + frame_header_bytes != size) throw Error("journal: record length changed on disk");
        stored_crc = get_u32(bytes + 4);
        crc = crc32c(header_.salt, bytes, 4);
        skip = frame_header_bytes;
      }
      crc = crc32c(crc, chunk.data() + skip, n - skip);
      write_all(out, chunk.data(), n, compact_path_);
      done += n;
    }
    if (crc != stored_crc) throw Error("journal: checksum mismatch in " + journal_path_.string() + " while compacting");
  }

  JournalOptions options_;
  std::shared_ptr<spdlog::logger> logger_;
  std::filesystem::path journal_path_;
  std::filesystem::path compact_path_;
  Fd dir_;  // flock'ed while the journal is open (lock())
  Header header_;
  Fd file_;
  Fd event_;
  RecoveryReport report_;
  DeferredState recovered_;  // handed to the broker by take_recovered()

  // Writer thread only (and the constructor, before it starts).
  DeferredState writer_state_;
  std::uint64_t file_bytes_ = 0;
  std::uint64_t compact_floor_ = 0;  // no compaction below this size (after an abandoned one)

  // Broker thread only.
  Token reported_ = 0;

  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable work_;
  std::condition_variable durable_changed_;
  std::vector<Pending> queue_;
  Token submitted_ = 0;
  bool stopping_ = false;
  bool failed_ = false;
  std::string failure_;
  JournalStats stats_;
  std::atomic<Token> durable_{0};
  std::atomic<bool> failed_flag_{false};

  std::thread writer_;  // last: starts after everything it uses exists, joins first
};

Journal::Journal(JournalOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Journal::~Journal() = default;
const RecoveryReport& Journal::recovery() const noexcept { return impl_->recovery(); }
DeferredState Journal::take_recovered() { return impl_->take_recovered(); }
Token Journal::submit(JournalRecord record) { return impl_->submit(std::move(record)); }
int Journal::ready_fd() const noexcept { return impl_->ready_fd(); }
Token Journal::collect_durable() { return impl_->collect_durable(); }
Token Journal::flush() { return impl_->flush(); }
JournalStats Journal::stats() const { return impl_->stats(); }

}  // namespace fanout::broker
