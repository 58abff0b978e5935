// private_directory.cpp
#include "system/private_directory.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <system_error>

namespace fanout::sys {

namespace {

// How old a socket file must be before remove_stale_sockets() considers it.
constexpr time_t kFreshSeconds = 60;

std::filesystem::path runtime_directory_name() {
  if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime != nullptr && *runtime == '/') {
    return std::filesystem::path(runtime) / "fanout";
  }
  const char* temporary = std::getenv("TMPDIR");
  const std::filesystem::path base = temporary != nullptr && *temporary == '/' ? temporary : "/tmp";
  return base / ("fanout-" + std::to_string(::geteuid()));
}

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

}  // namespace

std::filesystem::path private_runtime_directory() {
  const std::filesystem::path directory = runtime_directory_name();
  if (::mkdir(directory.c_str(), 0700) != 0 && errno != EEXIST) {
    throw std::runtime_error("cannot create " + directory.string() + " for fanout's local sockets: " +
                             std::strerror(errno));
  }
  // lstat: a symbolic link planted by another user must not lead somewhere they chose.
  struct stat info {};
  if (::lstat(directory.c_str(), &info) != 0) {
    throw std::runtime_error("cannot inspect " + directory.string() + ": " + std::strerror(errno));
  }
  std::string wrong;
  if (!S_ISDIR(info.st_mode)) {
    wrong = "is not a directory";
  } else if (info.st_uid != ::geteuid()) {
    wrong = "belongs to uid " + std::to_string(info.st_uid) + ", not to this user (uid " + std::to_string(::geteuid()) + ")";
  } else if ((info.st_mode & 077) != 0) {
    wrong = "has mode " + octal_mode(info.st_mode) + ", open to other users";
  }
  if (!wrong.empty()) {
    throw std::runtime_error(directory.string() + " " + wrong +
                             "; fanout keeps its local sockets there and trusts it only when it is a directory of "
                             "this user's with mode 0700. Remove it, or set TMPDIR or XDG_RUNTIME_DIR elsewhere");
  }
  return directory;
}

std::string private_ipc_endpoint(const std::string& name) {
  const std::string path = (private_runtime_directory() / name).string();
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    throw std::runtime_error("the socket path " + path + " is longer than a socket address can hold (" +
                             std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                             " bytes); set TMPDIR or XDG_RUNTIME_DIR to a shorter directory");
  }
  return "ipc://" + path;
}

void remove_stale_sockets(const std::string& prefix) noexcept {
  std::error_code error;
  std::filesystem::directory_iterator entry(runtime_directory_name(), error);
  for (; !error && entry != std::filesystem::directory_iterator(); entry.increment(error)) {
    const std::string path = entry->path().string();
    if (entry->path().filename().string().rfind(prefix, 0) != 0 || path.size() >= sizeof(sockaddr_un{}.sun_path)) continue;
    // A socket file made in the last minute may belong to a pool between its bind() and its
    // listen(), which refuses connections too: only old files can be stale for sure.
    struct stat info {};
    if (::lstat(path.c_str(), &info) != 0 || !S_ISSOCK(info.st_mode) || ::time(nullptr) - info.st_mtime < kFreshSeconds) continue;
    // A socket file nobody listens on refuses connections: that, not a guess from its name,
    // says it is stale (a process id may belong to another pid namespace or have been reused).
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return;
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    const bool refused = ::connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 && errno == ECONNREFUSED;
    ::close(probe);
    if (refused) ::unlink(path.c_str());
  }
}

}  // namespace fanout::sys
