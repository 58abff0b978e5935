// local_service.cpp
#include "local_service.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <fanout/error.hpp>

#include <zmq.hpp>

#include "local_pool.hpp"
#include "program.hpp"
#include "broker_queries.hpp"
#include "system/child_process.hpp"
#include "system/exec_image.hpp"
#include "system/os_error.hpp"
#include "system/unique_fd.hpp"
#include "system/private_directory.hpp"

namespace fanout::detail {

namespace {

using Clock = std::chrono::steady_clock;

// How long a program waits for the service to answer before it takes it for absent and starts
// one (FANOUT_SERVICE_PROBE_MS): short, since the first defer of a program pays it in full.
constexpr auto kDefaultProbe = std::chrono::milliseconds(300);
constexpr auto kStartLimit = std::chrono::seconds(20);
constexpr auto kRespawn = std::chrono::seconds(3);
constexpr auto kDefaultIdle = std::chrono::seconds(10);

std::string hex(std::size_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016zx", value);
  return text;
}

// The service is this user's and this program's: a program at another path, or another user,
// gets a service of its own.
std::string service_key(const std::string& program) {
  return std::to_string(::getuid()) + "-" + hex(std::hash<std::string>{}(program));
}

// The milliseconds in environment variable `variable`, or `fallback` when it is unset or empty.
std::chrono::milliseconds milliseconds_from_env(const char* variable, std::chrono::milliseconds fallback) {
  const char* value = std::getenv(variable);
  if (value == nullptr || *value == '\0') return fallback;
  return std::chrono::milliseconds(std::strtoull(value, nullptr, 10));
}

// A loaded machine may need longer to answer (a service found absent but there starts another,
// which gives way to it).
std::chrono::milliseconds probe_limit() {
  return std::max(milliseconds_from_env("FANOUT_SERVICE_PROBE_MS", kDefaultProbe), std::chrono::milliseconds(1));
}

std::chrono::milliseconds idle_limit() { return milliseconds_from_env("FANOUT_SERVICE_IDLE_MS", kDefaultIdle); }

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop = true; }

// Starts the service detached: a child that starts a new session and forks the service, then
// exits at once (reaped here), so the service has no parent to die with and leaves no zombie.
// Returns the service's pid, which that child passes back through a pipe (0 if it could not).
pid_t spawn_service(const std::string& executable, const std::vector<std::string>& arguments, const std::filesystem::path& log) {
  if (executable.empty()) throw Error("cannot start the local fanout service: /proc/self/exe is unreadable");
  // Not a worker of this program's pool, not a child of its settings for the broker.
  const sys::ExecImage image(executable, arguments, {"FANOUT_LOCAL_", "FANOUT_WORKER="},
                             {std::string(kServiceRoleVariable) + "=1"});
  const std::string log_path = log.string();

  int pid_pipe[2];
  if (::pipe2(pid_pipe, O_CLOEXEC) != 0) sys::throw_os_error("pipe for the local fanout service");
  const sys::UniqueFd pid_in(pid_pipe[0]);
  sys::UniqueFd pid_out(pid_pipe[1]);
  std::fflush(nullptr);
  const pid_t middle = ::fork();
  if (middle < 0) sys::throw_os_error("fork of the local fanout service");
  if (middle == 0) {
    ::setsid();
    if (const pid_t service = ::fork(); service != 0) {
      if (service > 0) (void)!::write(pid_out.get(), &service, sizeof service);
      ::_exit(0);
    }
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (null >= 0) ::dup2(null, STDIN_FILENO);
    if (out >= 0) {
      ::dup2(out, STDOUT_FILENO);
      ::dup2(out, STDERR_FILENO);
    }
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    image.exec();
  }
  pid_out.reset();
  sys::ChildProcess(middle, /*group_leader=*/false).wait();
  pid_t service = 0;
  if (::read(pid_in.get(), &service, sizeof service) != static_cast<ssize_t>(sizeof service)) return 0;
  return service;
}

// Whether process `pid` still runs (a zombie has ended: a test that reaps orphans may hold one).
bool still_running(pid_t pid) {
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno == ESRCH)) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto state = line.rfind(") ");
  return state == std::string::npos || state + 2 >= line.size() || (line[state + 2] != 'Z' && line[state + 2] != 'X');
}

// The service's directory holds its journal: the arguments of deferred tasks, which may be
// secrets. Only its user may read it, whatever the umask made of it.
void create_service_directory(const std::filesystem::path& directory) {
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (!error) std::filesystem::permissions(directory, std::filesystem::perms::owner_all, error);
  if (error) throw Error("cannot create " + directory.string() + " for the local fanout service: " + error.message());
}

}  // namespace

std::string local_service_endpoint() { return local_service_endpoint_for(program_path()); }

std::filesystem::path local_service_directory() { return local_service_directory_for(program_path()); }

// The name follows the service's directory (program and state directory both): two copies of
// one program that keep their state apart (another XDG_STATE_HOME) get services of their own.
std::string local_service_endpoint_for(const std::string& program) {
  // In the user's private directory, for the same reason as the local pool's socket; an abstract
  // name here could also be bound first by another user, who would then receive the deferred work.
  try {
    return sys::private_ipc_endpoint("service-" + hex(std::hash<std::string>{}(local_service_directory_for(program).string())) +
                                     ".sock");
  } catch (const std::runtime_error& error) {
    throw Error(std::string("cannot reach the local fanout service: ") + error.what());
  }
}

