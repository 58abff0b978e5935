// Bounds before work (issue 11, point 4), played as the attacker: frames that claim more than they
// carry, frames over the size limit, clients that queue past their caps. Each attack is refused,
// counted under fanout_broker_messages_refused_total{reason}, and a well-behaved client's batch on
// the same broker completes as if nothing happened.
#include "broker_harness.hpp"
#include "serving_broker.hpp"

#include <capnp/any.h>

#include <fstream>
#include <string>
#include <thread>

using namespace broker_test;

namespace {

// The serving broker, and what it counts as refused.
struct Fixture : ServingBroker {
  explicit Fixture(fanout::broker::Config config = test_config()) : ServingBroker(std::move(config)) {}

  // fanout_broker_messages_refused_total{reason}, as the broker publishes it (every heartbeat).
  std::uint64_t refused(const std::string& reason) const {
    for (const auto& [label, count] : broker.metrics()->refused) {
      if (label == reason) return count;
    }
    return 0;
  }
  bool refused_reaches(const std::string& reason, std::uint64_t count) const {
    return fanout_test::eventually([&] { return refused(reason) >= count; }, kSoon);
  }
};

// A `tasks` window whose task list claims `count` tasks of zero bytes each: a list of empty
// structs, as Cap'n Proto allows and no fanout encoder writes. Batch 0, total `count`, so every
// (empty, hence index 0 and batch 0) task passes the per-task checks a broker made before.
zmq::message_t empty_tasks_window(std::uint32_t count) {
  wire::OutMessage out(16);
  auto window = out.envelope().initTasks();
  window.setBatchId(0);
  window.setTotal(count);
  // `tasks` is the window's one pointer: the list of zero-sized structs is written there directly.
  capnp::AnyStruct::Builder(wire::TaskBatch::Builder(window)).getPointerSection()[0].initAsListOfAnyStruct(0, 0, count);
  return out.frame();
}

// The resident set of this process (broker thread included), in MiB.
long rss_mib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) / 1024;
  }
  return 0;
}

Received attack(Fixture& fixture, zmq::message_t frame, Kind answer = Kind::ERROR) {
  Peer attacker(fixture.context, fixture.broker.endpoint(), PeerOptions{.heartbeat = false});
  attacker.send(std::move(frame));
  return attacker.take(answer);
}

}  // namespace

// Cap'n Proto's largest list: 2^29 - 1 elements.
constexpr std::uint32_t kMostElements = (1u << 29) - 1;

TEST_CASE("a 72-byte window claiming 2^29 empty tasks is refused over the limit, and work goes on") {
  Fixture fixture;
  auto frame = empty_tasks_window(kMostElements);
  CHECK(frame.size() <= 80);
  const auto answer = attack(fixture, std::move(frame));
  REQUIRE(answer);
  CHECK(answer->envelope().getError().getKind() == wire::ErrorKind::BAD_MESSAGE);
  CHECK(contains(error_text(answer), "claims 536870911 elements"));
  CHECK(fixture.refused_reaches("over_limit", 1));
  CHECK(fixture.broker.counters().tasks_received == 0);
  CHECK(fixture.e1.stats().tasks + fixture.e2.stats().tasks == 0);
  fixture.check_still_serving();
}

TEST_CASE("a window claiming 2^20 empty tasks costs the broker no memory and is refused") {
  Fixture fixture;
  const long before = rss_mib();
  const auto answer = attack(fixture, empty_tasks_window(1u << 20));
  REQUIRE(answer);
  CHECK(contains(error_text(answer), "claims 1048576 elements"));
  // It took 508 MB before the check; the refusal itself allocates nothing per claimed task.
  CHECK(rss_mib() - before < 64);
  CHECK(fixture.refused_reaches("over_limit", 1));
  fixture.check_still_serving();
}

TEST_CASE("results that claim 2^29 empty entries, from an executor, are refused and counted") {
  Fixture fixture;
  wire::OutMessage out(16);
  out.envelope().initResults(0);  // the union's pointer, rewritten as zero-sized structs
  capnp::AnyStruct::Builder(out.envelope()).getPointerSection()[0].initAsListOfAnyStruct(0, 0, kMostElements);
  // From an announced executor's own routing id, where results are taken from.
  const auto answer = attack(fixture, out.frame());
  REQUIRE(answer);
  CHECK(contains(error_text(answer), "claims 536870911 elements"));
  CHECK(fixture.refused_reaches("over_limit", 1));
  fixture.check_still_serving();
}

TEST_CASE("a frame just over the default limit of 16 MiB gets an error, one far over is never read") {
  Fixture fixture;
  CHECK(fanout::broker::Config{}.max_frame_bytes == wire::kDefaultMaxFrameBytes);
  CHECK(wire::kDefaultMaxFrameBytes == std::size_t{16} << 20);
  {
    // One task whose argument makes the window 8 bytes over the limit... or a few words: capnp
    // pads the text to a word.
    wire::OutMessage out(1024);
    fill_tasks(out.envelope().initTasks(), 70, 1, {{0, "square"}}, 0);
    auto window = out.envelope().getTasks().getTasks()[0];
    window.setKey(std::string(wire::kDefaultMaxFrameBytes - 200, 'k'));
    auto frame = out.frame();
    REQUIRE(frame.size() > wire::kDefaultMaxFrameBytes);
    REQUIRE(frame.size() < wire::kDefaultMaxFrameBytes + 1024);
    const auto answer = attack(fixture, std::move(frame));
    REQUIRE(answer);
    CHECK(contains(error_text(answer), "exceeds the limit of " + std::to_string(wire::kDefaultMaxFrameBytes)));
    CHECK(fixture.refused_reaches("over_limit", 1));
  }
  {
    // Over twice the limit, ZeroMQ (ZMQ_MAXMSGSIZE) drops the connection before the broker reads
    // a byte of it: no answer, nothing counted, nothing kept.
    const auto dropped = fixture.broker.counters().dropped_messages.load();
    wire::OutMessage out(1024);
    fill_tasks(out.envelope().initTasks(), 71, 1, {{0, "square"}}, 0);
    out.envelope().getTasks().getTasks()[0].setKey(std::string(2 * wire::kDefaultMaxFrameBytes + 64, 'k'));
    Peer attacker(fixture.context, fixture.broker.endpoint(), PeerOptions{.heartbeat = false});
    attacker.send(out.frame());
    CHECK_FALSE(attacker.take(Kind::ERROR, std::chrono::milliseconds(500)));
    CHECK(fixture.broker.counters().dropped_messages.load() == dropped);
  }
  CHECK(fixture.broker.counters().tasks_received == 0);
  fixture.check_still_serving();
}

