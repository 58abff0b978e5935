#include "journal.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>
#include <fanout/error.hpp>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "system/os_error.hpp"
#include "system/unique_fd.hpp"

namespace fanout::broker {

// ---- CRC32C ----

namespace {

struct Crc32cTables {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  constexpr Crc32cTables() {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t crc = i;
      for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
      t[0][i] = crc;
    }
    for (std::uint32_t i = 0; i < 256; ++i) {
      for (std::size_t k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
    }
  }
};
constexpr Crc32cTables crc_tables;

// Slicing-by-8 over the reflected polynomial; `crc` is the raw (already inverted) register.
std::uint32_t crc32c_table(std::uint32_t crc, const unsigned char* p, std::size_t size) noexcept {
  const auto& t = crc_tables.t;
  while (size >= 8) {
    std::uint32_t lo = 0;
    std::uint32_t hi = 0;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    if constexpr (std::endian::native == std::endian::big) {
      lo = __builtin_bswap32(lo);
      hi = __builtin_bswap32(hi);
    }
    lo ^= crc;
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^ t[3][hi & 0xff] ^
          t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    size -= 8;
  }
  while (size-- > 0) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::uint32_t crc, const unsigned char* p,
                                                              std::size_t size) noexcept {
  std::uint64_t wide = crc;
  while (size >= 8) {
    std::uint64_t word = 0;
    std::memcpy(&word, p, 8);
    wide = _mm_crc32_u64(wide, word);
    p += 8;
    size -= 8;
  }
  crc = static_cast<std::uint32_t>(wide);
  while (size-- > 0) crc = _mm_crc32_u8(crc, *p++);
  return crc;
}
bool have_sse42() noexcept {
  static const bool have = [] {
    __builtin_cpu_init();  // may run before libgcc's own constructor has
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return have;
}
#endif

}  // namespace

std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  if (have_sse42()) return ~crc32c_sse42(crc, p, size);
#endif
  return ~crc32c_table(crc, p, size);
}

// ---- files ----

namespace {

constexpr char header_magic[8] = {'F', 'O', 'J', 'R', 'N', 'L', '\x00', '\x01'};
constexpr std::size_t header_bytes = sizeof(header_magic);
constexpr const char* journal_name = "journal";
constexpr const char* compact_name = "journal.compact";
constexpr const char* lock_name = "LOCK";

using Fd = sys::UniqueFd;

// An OS failure, as every part reports one (core/system/os_error.hpp): a std::system_error whose
// what() names the step and the file ("journal: cannot sync /var/lib/fanout/journal: No space left").
[[noreturn]] void throw_errno(const std::string& what, const std::filesystem::path& path, int error) {
  sys::throw_os_error("journal: " + what + " " + path.string(), error);
}

Fd open_or_throw(const std::filesystem::path& path, int flags, const std::string& what) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) throw_errno(what, path, errno);
  return Fd(fd);
}

void sync_or_throw(int fd, const std::filesystem::path& path, bool data_only) {
  if ((data_only ? ::fdatasync(fd) : ::fsync(fd)) != 0) throw_errno("cannot sync", path, errno);
}

// fsync on the directory makes a rename or creation inside it durable.
void sync_directory(const std::filesystem::path& directory) {
  const Fd dir = open_or_throw(directory, O_RDONLY | O_DIRECTORY, "cannot open directory");
  sync_or_throw(dir.get(), directory, false);
}

// Writes every byte of `iov`, resuming after short writes and EINTR. Modifies `iov`.
void write_all(int fd, std::vector<iovec>& iov, const std::filesystem::path& path) {
  std::size_t first = 0;
  while (first < iov.size()) {
    const int count = static_cast<int>(std::min<std::size_t>(iov.size() - first, IOV_MAX));
    const ssize_t written = ::writev(fd, iov.data() + first, count);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write", path, errno);
    }
    if (written == 0) throw_errno("cannot write", path, EIO);
    auto left = static_cast<std::size_t>(written);
    while (left > 0 && first < iov.size()) {
      iovec& v = iov[first];
      if (left >= v.iov_len) {
        left -= v.iov_len;
        ++first;
      } else {
        v.iov_base = static_cast<char*>(v.iov_base) + left;
        v.iov_len -= left;
        left = 0;
      }
    }
    while (first < iov.size() && iov[first].iov_len == 0) ++first;
  }
}