std::filesystem::path local_service_directory_for(const std::string& program) {
  std::filesystem::path base;
  if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && *state == '/') {
    base = state;
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home == '/') {
    base = std::filesystem::path(home) / ".local" / "state";
  } else {
    base = std::filesystem::temp_directory_path() / ("fanout-" + std::to_string(::getuid()) + "-state");
  }
  return base / "fanout" / (std::filesystem::path(program).filename().string() + "-" + service_key(program));
}

std::string ensure_local_service() { return ensure_local_service_for(program_path(), program_arguments()); }

std::string ensure_local_service_for(const std::string& program, std::vector<std::string> arguments) {
  const std::string endpoint = local_service_endpoint_for(program);
  zmq::context_t context(1);
  const auto probe = probe_limit();
  if (link::query_counts(context, endpoint, probe)) return endpoint;
  const auto directory = local_service_directory_for(program);
  create_service_directory(directory);
  const auto deadline = Clock::now() + kStartLimit;
  // A service that is stopping still holds the name and the journal's lock for a moment: the one
  // started then gives way ("not starting") and exits, and nobody would serve. So another starts
  // once the last one started has exited without an answer. One that is only slow to answer (a
  // loaded machine, a sanitizer's build) is waited for: started again each few seconds, a second
  // service could serve after the first had already served and stopped.
  pid_t service = 0;
  while (Clock::now() < deadline) {
    if (!still_running(service)) service = spawn_service(program, arguments, directory / "service.log");
    if (link::query_counts(context, endpoint, probe)) return endpoint;
    // A pid that could not be learnt: started again each kRespawn, as a last resort.
    if (service == 0) {
      for (const auto respawn = std::min(deadline, Clock::now() + kRespawn); Clock::now() < respawn;) {
        if (link::query_counts(context, endpoint, probe)) return endpoint;
      }
    }
  }
  throw Error("the local fanout service did not start within " + std::to_string(kStartLimit.count()) +
              " s; see " + (directory / "service.log").string());
}

void run_local_service() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGHUP, SIG_IGN);
  int code = 0;
  try {
    const auto directory = local_service_directory();
    create_service_directory(directory);
    zmq::context_t context;
    // Another service of this program may have won the race to the name (or the journal's lock):
    // then this one has nothing to do.
    std::unique_ptr<LocalPool> pool;
    try {
      pool = std::make_unique<LocalPool>(context, LocalPoolOptions{local_service_endpoint(), directory / "journal"});
    } catch (const std::exception& error) {  // the name taken, the journal locked or unusable
      std::fprintf(stderr, "fanout service: not starting: %s\n", error.what());
      std::fflush(nullptr);
      std::_Exit(0);
    }
    std::fprintf(stderr, "fanout service pid %d: serving %s (journal %s)\n", static_cast<int>(::getpid()),
                 local_service_endpoint().c_str(), (directory / "journal").c_str());
    std::fflush(stderr);
    const auto limit = idle_limit();
    // Whoever started the service (a program deferring, `fanout deferred`) gets two seconds to
    // ask, however short the idle limit: the service must not stop before its first question.
    constexpr auto kFirstQuestion = std::chrono::seconds(2);
    auto idle_since = Clock::now() + std::max(Clock::duration(kFirstQuestion - limit), Clock::duration::zero());
    bool handed_over = false;
    while (!g_stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      // Read before the counts: a batch accepted after this read and before the broker stops is
      // caught below; one accepted before it shows in the counts.
      const std::uint64_t accepted = pool->deferred_accepted();
      const auto counts = link::query_counts(context, pool->client_endpoint(), std::chrono::seconds(2));
      // Clients (a program that deferred, a tool asking) keep it up as long as the broker hears
      // from them, and one liveness period after.
      const bool busy = !counts ||
                        counts->queued + counts->running + counts->deferred_pending + counts->deferred_running + counts->clients > 0;
      if (busy) {
        idle_since = Clock::now();
      } else if (Clock::now() - idle_since >= limit) {
        std::fprintf(stderr, "fanout service: idle for %lld ms; stopping\n", static_cast<long long>(limit.count()));
        // The broker serves while the worker drains: a program may defer a batch in that moment
        // (it found the service answering). Then a successor serves it, once the journal is free.
        pool->stop();
        handed_over = pool->deferred_accepted() != accepted;
        break;
      }
      if (const auto broken = pool->broken()) {
        std::fprintf(stderr, "fanout service: %s; stopping\n", broken->c_str());
        code = 1;
        break;
      }
    }
    pool.reset();
    if (handed_over) {
      std::fprintf(stderr, "fanout service: a deferred batch arrived while stopping; starting a successor\n");
      std::fflush(stderr);
      spawn_service(program_path(), program_arguments(), directory / "service.log");
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "fanout service: %s\n", error.what());
    code = 1;
  }
  std::fflush(nullptr);
  std::_Exit(code);
}

}  // namespace fanout::detail
