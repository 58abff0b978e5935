// journal_io.hpp: what the journal's writer (journal.cpp) and its recovery scan (journal_scan.cpp)
// share: the file header, record framing, and the small file operations that throw with the path
// and the errno text. Private to the broker.
//
// Header. Version 2 (what a new journal gets): "FOJRNL\x00\x02", a u32 LE salt drawn at random when
// the journal is created, and a u32 LE CRC32C of the 12 bytes before it. Every record's CRC starts
// from the salt, so bytes that a client put inside a batch's payload can never pass for a record
// of this journal (whoever wrote them cannot know the salt): recovery resynchronises after damage
// by looking for the next valid record, and must not find one inside a payload. Version 1 (older
// brokers): "FOJRNL\x00\x01" alone, salt 0; such a journal keeps its version, compaction included,
// and so lacks that protection: move it aside once drained (no pending or dead work) to get a
// version-2 journal.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "deferred_store.hpp"
#include "system/unique_fd.hpp"

namespace fanout::broker::journal_io {

using Fd = sys::UniqueFd;

inline constexpr std::size_t magic_bytes = 8;
inline constexpr char magic_v1[magic_bytes] = {'F', 'O', 'J', 'R', 'N', 'L', '\x00', '\x01'};
inline constexpr char magic_v2[magic_bytes] = {'F', 'O', 'J', 'R', 'N', 'L', '\x00', '\x02'};
inline constexpr std::size_t header_v2_bytes = 16;

struct Header {
  std::uint32_t salt = 0;   // where every record's CRC starts
  std::size_t size = 0;     // bytes of header; records follow
  std::string bytes;        // the header as on disk (compaction writes the same one)
};

// A fresh version-2 header with a random salt.
Header new_header();

// Reads the header at the start of `data` (`size` bytes). Returns nullopt when the file is not a
// fanout journal or its header is damaged; `why` says which.
std::optional<Header> parse_header(const unsigned char* data, std::size_t size, std::string& why);

// An OS failure as a std::system_error whose what() names the step and the file
// ("journal: cannot sync /var/lib/fanout/journal: No space left on device").
[[noreturn]] void throw_errno(const std::string& what, const std::filesystem::path& path, int error);
Fd open_or_throw(const std::filesystem::path& path, int flags, const std::string& what);
void sync_or_throw(int fd, const std::filesystem::path& path, bool data_only);
// fsync on the directory makes a rename or creation inside it durable.
void sync_directory(const std::filesystem::path& directory);
// Writes every byte, resuming after short writes and EINTR. The first form modifies `iov`.
void write_all(int fd, std::vector<iovec>& iov, const std::filesystem::path& path);
void write_all(int fd, const void* data, std::size_t size, const std::filesystem::path& path);

inline void put_u32(char* out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}
inline std::uint32_t get_u32(const unsigned char* in) {
  return std::uint32_t{in[0]} | std::uint32_t{in[1]} << 8 | std::uint32_t{in[2]} << 16 | std::uint32_t{in[3]} << 24;
}

// One framed record ready for writev: `frame` holds the 8-byte frame header and the body prefix;
// `payload` (a BatchAccepted's bytes, else empty) follows it on disk.
struct Frame {
  std::string frame;
  std::string_view payload;
};
Frame make_frame(const JournalRecord& record, std::uint32_t salt);

// A read-only view of a whole file, for the recovery scan.
class Mapping {
 public:
  Mapping(int fd, std::size_t size, const std::filesystem::path& path);
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const unsigned char* data() const noexcept { return data_; }

 private:
  const unsigned char* data_ = nullptr;
  std::size_t size_;
};

}  // namespace fanout::broker::journal_io
