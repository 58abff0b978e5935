// `fanout status` as an operator uses it: text and --json (executors counted as executors, credit
// apart, refusals by reason, the versions of broker and workers), --watch until Ctrl-C, and
// --program for a program in local mode. The real tool against a real broker and workers.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <csignal>
#include <string>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "cluster.hpp"

using namespace std::chrono_literals;
using nlohmann::json;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t found = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++found;
  return found;
}

fanout_test::Finished status(const std::vector<std::string>& arguments) {
  std::vector<std::string> command{FANOUT_TOOL_PROGRAM, "status"};
  command.insert(command.end(), arguments.begin(), arguments.end());
  return fanout_test::run_to_end(command, {.drop_env = {"FANOUT_"}}, 30s);
}

int exit_code(const fanout_test::Finished& ran) { return WIFEXITED(ran.status) ? WEXITSTATUS(ran.status) : -1; }

}  // namespace

TEST_CASE("fanout status counts executors apart from credit, and shows refusals by reason and versions") {
  fanout_test::Cluster cluster({.workers = {{.processes = 2, .arguments = {"--slots", "3"}, .name = "worker a"},
                                            {.processes = 1, .arguments = {"--slots", "1"}, .name = "worker b"}}});
  INFO(cluster.logs());
  // Two messages no broker can read: refused as bad_message. The sender stays connected until they
  // are counted: a ROUTER drops what it has not yet read from a peer that disconnects.
  zmq::context_t context;
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(cluster.endpoint());
  for (int n = 0; n < 2; ++n) dealer.send(zmq::str_buffer("not a capnp message"), zmq::send_flags::none);
  json document;
  // Refusals are counted as of the broker's last heartbeat: ask until both show.
  REQUIRE(fanout_test::eventually([&] {
    const auto ran = status({"--broker", cluster.endpoint(), "--json"});
    if (exit_code(ran) != 0) return false;
    document = json::parse(ran.out);
    return document["refused"].value("bad_message", 0) == 2;
  }));
  INFO(document.dump(2));
  CHECK(document["place"] == "the broker at " + cluster.endpoint());
  CHECK(document["endpoint"] == cluster.endpoint());
  CHECK(document["version"] == FANOUT_VERSION_TEXT);
  CHECK(document["queued"] == 0);
  CHECK(document["running"] == 0);
  CHECK(document["deferred"]["dead"] == 0);
  CHECK(document["workers"] == 2);
  CHECK(document["executors"] == 3);  // executors, not slots
  CHECK(document["refused_messages"] == 2);
  CHECK(document["refused"]["refused"] == 0);
  CHECK(document["refused"]["unknown_peer"] == 0);
  REQUIRE(document["worker_list"].size() == 2);
  std::uint64_t credit = 0;
  for (const auto& worker : document["worker_list"]) {
    CHECK(worker["version"] == FANOUT_VERSION_TEXT);
    CHECK(worker["busy"] == 0);
    CHECK(worker["restarts"] == 0);
    credit += worker["credit"].get<std::uint64_t>();
    CHECK(worker["free_credit"] == worker["credit"]);
    CHECK(worker["task_names"].is_array());
  }
  CHECK(credit == 2 * 3 + 1);  // two executors of 3 slots, one of 1: all free

  const auto text = status({"--broker", cluster.endpoint()});
  INFO(text.out << text.err);
  CHECK(exit_code(text) == 0);
  CHECK(contains(text.out, "(version " FANOUT_VERSION_TEXT ")"));
  CHECK(contains(text.out, "workers: 2, executors: 3\n"));
  CHECK(contains(text.out, "refused messages: 2 (2 bad_message)\n"));
  CHECK(contains(text.out, ": 2 executor(s), 0 busy; credit 0 of 6 used; 0 restart(s); seen "));
  CHECK(contains(text.out, ": 1 executor(s), 0 busy; credit 0 of 1 used; 0 restart(s); seen "));
  CHECK(!contains(text.out, "free slot"));
}

TEST_CASE("fanout status --watch asks again every period until Ctrl-C, then exits 0") {
  fanout_test::Cluster cluster({.workers = {{.processes = 1}}});
  fanout_test::Child watching({FANOUT_TOOL_PROGRAM, "status", "--broker", cluster.endpoint(), "--watch", "0.2"},
                              {.drop_env = {"FANOUT_"}});
  REQUIRE_MESSAGE(fanout_test::eventually([&] { return count(watching.out(), "workers: 1, executors: 1\n") >= 3; }),
                  watching.out() << watching.err());
  CHECK(count(watching.out(), "--- ") >= 3);
  watching.signal(SIGINT);
  CHECK(watching.finish(10s) == 0);
}

TEST_CASE("fanout status --program looks at a program running in local mode") {
  fanout_test::TempDir state;
  fanout_test::Child program({FANOUT_LOCAL_PROGRAM}, {.env = {"XDG_STATE_HOME=" + state.path().string()},
                                                      .drop_env = {"FANOUT_"}});
  REQUIRE(program.wait_for_line("running", fanout_test::kPatience).has_value());
  json places;
  const bool seen = fanout_test::eventually([&] {
    const auto ran = fanout_test::run_to_end({FANOUT_TOOL_PROGRAM, "status", "--program", FANOUT_LOCAL_PROGRAM, "--json",
                                              "--timeout-ms", "1000"},
                                             {.env = {"XDG_STATE_HOME=" + state.path().string()}, .drop_env = {"FANOUT_"}},
                                             30s);
    if (exit_code(ran) != 0) return false;
    places = json::parse(ran.out);
    for (const auto& place : places) {
      if (contains(place["place"].get<std::string>(), "local pool") && place["running"] == 2) return true;
    }
    return false;
  });
  INFO(places.dump(2) << "\nprogram: " << program.out() << program.err());
  CHECK(seen);
  // The pool names the program and its pid; the embedded broker's version is this build's.
  for (const auto& place : places) {
    CHECK(contains(place["place"].get<std::string>(), "(pid " + std::to_string(program.pid()) + ")"));
    CHECK(place["version"] == FANOUT_VERSION_TEXT);
    CHECK(place["executors"].get<int>() >= 2);
  }
  program.kill();
  // Once nothing of it runs any more (its pool's worker processes follow it out), nothing answers.
  CHECK(fanout_test::eventually(
      [&] { return exit_code(status({"--program", FANOUT_LOCAL_PROGRAM, "--timeout-ms", "500"})) == 4; },
      fanout_test::kPatience));
}

TEST_CASE("fanout status refuses two places at once and says when nothing answers") {
  const auto both = status({"--broker", "tcp://127.0.0.1:1", "--program", FANOUT_LOCAL_PROGRAM});
  CHECK(exit_code(both) == 2);
  CHECK(contains(both.err, "--broker and --program"));
  const auto none = status({});
  CHECK(exit_code(none) == 2);
  CHECK(contains(none.err, "FANOUT_BROKER"));
  const auto nobody = status({"--broker", "tcp://127.0.0.1:1", "--timeout-ms", "300"});
  CHECK(exit_code(nobody) == 4);
  CHECK(contains(nobody.err, "no answer from a broker at tcp://127.0.0.1:1 within 300 ms"));
}
