// What an operator types: --metrics addresses that cannot work fail at start with a clear message
// and an exit code that says so; --version on every binary.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <fanout/error.hpp>

#include "cluster.hpp"
#include "ops/http_endpoint.hpp"
#include "system/unique_fd.hpp"
#include "transport.hpp"

namespace {

using fanout_test::run_to_end;

// A TCP port on loopback that this process listens on for the scope: in use for anyone else.
struct BusyPort {
  fanout::sys::UniqueFd socket{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  int port = 0;
  BusyPort() {
    REQUIRE(socket.get() >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(socket.get(), 1) == 0);
    socklen_t size = sizeof address;
    REQUIRE(::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &size) == 0);
    port = ntohs(address.sin_port);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

int exit_code(const fanout_test::Finished& finished) {
  return WIFEXITED(finished.status) ? WEXITSTATUS(finished.status) : -1;
}

std::vector<std::string> broker(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), {fanout_test::broker_program(), "--bind", "tcp://127.0.0.1:*"});
  return arguments;
}

std::vector<std::string> worker(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), {fanout_test::worker_program(), "--connect", "tcp://127.0.0.1:1",
                                       "--processes", "1"});
  return arguments;
}

const fanout_test::ChildOptions kNoFanoutEnv{.drop_env = {"FANOUT_"}};

}  // namespace

TEST_CASE("a --metrics address that is not HOST:PORT is bad usage, named in the message") {
  for (const auto& command : {broker({"--metrics", "nonsense"}), worker({"--metrics", "nonsense"}),
                              broker({"--metrics", "127.0.0.1:99999"}), worker({"--metrics", "::1:80"})}) {
    const auto finished = run_to_end(command, kNoFanoutEnv);
    INFO(command[0] << ": " << finished.out << finished.err);
    CHECK(exit_code(finished) == 2);
    CHECK((finished.out + finished.err).find("metrics address '") != std::string::npos);
    CHECK((finished.out + finished.err).find("expected HOST:PORT") != std::string::npos);
  }
}

TEST_CASE("--metrics off loopback is refused without --expose-metrics") {
  const auto refused_broker = run_to_end(broker({"--metrics", "0.0.0.0:0"}), kNoFanoutEnv);
  CHECK(exit_code(refused_broker) == 3);
  CHECK(refused_broker.err.find("refusing to serve metrics on 0.0.0.0:0") != std::string::npos);
  const auto refused_worker = run_to_end(worker({"--metrics", "0.0.0.0:0"}), kNoFanoutEnv);
  CHECK(exit_code(refused_worker) == 2);
  CHECK((refused_worker.out + refused_worker.err).find("refusing to serve metrics on 0.0.0.0:0") != std::string::npos);
  // FANOUT_METRICS is the flag's equivalent.
  const auto from_env = run_to_end(broker({}), {.env = {"FANOUT_METRICS=0.0.0.0:0"}, .drop_env = {"FANOUT_"}});
  CHECK(exit_code(from_env) == 3);
  // The refusal names the flag that lifts it; the flag lifts nothing else: a broker told to listen
  // on every address without keys still refuses, before it serves metrics anywhere.
  CHECK(refused_broker.err.find("--expose-metrics") != std::string::npos);
  const auto keyless = run_to_end(broker({"--bind", "tcp://0.0.0.0:0", "--metrics", "0.0.0.0:0", "--expose-metrics"}),
                                  kNoFanoutEnv);
  INFO(keyless.out << keyless.err);
  CHECK(exit_code(keyless) == 3);
  CHECK(keyless.err.find("refusing to serve metrics") == std::string::npos);
  CHECK((keyless.out + keyless.err).find("--key") != std::string::npos);
}

TEST_CASE("--expose-metrics (or --insecure) lets --metrics off loopback, checked without binding anything") {
  const auto address = fanout::ops::parse_http_address("0.0.0.0:9464");
  CHECK_THROWS_AS(fanout::ops::check_http_address_allowed(address, false), fanout::Error);
  CHECK_NOTHROW(fanout::ops::check_http_address_allowed(address, true));
  CHECK_NOTHROW(fanout::ops::check_http_address_allowed(fanout::ops::parse_http_address("127.0.0.1:9464"), false));
  // Both binaries take the flag and its variable (their --help says so).
  for (const auto& help : {run_to_end(broker({"--help"}), kNoFanoutEnv), run_to_end(worker({"--help"}), kNoFanoutEnv)}) {
    CHECK(help.out.find("--expose-metrics") != std::string::npos);
    CHECK(help.out.find("FANOUT_EXPOSE_METRICS") != std::string::npos);
  }
}