TEST_CASE("a client queuing past its cap of tasks is refused as busy; another client is not") {
  auto config = test_config();
  config.max_client_tasks = 64;
  Fixture fixture(config);
  // An executor that takes one task of "hold" and never answers: the attacker's tasks stay queued.
  FakeExecutor holder(fixture.context, fixture.broker.endpoint(),
                      ExecutorOptions{.id = "w1/2/0", .worker = "w1", .names = {"hold"}, .slots = 1, .answer = false});
  REQUIRE(wait_executors(fixture.context, fixture.broker.endpoint(), 3));
  Peer attacker(fixture.context, fixture.broker.endpoint());
  attacker.send(tasks_window(7, 1000, 0, 50, "hold"));
  attacker.send(tasks_window(7, 1000, 50, 50, "hold"));
  const auto answer = attacker.take(Kind::ACK);
  REQUIRE(answer);
  CHECK(answer->envelope().getAck().getRefused().getKind() == wire::ErrorKind::REFUSED);
  CHECK(contains(error_text(answer), "the broker is busy"));
  CHECK(contains(error_text(answer), "--max-client-tasks"));
  CHECK(fixture.refused_reaches("busy", 1));
  CHECK(fixture.broker.counters().tasks_received == 50);  // the first window, nothing of the second
  fixture.check_still_serving();
}

TEST_CASE("clients together past the broker's total cap are refused as busy; a small batch still runs") {
  auto config = test_config();
  config.max_total_tasks = 80;
  Fixture fixture(config);
  FakeExecutor holder(fixture.context, fixture.broker.endpoint(),
                      ExecutorOptions{.id = "w1/2/0", .worker = "w1", .names = {"hold"}, .slots = 1, .answer = false});
  REQUIRE(wait_executors(fixture.context, fixture.broker.endpoint(), 3));
  Peer first(fixture.context, fixture.broker.endpoint());
  Peer second(fixture.context, fixture.broker.endpoint());
  first.send(tasks_window(8, 1000, 0, 60, "hold"));
  REQUIRE(wait_status(fixture.context, fixture.broker.endpoint(), [](const StatusCounts& s) { return s.queued + s.running == 60; }));
  second.send(tasks_window(9, 1000, 0, 60, "hold"));
  const auto answer = second.take(Kind::ACK);
  REQUIRE(answer);
  CHECK(contains(error_text(answer), "all clients hold tasks"));
  CHECK(fixture.refused_reaches("busy", 1));
  fixture.check_still_serving();  // 5 tasks: within what is left
}

TEST_CASE("a client's hold on the caps is given back when its batches end") {
  auto config = test_config();
  config.max_client_tasks = 64;
  Fixture fixture(config);
  FakeClient client(fixture.context, fixture.broker.endpoint());
  // Three windows of 50 "square" in turn, each answered by the executors before the next: never
  // more than 50 held, so none is refused (a refused window's slots would fail).
  for (std::uint64_t batch = 20; batch < 23; ++batch) {
    client.send(tasks_window(batch, 50, 0, 50));
    REQUIRE(client.wait_settled(batch, 50));
    for (const auto& [index, outcome] : client.outcomes(batch)) CHECK(outcome.ok);
  }
  CHECK(fixture.refused("busy") == 0);
}

TEST_CASE("a client that never reads its results gets no more work until it reads; others are served") {
  auto config = test_config();
  config.max_client_unread_bytes = 16 << 10;
  Fixture fixture(config);
  // Heartbeats that report nothing read: to the broker, a client that never reads.
  Peer greedy(fixture.context, fixture.broker.endpoint(), PeerOptions{.report_reads = false});
  greedy.send(tasks_window(30, 1000, 0, 1000));
  // Results stop once 16 KiB of them wait unread (a few hundred of 1000), and stay stopped.
  const auto stalled = [&] {
    const auto before = fixture.broker.counters().results_forwarded.load();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // several heartbeats of nothing
    return fixture.broker.counters().results_forwarded.load() == before;
  };
  REQUIRE(fanout_test::eventually(stalled, kSoon));
  CHECK(fixture.broker.counters().results_forwarded.load() < 1000);
  fixture.check_still_serving();  // another client's batch runs meanwhile
  // Once it says it reads them (each heartbeat: all that came), the rest of its batch runs.
  CHECK(fanout_test::eventually(
      [&] {
        greedy.send(heartbeat_message(std::uint64_t{1} << 30));
        return fixture.broker.counters().results_forwarded.load() >= 1000 + 5;
      },
      kSoon));
  CHECK(greedy.count(Kind::RESULTS) > 0);
}