void write_all(int fd, const void* data, std::size_t size, const std::filesystem::path& path) {
  std::vector<iovec> iov{{const_cast<void*>(data), size}};
  write_all(fd, iov, path);
}

void put_u32(char* out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}
std::uint32_t get_u32(const unsigned char* in) {
  return std::uint32_t{in[0]} | std::uint32_t{in[1]} << 8 | std::uint32_t{in[2]} << 16 | std::uint32_t{in[3]} << 24;
}

// One framed record ready for writev: `frame` holds the 8-byte frame header and the body prefix;
// `payload` (a BatchAccepted's bytes, else empty) follows it on disk.
struct Frame {
  std::string frame;
  std::string_view payload;
};

Frame make_frame(const JournalRecord& record) {
  Frame out;
  out.frame.assign(frame_header_bytes, '\0');
  encode_body_prefix(record, out.frame);
  if (const auto* accepted = std::get_if<BatchAccepted>(&record)) out.payload = accepted->payload;
  const auto body = static_cast<std::uint32_t>(out.frame.size() - frame_header_bytes + out.payload.size());
  put_u32(out.frame.data(), body);
  std::uint32_t crc = crc32c(0, out.frame.data(), 4);
  crc = crc32c(crc, out.frame.data() + frame_header_bytes, out.frame.size() - frame_header_bytes);
  crc = crc32c(crc, out.payload.data(), out.payload.size());
  put_u32(out.frame.data() + 4, crc);
  return out;
}