TEST_CASE("a --metrics port in use fails at start, naming the address and the reason") {
  BusyPort busy;
  const auto broker_run = run_to_end(broker({"--metrics", busy.address()}), kNoFanoutEnv);
  INFO(broker_run.err);
  CHECK(exit_code(broker_run) == 3);
  CHECK(broker_run.err.find("cannot serve metrics on " + busy.address() + ": Address already in use") !=
        std::string::npos);
  const auto worker_run = run_to_end(worker({"--metrics", busy.address()}), kNoFanoutEnv);
  INFO(worker_run.out << worker_run.err);
  CHECK(exit_code(worker_run) == 1);
  CHECK((worker_run.out + worker_run.err).find("cannot serve metrics on " + busy.address() +
                                               ": Address already in use") != std::string::npos);
}

TEST_CASE("every binary prints its version") {
  const std::vector<std::pair<std::string, std::string>> binaries{{fanout_test::broker_program(), "fanout-broker "},
                                                                  {fanout_test::worker_program(), "fanout-worker "},
                                                                  {FANOUT_TOOL_PROGRAM, "fanout "}};
  for (const auto& [program, name] : binaries) {
    const auto finished = run_to_end({program, "--version"}, kNoFanoutEnv);
    INFO(program << ": " << finished.out << finished.err);
    CHECK(exit_code(finished) == 0);
    CHECK(finished.out == name + FANOUT_VERSION_TEXT + "\n");
  }
}

TEST_CASE("a client whose broker is unreachable gets one fanout::Error naming the endpoint, within the broker "
          "silence, and exits at once") {
  const auto started = std::chrono::steady_clock::now();
  const auto finished = run_to_end({FANOUT_ONE_CALL_CLIENT}, {.env = {"FANOUT_BROKER=tcp://127.0.0.1:1"},
                                                                 .drop_env = {"FANOUT_"}});
  const auto took = std::chrono::steady_clock::now() - started;
  INFO(finished.out << finished.err);
  CHECK(exit_code(finished) == 0);
  CHECK(finished.out ==
        "error fanout::Error: cannot reach the broker at tcp://127.0.0.1:1: no answer within 4000 ms; is a "
        "fanout-broker listening there? (FANOUT_BROKER; a broker with keys answers only peers with a listed key: "
        "FANOUT_KEY, FANOUT_BROKER_KEY)\n");
  // The broker silence (4 s), and no lingering on exit.
  CHECK(took >= std::chrono::seconds(4));
  CHECK(took < std::chrono::seconds(7));
}

TEST_CASE("a client whose broker speaks another protocol version gets one error naming both versions") {
  // A broker of another version, as the schema has it answer: an Error naming both versions.
  zmq::context_t context;
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  std::atomic<bool> stop{false};
  std::thread other_broker([&] {
    while (!stop) {
      zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
      if ((item.revents & ZMQ_POLLIN) == 0) continue;
      std::vector<zmq::message_t> parts;
      (void)zmq::recv_multipart(router, std::back_inserter(parts));
      if (parts.size() != 2) continue;
      fanout::wire::OutMessage answer;
      answer.envelope().setVersion(999);
      auto error = answer.envelope().initError();
      error.setKind(fanout::wire::ErrorKind::BAD_MESSAGE);
      error.setMessage("protocol version 1, this broker speaks 999");
      router.send(parts[0], zmq::send_flags::sndmore);
      router.send(answer.frame(), zmq::send_flags::none);
    }
  });
  const auto finished = run_to_end({FANOUT_ONE_CALL_CLIENT}, {.env = {"FANOUT_BROKER=" + endpoint}, .drop_env = {"FANOUT_"}});
  stop = true;
  other_broker.join();
  INFO(finished.out << finished.err);
  CHECK(exit_code(finished) == 0);
  CHECK(finished.out.find("the broker at " + endpoint + " speaks another version of fanout's protocol (protocol version "
                          "999, this peer speaks ") != std::string::npos);
  CHECK(finished.out.find("it says: protocol version 1, this broker speaks 999") != std::string::npos);
}
