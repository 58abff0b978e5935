// What fanout-broker and fanout-worker log for an operator: batches that end, named truthfully
// (a client that said goodbye after its work settled finished it; one that left work behind
// abandoned it), workers that join, and --log-format json (env FANOUT_LOG_FORMAT): one JSON object
// per line, which a peer's text cannot break. Real processes on loopback.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <csignal>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "cluster.hpp"

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::size_t occurrences(const std::string& text, const std::string& part) {
  std::size_t count = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++count;
  return count;
}

fanout_test::ClusterOptions shell_cluster() {
  return {.broker_arguments = {"--liveness-ms", "600", "--heartbeat-ms", "100"},
          .workers = {{.processes = 2, .allow_shell = true}}};
}

}  // namespace

TEST_CASE("a fanout run that ends normally is logged as finished, not as dropped or abandoned") {
  fanout_test::Cluster cluster(shell_cluster());
  const auto ran = fanout_test::run_to_end(
      {FANOUT_TOOL_PROGRAM, "run", "-k", "--broker", cluster.endpoint(), "echo {}", ":::", "a", "b"},
      {.drop_env = {"FANOUT_"}});
  REQUIRE_MESSAGE(ran.status == 0, ran.out << ran.err);
  CHECK(ran.out == "a\nb\n");
  // "broker: batch <id> of client <id> finished: open-ended task(s) (2 received), 2 succeeded, in N ms"
  CHECK_MESSAGE(fanout_test::eventually([&] {
                  return contains(cluster.broker().log(), " finished: open-ended task(s) (2 received), 2 succeeded, in ");
                }),
                cluster.logs());
  CHECK(!contains(cluster.broker().log(), "abandoned"));
  CHECK(!contains(cluster.broker().log(), "dropped"));
}

TEST_CASE("a client that goes away with work unsettled is logged as having abandoned its batch") {
  fanout_test::Cluster cluster(shell_cluster());
  fanout_test::Child client({FANOUT_TOOL_PROGRAM, "run", "--broker", cluster.endpoint(), "-j", "3", "sleep 30; echo {}",
                             ":::", "1", "2", "3"},
                            {.drop_env = {"FANOUT_"}, .merge_output = true});
  REQUIRE_MESSAGE(cluster.wait_for([](const fanout_test::StatusCounts& counts) { return counts.running == 2; }),
                  (cluster.logs() + client.out()));
  client.kill();  // no goodbye: the broker finds it silent
  CHECK_MESSAGE(fanout_test::eventually([&] {
                  return contains(cluster.broker().log(), "abandoned: its client went silent with 3 task(s) unsettled");
                }),
                cluster.logs());
  CHECK(!contains(cluster.broker().log(), " finished: "));
}

TEST_CASE("a refused message is logged at info once per peer and reason, then only counted") {
  fanout_test::Cluster cluster(shell_cluster());
  // The sender stays connected until they are counted: a ROUTER drops what it has not yet read
  // from a peer that disconnects.
  zmq::context_t context;
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::routing_id, "garbler");
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(cluster.endpoint());
  for (int n = 0; n < 5; ++n) dealer.send(zmq::str_buffer("not a capnp message"), zmq::send_flags::none);
  // All five are counted (the status's refusals are as of the broker's last heartbeat)...
  CHECK_MESSAGE(fanout_test::eventually([&] {
                  const auto ran = fanout_test::run_to_end({FANOUT_TOOL_PROGRAM, "status", "--broker", cluster.endpoint()},
                                                           {.drop_env = {"FANOUT_"}});
                  return contains(ran.out, "refused messages: 5 (5 bad_message)");
                }),
                cluster.logs());
  // ...and one is logged, at info, with its reason.
  const std::string log = cluster.broker().log();
  INFO(log);
  CHECK(occurrences(log, "refused a message from garbler") == 1);
  CHECK(contains(log, "[info] broker: refused a message from garbler (bad_message): "));
}

TEST_CASE("--log-format json makes every log line of broker and worker one JSON object, whatever a peer sends") {
  // A worker id with a quote, a backslash and a newline: in text logs it is escaped by printable();
  // in JSON it must not end the string, the object or the line.
  const std::string hostile = "evil\"}\n{\"level\":\"critical\\";
  fanout_test::Child broker({fanout_test::broker_program(), "--bind", "tcp://127.0.0.1:*", "--log-format", "json"},
                            {.drop_env = {"FANOUT_"}});
  const auto endpoint = broker.wait_for_line("listening ", fanout_test::kPatience);
  REQUIRE_MESSAGE(endpoint.has_value(), broker.err());
  fanout_test::Child worker({fanout_test::worker_program(), "--connect", *endpoint, "--processes", "1", "--id", hostile},
                            {.env = {"FANOUT_LOG_FORMAT=json"}, .drop_env = {"FANOUT_"}});
  REQUIRE_MESSAGE(fanout_test::eventually([&] { return contains(broker.err(), "joined"); }, fanout_test::kPatience),
                  broker.err() << worker.err());
  broker.signal(SIGTERM);
  REQUIRE(broker.wait_exit().has_value());
  worker.signal(SIGTERM);
  REQUIRE(worker.wait_exit().has_value());

  for (const auto& [who, log] : {std::pair{"broker", broker.err()}, std::pair{"worker", worker.err()}}) {
    INFO(who << " log:\n" << log);
    const auto lines = lines_of(log);
    CHECK(lines.size() >= 2);
    for (const auto& line : lines) {
      INFO(line);
      nlohmann::json entry;
      REQUIRE_NOTHROW(entry = nlohmann::json::parse(line));
      REQUIRE(entry.is_object());
      CHECK(entry["time"].get<std::string>().size() == std::string("2026-11-30T10:21:08.123Z").size());
      CHECK(entry["time"].get<std::string>().back() == 'Z');
      CHECK(entry["level"].is_string());
      CHECK(entry["message"].is_string());
      CHECK(entry["logger"] == (std::string(who) == "broker" ? "fanout-broker" : "fanout-worker"));
      CHECK(entry["pid"].is_number_integer());
    }
  }
  // The broker's line for the worker that joined carries its id, escaped once by printable() and
  // kept whole by JSON: one line, at info.
  bool joined = false;
  for (const auto& line : lines_of(broker.err())) {
    const auto entry = nlohmann::json::parse(line);
    const auto message = entry["message"].get<std::string>();
    if (!contains(message, "joined")) continue;
    joined = true;
    CHECK(entry["level"] == "info");
    CHECK(contains(message, R"(worker evil"}\n{"level":"critical\\ joined)"));
  }
  CHECK(joined);
}

TEST_CASE("an unknown --log-format is a usage error that names the choices") {
  for (const auto& program : {fanout_test::broker_program(), fanout_test::worker_program()}) {
    const auto ran = fanout_test::run_to_end({program, "--log-format", "xml"}, {.drop_env = {"FANOUT_"}}, 20s);
    INFO(program << ": " << ran.out << ran.err);
    CHECK(WIFEXITED(ran.status));
    CHECK(WEXITSTATUS(ran.status) == 2);
    CHECK(contains(ran.out + ran.err, "--log-format"));
    CHECK(contains(ran.out + ran.err, "json"));
  }
}
