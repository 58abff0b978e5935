// Local mode belongs to its user: no other uid can connect to a program's local pool or to its
// local service, nor take a service's name first. Played as the attacker would, from a process
// that drops to `nobody`: the attack that worked before (an abstract socket anyone could connect
// to, found in /proc/net/unix) is refused by the kernel, while the owner's connection works.
#include <doctest/doctest.h>

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "child.hpp"
#include "local_services.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;

namespace {

constexpr uid_t kNobody = 65534;

// Exit codes of an attempt, so that the test can tell what the kernel said.
constexpr int kRefused = 0;   // EACCES: no permission to reach the socket
constexpr int kReached = 10;  // connected (or bound)
constexpr int kOther = 20;    // any other error

// The unix sockets `pid` listens on, by path ("@name" for an abstract one), from its descriptors
// and /proc/net/unix.
std::vector<std::string> listening_sockets(pid_t pid) {
  std::set<std::string> inodes;
  std::error_code error;
  for (std::filesystem::directory_iterator entry("/proc/" + std::to_string(pid) + "/fd", error), end; !error && entry != end;
       entry.increment(error)) {
    std::error_code unreadable;
    const std::string target = std::filesystem::read_symlink(entry->path(), unreadable).string();
    if (target.rfind("socket:[", 0) == 0) inodes.insert(target.substr(8, target.size() - 9));
  }
  std::vector<std::string> paths;
  std::ifstream table("/proc/net/unix");
  std::string line;
  std::getline(table, line);  // the header
  while (std::getline(table, line)) {
    // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 is a listening socket.
    std::istringstream fields(line);
    std::string num, refs, protocol, flags, type, state, inode, path;
    fields >> num >> refs >> protocol >> flags >> type >> state >> inode >> path;
    if (flags == "00010000" && inodes.count(inode) != 0 && !path.empty()) paths.push_back(path);
  }
  return paths;
}

// What an attempt on a socket file does: connect(2) or bind(2).
using SocketCall = int (*)(int, const sockaddr*, socklen_t);

// Tries `call` on the socket file `path` from a forked process, as `nobody` when `as_nobody`:
// kRefused, kReached or kOther + n (the exit code says which).
int attempt(SocketCall call, const std::string& path, bool as_nobody) {
  auto attempt = fanout_test::Child::fork([&] {
    if (as_nobody && (::setgroups(0, nullptr) != 0 || ::setresgid(kNobody, kNobody, kNobody) != 0 ||
                      ::setresuid(kNobody, kNobody, kNobody) != 0)) {
      return kOther + 1;
    }
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    if (call(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) return kReached;
    return errno == EACCES ? kRefused : kOther + 2;
  });
  return attempt.finish(10s);
}

int try_connect(const std::string& path, bool as_nobody) { return attempt(::connect, path, as_nobody); }
// As `nobody`: binds a socket file at `path` (taking a name before its owner does).
int try_bind_as_nobody(const std::string& path) { return attempt(::bind, path, /*as_nobody=*/true); }

bool can_play_another_user() {
  if (::geteuid() == 0) return true;
  MESSAGE("not root: cannot act as another user here; the attacks are not tried");
  return false;
}

}  // namespace

TEST_CASE("another user cannot connect to a program's local pool; its owner can") {
  if (!can_play_another_user()) return;
  fanout_test::Child victim({FANOUT_VICTIM_PROGRAM});
  REQUIRE(victim.wait_for_line("ready", 60s));
  const auto sockets = listening_sockets(victim.pid());
  std::string listed;
  for (const auto& path : sockets) listed += path + " ";
  INFO("the victim listens on: " << listed);
  REQUIRE_FALSE(sockets.empty());
  for (const auto& path : sockets) {
    // No abstract name, which any user could have connected to.
    CHECK(path.front() == '/');
    // In a directory of its user's with no access for anyone else.
    struct stat directory {};
    REQUIRE(::stat(std::filesystem::path(path).parent_path().c_str(), &directory) == 0);
    CHECK(directory.st_uid == ::geteuid());
    CHECK((directory.st_mode & 077) == 0);
    CHECK(try_connect(path, /*as_nobody=*/true) == kRefused);
    CHECK(try_connect(path, /*as_nobody=*/false) == kReached);
  }
}

TEST_CASE("another user cannot connect to a program's local service, nor take its name first") {
  if (!can_play_another_user()) return;
  fanout_test::TempDir dir;
  fanout_test::ScopedEnv state("XDG_STATE_HOME", dir.path().c_str());
  fanout_test::ScopedEnv idle("FANOUT_SERVICE_IDLE_MS", "2000");
  fanout_test::ScopedEnv no_broker("FANOUT_BROKER", nullptr);
  const fanout_test::LocalServices services(dir.path());
  const auto go = dir.path() / "go";
  const auto done = dir.path() / "done";
  const auto caller = fanout_test::run_to_end({FANOUT_DEFERRING_PROGRAM, go.string(), done.string()}, {.merge_output = true});
  REQUIRE(caller.status == 0);
  REQUIRE(fanout_test::eventually([&] { return services.serving(); }, 20s));
  const std::string log = services.logs();
  INFO(log);
  const auto at = log.find("serving ipc://");
  REQUIRE(at != std::string::npos);
  const std::string path = log.substr(at + 14, log.find(' ', at + 14) - at - 14);
  CHECK(path.front() == '/');
  CHECK(try_connect(path, /*as_nobody=*/true) == kRefused);
  CHECK(try_bind_as_nobody(path) == kRefused);
  CHECK(try_bind_as_nobody((std::filesystem::path(path).parent_path() / "service-squatted.sock").string()) == kRefused);
  CHECK(try_connect(path, /*as_nobody=*/false) == kReached);
  // The owner's deferred task still runs.
  std::ofstream(go) << "";
  CHECK(fanout_test::eventually([&] { return std::filesystem::exists(done); }, 30s));
}

TEST_CASE("a private directory that another user could have planted is refused, saying why") {
  fanout_test::TempDir dir;
  const auto planted = dir.path() / ("fanout-" + std::to_string(::geteuid()));
  std::filesystem::create_directory(planted);
  std::filesystem::permissions(planted, std::filesystem::perms::all);  // 0777: anyone may enter
  const auto ran = fanout_test::run_to_end({FANOUT_VICTIM_PROGRAM},
                                           {.env = {"TMPDIR=" + dir.path().string()}, .drop_env = {"XDG_RUNTIME_DIR="}}, 60s);
  CHECK(ran.status != 0);
  CHECK(ran.err.find(planted.string() + " has mode 0777") != std::string::npos);
  CHECK(ran.err.find("Remove it, or set TMPDIR or XDG_RUNTIME_DIR") != std::string::npos);
  // Nothing was put in it.
  CHECK(std::filesystem::is_empty(planted));
}