// A read-only view of a whole file, for the recovery scan.
class Mapping {
 public:
  Mapping(int fd, std::size_t size, const std::filesystem::path& path) : size_(size) {
    if (size_ == 0) return;
    void* data = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED) throw_errno("cannot map", path, errno);
    data_ = static_cast<const unsigned char*>(data);
  }
  ~Mapping() {
    if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), size_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const unsigned char* data() const noexcept { return data_; }

 private:
  const unsigned char* data_ = nullptr;
  std::size_t size_;
};

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

    lock_ = open_or_throw(dir / lock_name, O_RDWR | O_CREAT, "cannot create lock file");
    if (::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) throw Error("journal: " + dir.string() + " is in use by another journal");
      throw_errno("cannot lock", dir / lock_name, errno);
    }

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
      write_all(tmp.get(), header_magic, header_bytes, compact_path_);
      sync_or_throw(tmp.get(), compact_path_, false);
    }
    if (::rename(compact_path_.c_str(), journal_path_.c_str()) != 0) throw_errno("cannot rename to", journal_path_, errno);
    sync_directory(options_.directory);
    file_ = open_or_throw(journal_path_, O_RDWR, "cannot open");
    report_.created = true;
  }

  void recover() {
    struct stat st {};
    if (::fstat(file_.get(), &st) != 0) throw_errno("cannot stat", journal_path_, errno);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    const Mapping map(file_.get(), size, journal_path_);
    const unsigned char* data = map.data();
    if (size < header_bytes && (size == 0 || std::memcmp(data, header_magic, size) == 0)) {
      // Only a file system that lost data behind an fsync'ed rename leaves this; nothing was in it.
      logger_->warn("journal {}: header incomplete ({} bytes), starting empty", journal_path_.string(), size);
      if (::ftruncate(file_.get(), 0) != 0) throw_errno("cannot truncate", journal_path_, errno);
      if (::pwrite(file_.get(), header_magic, header_bytes, 0) != static_cast<ssize_t>(header_bytes)) {
        throw_errno("cannot write", journal_path_, errno);
      }
      sync_or_throw(file_.get(), journal_path_, false);
      return recover();
    }
    if (size < header_bytes || std::memcmp(data, header_magic, header_bytes) != 0) {
      throw Error("journal: " + journal_path_.string() + " is not a fanout journal (bad header)");
    }

    std::uint64_t pos = header_bytes;
    std::string reason;
    while (pos < size) {
      const std::uint64_t left = size - pos;
      if (left < frame_header_bytes) {
        reason = "torn record header";
        break;
      }
      const std::uint32_t body = get_u32(data + pos);
      const std::uint32_t stored_crc = get_u32(data + pos + 4);
      if (body == 0 || body > options_.max_record_bytes) {
        reason = "bad record length " + std::to_string(body);
        break;
      }
      if (body > left - frame_header_bytes) {
        reason = "torn record (length " + std::to_string(body) + ", " + std::to_string(left - frame_header_bytes) +
                 " bytes left)";
        break;
      }
      const char* body_data = reinterpret_cast<const char*>(data + pos + frame_header_bytes);
      const std::uint32_t crc = crc32c(crc32c(0, data + pos, 4), body_data, body);
      if (crc != stored_crc) {
        reason = "checksum mismatch";
        break;
      }
      JournalRecord record;
      if (!decode_body(body_data, body, record)) {
        reason = "undecodable record";
        break;
      }
      apply_recovered(std::move(record), pos);
      ++report_.records;
      pos += frame_header_bytes + body;
    }

    report_.good_bytes = pos;
    if (pos < size) {
      report_.dropped_bytes = size - pos;
      report_.dropped_reason = reason;
      logger_->warn("journal {}: dropping {} bytes of torn or corrupt tail at offset {} ({}); {} good records kept",
                    journal_path_.string(), report_.dropped_bytes, pos, reason, report_.records);
      if (::ftruncate(file_.get(), static_cast<off_t>(pos)) != 0) throw_errno("cannot truncate", journal_path_, errno);
      sync_or_throw(file_.get(), journal_path_, false);
    }
    if (report_.ignored_records > 0) {
      logger_->warn("journal {}: {} records did not apply to the state and were ignored", journal_path_.string(),
                    report_.ignored_records);
    }
    if (::lseek(file_.get(), static_cast<off_t>(pos), SEEK_SET) < 0) throw_errno("cannot seek", journal_path_, errno);
    file_bytes_ = pos;
    stats_.file_bytes = pos;
    compact_floor_ = 0;
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

  void write_loop() {
    std::vector<Pending> group;
    for (;;) {
      group.clear();
      {
        std::unique_lock lock(mutex_);
        work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) break;  // stopping, and everything submitted is written
        group.swap(queue_);
      }
      try {
        commit(group);
        maybe_compact();
      } catch (const std::exception& e) {
        logger_->error("{}; no further records can be made durable", e.what());
        {
          std::lock_guard lock(mutex_);
          failed_ = true;
          failure_ = e.what();
          failed_flag_.store(true, std::memory_order_release);
        }
        durable_changed_.notify_all();
        signal();
        return;
      }
    }
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
      Frame& frame = frames.emplace_back(make_frame(group[i].record));
      payload_offsets[i] = offset + frame.frame.size();
      offset += frame.frame.size() + frame.payload.size();
      iov.push_back({frame.frame.data(), frame.frame.size()});
      if (!frame.payload.empty()) iov.push_back({const_cast<char*>(frame.payload.data()), frame.payload.size()});
    }
    const std::uint64_t appended = offset - file_bytes_;
    write_all(file_.get(), iov, journal_path_);
    file_bytes_ = offset;
    const auto sync_started = std::chrono::steady_clock::now();
    sync_or_throw(file_.get(), journal_path_, true);
    const std::chrono::duration<double> synced_in = std::chrono::steady_clock::now() - sync_started;

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
    const auto live = static_cast<double>(header_bytes + writer_state_.snapshot_bytes());
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
      buffer.append(header_magic, header_bytes);
      new_size = header_bytes;
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
        const Frame frame = make_frame(record);
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
        crc = crc32c(0, bytes, 4);
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
  Fd lock_;
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
