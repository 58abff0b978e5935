#include "journal_io.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <random>

#include <fanout/error.hpp>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "journal.hpp"
#include "system/descriptors.hpp"
#include "system/os_error.hpp"

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

namespace journal_io {

Header new_header() {
  std::uint32_t salt = 0;
  if (::getrandom(&salt, sizeof(salt), 0) != static_cast<ssize_t>(sizeof(salt))) salt = std::random_device{}();
  Header header;
  header.salt = salt;
  header.size = header_v2_bytes;
  header.bytes.assign(magic_v2, magic_bytes);
  header.bytes.resize(header_v2_bytes);
  put_u32(header.bytes.data() + 8, salt);
  put_u32(header.bytes.data() + 12, crc32c(0, header.bytes.data(), 12));
  return header;
}

std::optional<Header> parse_header(const unsigned char* data, std::size_t size, std::string& why) {
  if (size >= magic_bytes && std::memcmp(data, magic_v1, magic_bytes) == 0) {
    return Header{0, magic_bytes, std::string(magic_v1, magic_bytes)};
  }
  if (size < magic_bytes || std::memcmp(data, magic_v2, magic_bytes) != 0) {
    why = "not a fanout journal (bad header)";
    return std::nullopt;
  }
  if (size < header_v2_bytes) {
    why = "its header is incomplete (" + std::to_string(size) + " of " + std::to_string(header_v2_bytes) + " bytes)";
    return std::nullopt;
  }
  if (get_u32(data + 12) != crc32c(0, data, 12)) {
    why = "its header is damaged (bytes 8 to 15 fail their checksum); nothing was changed, so an operator can "
          "restore it or move the file aside";
    return std::nullopt;
  }
  return Header{get_u32(data + 8), header_v2_bytes, std::string(reinterpret_cast<const char*>(data), header_v2_bytes)};
}

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

void sync_directory(const std::filesystem::path& directory) {
  const Fd dir = open_or_throw(directory, O_RDONLY | O_DIRECTORY, "cannot open directory");
  sync_or_throw(dir.get(), directory, false);
}

// The system layer's complete write, failing as the journal's other steps do.
void write_all(int fd, std::vector<iovec>& iov, const std::filesystem::path& path) {
  if (!sys::write_all(fd, std::span<iovec>(iov))) throw_errno("cannot write", path, errno);
}

void write_all(int fd, const void* data, std::size_t size, const std::filesystem::path& path) {
  if (!sys::write_all(fd, data, size)) throw_errno("cannot write", path, errno);
}

Frame make_frame(const JournalRecord& record, std::uint32_t salt) {
  Frame out;
  out.frame.assign(frame_header_bytes, '\0');
  encode_body_prefix(record, out.frame);
  if (const auto* accepted = std::get_if<BatchAccepted>(&record)) out.payload = accepted->payload;
  const auto body = static_cast<std::uint32_t>(out.frame.size() - frame_header_bytes + out.payload.size());
  put_u32(out.frame.data(), body);
  std::uint32_t crc = crc32c(salt, out.frame.data(), 4);
  crc = crc32c(crc, out.frame.data() + frame_header_bytes, out.frame.size() - frame_header_bytes);
  crc = crc32c(crc, out.payload.data(), out.payload.size());
  put_u32(out.frame.data() + 4, crc);
  return out;
}

Mapping::Mapping(int fd, std::size_t size, const std::filesystem::path& path) : size_(size) {
  if (size_ == 0) return;
  void* data = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (data == MAP_FAILED) throw_errno("cannot map", path, errno);
  data_ = static_cast<const unsigned char*>(data);
}

Mapping::~Mapping() {
  if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), size_);
}

}  // namespace journal_io
}  // namespace fanout::broker
