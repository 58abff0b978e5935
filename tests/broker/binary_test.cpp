// The fanout-broker binary, run as a real process: help, exit codes, listening, status, SIGTERM.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A child process with its stdout and stderr on pipes. Killed (SIGKILL) and reaped at the end of
// the scope unless it has already been reaped.
class Child {
 public:
  explicit Child(const std::vector<std::string>& arguments, const std::vector<std::string>& extra_env = {}) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(FANOUT_BROKER_PROGRAM));
    for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> variables;
    for (char** variable = environ; *variable != nullptr; ++variable) {
      if (std::strncmp(*variable, "FANOUT_", 7) != 0) variables.emplace_back(*variable);
    }
    variables.insert(variables.end(), extra_env.begin(), extra_env.end());
    std::vector<char*> envp;
    for (auto& variable : variables) envp.push_back(variable.data());
    envp.push_back(nullptr);

    int out[2];
    int err[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    ::close(out_);
    ::close(err_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }

  // The next line of stdout, waiting up to `limit`; nullopt on timeout or end of output.
  std::optional<std::string> read_line(std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    while (true) {
      const auto newline = stdout_.find('\n');
      if (newline != std::string::npos) {
        std::string line = stdout_.substr(0, newline);
        stdout_.erase(0, newline + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      if (read_some(out_, stdout_, left) == Read::end) return std::nullopt;
    }
  }

  // Waits for the exit (reading its output meanwhile, so that it never blocks on a full pipe);
  // nullopt when it is still running after `limit`. Exit status as from waitpid.
  std::optional<int> wait(std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      int status = 0;
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        pid_ = -1;
        while (read_some(out_, stdout_, 0ms) == Read::data) {
        }
        while (read_some(err_, stderr_, 0ms) == Read::data) {
        }
        return status;
      }
      const bool out_open = read_some(out_, stdout_, 5ms) != Read::end;
      const bool err_open = read_some(err_, stderr_, 5ms) != Read::end;
      if (!out_open && !err_open) std::this_thread::sleep_for(5ms);
    }
    return std::nullopt;
  }

  const std::string& out() const { return stdout_; }
  const std::string& err() const { return stderr_; }

 private:
  enum class Read { data, nothing, end };

  static Read read_some(int fd, std::string& into, std::chrono::milliseconds limit) {
    pollfd item{fd, POLLIN, 0};
    if (::poll(&item, 1, static_cast<int>(limit.count())) <= 0) return Read::nothing;
    char buffer[4096];
    const ssize_t got = ::read(fd, buffer, sizeof(buffer));
    if (got <= 0) return Read::end;
    into.append(buffer, static_cast<std::size_t>(got));
    return Read::data;
  }

  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
  std::string stdout_;
  std::string stderr_;
};

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

// A loopback port where, a moment ago, nothing listened.
int unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  socklen_t size = sizeof(address);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) == 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Runs the broker to completion with a deadline; the exit status, and its output in `child`.
int run_to_exit(Child& child, std::chrono::milliseconds limit = 20s) {
  const auto status = child.wait(limit);
  REQUIRE_MESSAGE(status.has_value(), "fanout-broker did not exit in time; stderr: " << child.err());
  return exit_code(*status);
}

}  // namespace

TEST_CASE("fanout-broker --help exits 0 and shows examples") {
  Child child({"--help"});
  CHECK(run_to_exit(child) == 0);
  CHECK(contains(child.out(), "Examples:"));
  CHECK(contains(child.out(), "fanout-broker --bind tcp://127.0.0.1:5555"));
  CHECK(contains(child.out(), "--status"));
  CHECK(contains(child.out(), "FANOUT_BIND"));
  CHECK(contains(child.out(), "Exit codes"));
}

TEST_CASE("fanout-broker refuses a non-loopback address without --insecure, exiting 3 before it binds") {
  SUBCASE("from the command line") {
    Child child({"--bind", "tcp://0.0.0.0:5555"});
    CHECK(run_to_exit(child) == 3);
    CHECK(contains(child.err(), "refusing to listen on tcp://0.0.0.0:5555"));
    CHECK(contains(child.err(), "--insecure"));
  }
  SUBCASE("after a loopback endpoint that it does not bind either") {
    Child child({"--bind", "tcp://127.0.0.1:*", "--bind", "tcp://10.1.2.3:5555"});
    CHECK(run_to_exit(child) == 3);
    CHECK(contains(child.err(), "refusing to listen on tcp://10.1.2.3:5555"));
    CHECK_FALSE(contains(child.out(), "listening"));
  }
  SUBCASE("from FANOUT_BIND") {
    Child child({}, {"FANOUT_BIND=tcp://0.0.0.0:5555"});
    CHECK(run_to_exit(child) == 3);
    CHECK(contains(child.err(), "refusing to listen on tcp://0.0.0.0:5555"));
  }
}

TEST_CASE("fanout-broker prints where it listens, answers --status and exits 0 on SIGTERM") {
  Child broker({"--bind", "tcp://127.0.0.1:*", "--log-level", "info"});
  const auto line = broker.read_line(20s);
  REQUIRE_MESSAGE(line.has_value(), "no 'listening' line; stderr: " << broker.err());
  REQUIRE(line->rfind("listening tcp://127.0.0.1:", 0) == 0);
  const std::string endpoint = line->substr(std::string("listening ").size());
  CHECK(endpoint.find('*') == std::string::npos);

  {
    Child status({"--status", endpoint});
    CHECK(run_to_exit(status) == 0);
    CHECK(contains(status.out(), "broker " + endpoint));
    CHECK(contains(status.out(), "workers: 0"));
    CHECK(contains(status.out(), "queued tasks: 0"));
  }

  REQUIRE(::kill(broker.pid(), SIGTERM) == 0);
  CHECK(run_to_exit(broker) == 0);
  // Logs go to stderr; stdout carries only what scripts read.
  CHECK(contains(broker.err(), "listening on " + endpoint));
  CHECK_FALSE(contains(broker.out(), "[info]"));
}

TEST_CASE("fanout-broker --status of an endpoint where nothing listens exits 4 within a few seconds") {
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(unused_port());
  const auto started = Clock::now();
  Child status({"--status", endpoint});
  CHECK(run_to_exit(status, 20s) == 4);
  CHECK(Clock::now() - started < 10s);
  CHECK(contains(status.err(), endpoint));
}

TEST_CASE("fanout-broker exits 2 on bad usage") {
  SUBCASE("an unknown flag") {
    Child child({"--no-such-flag"});
    CHECK(run_to_exit(child) == 2);
  }
  SUBCASE("a heartbeat out of range") {
    Child child({"--heartbeat-ms", "1"});
    CHECK(run_to_exit(child) == 2);
  }
  SUBCASE("an unknown log level") {
    Child child({"--log-level", "loud"});
    CHECK(run_to_exit(child) == 2);
    CHECK(contains(child.err() + child.out(), "loud"));
  }
  SUBCASE("--status of something that is not an endpoint") {
    Child child({"--status", "not-an-endpoint"});
    CHECK(run_to_exit(child) == 2);
    CHECK(contains(child.err(), "not-an-endpoint"));
  }
}
