// The fanout-broker binary, run as a real process: help, exit codes, listening, status, SIGTERM.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "child.hpp"
#include "cluster.hpp"
#include "system/signals.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using fanout_test::Child;

// fanout-broker with `arguments`, its environment this process's minus FANOUT_* plus `extra_env`.
Child fanout_broker(const std::vector<std::string>& arguments, const std::vector<std::string>& extra_env = {}) {
  std::vector<std::string> command{fanout_test::broker_program()};
  command.insert(command.end(), arguments.begin(), arguments.end());
  return Child(std::move(command), fanout_test::ChildOptions{.env = extra_env, .drop_env = {"FANOUT_"}});
}

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

// Runs the broker to completion with a deadline; the exit code (128+N for signal N), and its
// output in `child`.
int run_to_exit(Child& child, std::chrono::milliseconds limit = 20s) {
  const auto status = child.wait_exit(limit);
  REQUIRE_MESSAGE(status.has_value(), "fanout-broker did not exit in time; stderr: " << child.err());
  return fanout::sys::shell_exit_code(*status);
}

// fanout-broker run under `prlimit --nofile=LIMITS` (SOFT:HARD) until it listens, then stopped:
// its limit of open descriptors as /proc/PID/limits showed it meanwhile, and its log.
struct DescriptorLimit {
  std::string soft;
  std::string hard;
  std::string log;
};
DescriptorLimit broker_under_nofile(const std::string& limits) {
  const std::string prlimit = "/usr/bin/prlimit";  // util-linux (scripts/install-deps.sh)
  REQUIRE_MESSAGE(::access(prlimit.c_str(), X_OK) == 0, prlimit << " is missing: install util-linux");
  Child broker({prlimit, "--nofile=" + limits, fanout_test::broker_program(), "--bind", "tcp://127.0.0.1:*",
                "--log-level", "info"},
               fanout_test::ChildOptions{.drop_env = {"FANOUT_"}});
  REQUIRE_MESSAGE(broker.wait_for_line("listening ", 20s).has_value(), "no 'listening' line; stderr: " << broker.err());
  DescriptorLimit result;
  std::ifstream in("/proc/" + std::to_string(broker.pid()) + "/limits");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream fields(line.substr(std::string("Max open files").size()));
    fields >> result.soft >> result.hard;
  }
  REQUIRE(::kill(broker.pid(), SIGTERM) == 0);
  CHECK(run_to_exit(broker) == 0);
  result.log = broker.err();
  return result;
}

}  // namespace

TEST_CASE("fanout-broker --help exits 0 and shows examples") {
  Child child = fanout_broker({"--help"});
  CHECK(run_to_exit(child) == 0);
  CHECK(contains(child.out(), "Examples:"));
  CHECK(contains(child.out(), "fanout-broker --bind tcp://127.0.0.1:5555"));
  CHECK(contains(child.out(), "--status"));
  CHECK(contains(child.out(), "FANOUT_BIND"));
  CHECK(contains(child.out(), "Exit codes"));
}

TEST_CASE("fanout-broker refuses a non-loopback address without --insecure, exiting 3 before it binds") {
  SUBCASE("from the command line") {
    Child child = fanout_broker({"--bind", "tcp://0.0.0.0:5555"});
    CHECK(run_to_exit(child) == 3);
    CHECK(contains(child.err(), "refusing to listen on tcp://0.0.0.0:5555"));
    CHECK(contains(child.err(), "--insecure"));
  }
  SUBCASE("after a loopback endpoint that it does not bind either") {
    Child child = fanout_broker({"--bind", "tcp://127.0.0.1:*", "--bind", "tcp://10.1.2.3:5555"});
    CHECK(run_to_exit(child) == 3);
    CHECK(contains(child.err(), "refusing to listen on tcp://10.1.2.3:5555"));
    CHECK_FALSE(contains(child.out(), "listening"));
  }
  SUBCASE("from FANOUT_BIND") {
    Child child = fanout_broker({}, {"FANOUT_BIND=tcp://0.0.0.0:5555"});
    CHECK(run_to_exit(child) == 3);
    CHECK(contains(child.err(), "refusing to listen on tcp://0.0.0.0:5555"));
  }
}

TEST_CASE("fanout-broker prints where it listens, answers --status and exits 0 on SIGTERM") {
  Child broker = fanout_broker({"--bind", "tcp://127.0.0.1:*", "--log-level", "info"});
  const auto line = broker.read_line(20s);
  REQUIRE_MESSAGE(line.has_value(), "no 'listening' line; stderr: " << broker.err());
  REQUIRE(line->rfind("listening tcp://127.0.0.1:", 0) == 0);
  const std::string endpoint = line->substr(std::string("listening ").size());
  CHECK(endpoint.find('*') == std::string::npos);

  {
    Child status = fanout_broker({"--status", endpoint});
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

// Every connected executor and client holds a descriptor in the broker; past the soft limit
// ZeroMQ stops accepting connections without a word (1024, a common default, is about 500
// workers: docs/benchmarks.md).
TEST_CASE("fanout-broker raises its limit of open descriptors to the hard limit, and warns when that is low") {
  SUBCASE("a soft limit of 256 under a hard limit of 8192 becomes 8192") {
    const auto limit = broker_under_nofile("256:8192");
    CHECK(limit.soft == "8192");
    CHECK(limit.hard == "8192");
    CHECK(contains(limit.log, "up to 8192 open descriptors"));
    CHECK_FALSE(contains(limit.log, "only"));
  }
  SUBCASE("a hard limit of 1024 is warned about, with the peers it allows and what to raise") {
    const auto limit = broker_under_nofile("1024:1024");
    CHECK(limit.soft == "1024");
    CHECK(contains(limit.log, "only 1024 open descriptors allowed"));
    CHECK(contains(limit.log, "room for about 960 connections"));
    CHECK(contains(limit.log, "LimitNOFILE="));
  }
}

TEST_CASE("fanout-broker --status of an endpoint where nothing listens exits 4 within a few seconds") {
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(unused_port());
  const auto started = Clock::now();
  Child status = fanout_broker({"--status", endpoint});
  CHECK(run_to_exit(status, 20s) == 4);
  CHECK(Clock::now() - started < 10s);
  CHECK(contains(status.err(), endpoint));
}

TEST_CASE("fanout-broker exits 2 on bad usage") {
  SUBCASE("an unknown flag") {
    Child child = fanout_broker({"--no-such-flag"});
    CHECK(run_to_exit(child) == 2);
  }
  SUBCASE("a heartbeat out of range") {
    Child child = fanout_broker({"--heartbeat-ms", "1"});
    CHECK(run_to_exit(child) == 2);
  }
  SUBCASE("an unknown log level") {
    Child child = fanout_broker({"--log-level", "loud"});
    CHECK(run_to_exit(child) == 2);
    CHECK(contains(child.err() + child.out(), "loud"));
  }
  SUBCASE("--status of something that is not an endpoint") {
    Child child = fanout_broker({"--status", "not-an-endpoint"});
    CHECK(run_to_exit(child) == 2);
    CHECK(contains(child.err(), "not-an-endpoint"));
  }
}
