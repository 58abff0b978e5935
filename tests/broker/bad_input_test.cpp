// Bad input: whatever a peer sends, the broker answers where the protocol says so, counts what it
// drops, and keeps serving well-behaved clients. Also: which endpoints it agrees to listen on.
#include "broker_harness.hpp"
#include "serving_broker.hpp"
#include "wrong_kinds.hpp"

#include <capnp/any.h>
#include <capnp/schema.h>

#include <cstring>
#include <functional>
#include <random>

#include <fanout/error.hpp>

using namespace broker_test;

namespace {

constexpr std::size_t kMaxFrame = 64 * 1024;

fanout::broker::Config small_frames() {
  auto config = test_config();
  config.max_frame_bytes = kMaxFrame;
  return config;
}

// The serving broker (its first executor records what it receives), with small frames.
struct Fixture : ServingBroker {
  explicit Fixture(fanout::broker::Config config = small_frames()) : ServingBroker(std::move(config), /*record_first=*/true) {}

  std::uint64_t dropped() const { return broker.counters().dropped_messages.load(); }
};

// Sends `parts` from a fresh peer and returns the first `error` (or ack) it gets back.
Received send_bad(Fixture& fixture, std::vector<zmq::message_t> parts, Kind answer = Kind::ERROR,
                  const std::string& routing_id = "") {
  Peer attacker(fixture.context, fixture.broker.endpoint(), PeerOptions{.routing_id = routing_id, .heartbeat = false});
  attacker.send_parts(std::move(parts));
  return attacker.take(answer);
}

Received send_bad(Fixture& fixture, zmq::message_t frame, Kind answer = Kind::ERROR, const std::string& routing_id = "") {
  std::vector<zmq::message_t> parts;
  parts.push_back(std::move(frame));
  return send_bad(fixture, std::move(parts), answer, routing_id);
}

wire::ErrorKind kind_of(const Received& message) {
  const auto envelope = message->envelope();
  return envelope.isError() ? envelope.getError().getKind() : envelope.getAck().getRefused().getKind();
}

std::vector<std::uint8_t> random_bytes(std::mt19937_64& random, std::size_t size) {
  std::vector<std::uint8_t> bytes(size);
  for (auto& byte : bytes) byte = static_cast<std::uint8_t>(random());
  return bytes;
}

void set_word_u32(std::vector<std::uint8_t>& bytes, std::size_t offset, std::uint32_t value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(value));
}

// A copy of `seed` with a few bits flipped, and now and then cut short.
std::vector<std::uint8_t> mutated(std::mt19937_64& random, std::vector<std::uint8_t> bytes) {
  const int flips = 1 + static_cast<int>(random() % 4);
  for (int flip = 0; flip < flips && !bytes.empty(); ++flip) {
    bytes[random() % bytes.size()] ^= static_cast<std::uint8_t>(1u << (random() % 8));
  }
  if (random() % 8 == 0) bytes.resize(random() % (bytes.size() + 1));
  return bytes;
}

// Waits until the broker has worked through what it was sent: its dropped counter stops moving.
void wait_quiet(const RunningBroker& broker) {
  std::uint64_t last = ~std::uint64_t{0};
  auto still_since = Clock::now();
  fanout_test::eventually(
      [&] {
        const std::uint64_t now_dropped = broker.counters().dropped_messages.load();
        if (now_dropped != last) {
          last = now_dropped;
          still_since = Clock::now();
        }
        return Clock::now() - still_since > 300ms;
      },
      60s);
}

#ifdef FANOUT_TEST_SANITIZED
constexpr int kRounds = 1500;
#else
constexpr int kRounds = 6000;
#endif

}  // namespace

TEST_CASE("random bytes get an error back and the broker keeps serving") {
  Fixture fixture;
  std::mt19937_64 random(1234);
  const auto answer = send_bad(fixture, frame_of(random_bytes(random, 1024)));
  REQUIRE(answer);
  CHECK(kind_of(answer) == wire::ErrorKind::BAD_MESSAGE);
  CHECK(fixture.dropped() == 1);
  fixture.check_still_serving();
}

TEST_CASE("a frame whose size is not a multiple of 8 gets an error back") {
  Fixture fixture;
  auto bytes = bytes_of(tasks_window(1, 1, 0, 1));
  bytes.resize(bytes.size() - 3);
  const auto answer = send_bad(fixture, frame_of(bytes));
  REQUIRE(answer);
  CHECK(contains(error_text(answer), "8-byte words"));
  CHECK(fixture.dropped() == 1);
  fixture.check_still_serving();
}

TEST_CASE("a truncated message gets an error back") {
  Fixture fixture;
  auto bytes = bytes_of(tasks_window(1, 100, 0, 100));
  bytes.resize(bytes.size() / 16 * 8);  // half of it, in whole words
  const auto answer = send_bad(fixture, frame_of(bytes));
  REQUIRE(answer);
  CHECK(kind_of(answer) == wire::ErrorKind::BAD_MESSAGE);
  CHECK(fixture.dropped() == 1);
  fixture.check_still_serving();
}

TEST_CASE("a message whose pointers run past its end gets an error back") {
  Fixture fixture;
  // A truncated window whose segment table was fixed up to match: the envelope reads fine, the
  // pointer to its tasks leads outside the frame.
  auto bytes = bytes_of(tasks_window(1, 100, 0, 100));
  bytes.resize(6 * 8);
  set_word_u32(bytes, 4, 5);  // segment 0: 5 words
  const auto answer = send_bad(fixture, frame_of(bytes));
  REQUIRE(answer);
  CHECK(kind_of(answer) == wire::ErrorKind::BAD_MESSAGE);
  CHECK(fixture.dropped() == 1);
  fixture.check_still_serving();
}

TEST_CASE("a message of another protocol version gets an error naming both versions") {
  Fixture fixture;
  wire::OutMessage out;
  out.envelope().initHeartbeat();
  out.envelope().setVersion(wire::PROTOCOL_VERSION + 1);
  const auto answer = send_bad(fixture, out.frame());
  REQUIRE(answer);
  CHECK(contains(error_text(answer), "protocol version " + std::to_string(wire::PROTOCOL_VERSION + 1)));
  CHECK(contains(error_text(answer), std::to_string(wire::PROTOCOL_VERSION)));
  CHECK(fixture.dropped() == 1);
  fixture.check_still_serving();
}

TEST_CASE("a message of two frames gets an error back") {
  Fixture fixture;
  std::vector<zmq::message_t> parts;
  parts.push_back(heartbeat_message());
  parts.push_back(heartbeat_message());
  const auto answer = send_bad(fixture, std::move(parts));
  REQUIRE(answer);
  CHECK(contains(error_text(answer), "one frame"));
  CHECK(fixture.dropped() == 1);
  fixture.check_still_serving();
}

TEST_CASE("results from a peer that never announced get an error saying unknown peer") {
  Fixture fixture;
  const auto answer = send_bad(fixture, results_message({{1000, 0, 0, 12345}}));
  REQUIRE(answer);
  CHECK(contains(error_text(answer), "unknown peer"));
  CHECK(fixture.dropped() == 1);
  CHECK(fixture.client.settled(1000) == 0);
  fixture.check_still_serving();
  CHECK(fixture.client.outcomes(1000).at(0).value == 0);
}

TEST_CASE("tasks sent by an executor are refused") {
  Fixture fixture;
  fixture.e1.peer().send(tasks_window(77, 1, 0, 1));
  const auto answer = fixture.e1.peer().take(Kind::ERROR);
  REQUIRE(answer);
  CHECK(kind_of(answer) == wire::ErrorKind::REFUSED);
  CHECK(fixture.dropped() == 1);
  fixture.check_still_serving();
}

TEST_CASE("messages only the broker sends are refused") {
  Fixture fixture;
  const auto stop = send_bad(fixture, simple_message([](wire::Envelope::Builder envelope) {
                               envelope.initStopExecutor().setExecutorId("w1/0/0");
                             }));
  REQUIRE(stop);
  CHECK(kind_of(stop) == wire::ErrorKind::REFUSED);
  const auto status = send_bad(fixture, simple_message([](wire::Envelope::Builder envelope) { envelope.initStatus(); }));
  REQUIRE(status);
  CHECK(fixture.dropped() == 2);
  fixture.check_still_serving();
}

TEST_CASE("executorLost from a peer that is not a supervisor gets an error saying unknown peer") {
  Fixture fixture;
  const auto answer = send_bad(fixture, executor_lost("w1/0/0", std::nullopt));
  REQUIRE(answer);
  CHECK(contains(error_text(answer), "unknown peer"));
  CHECK(fixture.dropped() == 1);
  fixture.check_still_serving();
}

TEST_CASE("a frame over max_frame_bytes gets an error back") {
  Fixture fixture;
  // A well-formed window, just too big for this broker.
  const auto big = tasks_window(50, 700, 0, 700);
  REQUIRE(big.size() > kMaxFrame);
  REQUIRE(big.size() < 2 * kMaxFrame);
  const auto answer = send_bad(fixture, zmq::message_t(big.data(), big.size()));
  REQUIRE(answer);
  CHECK(contains(error_text(answer), "exceeds the limit of " + std::to_string(kMaxFrame)));
  CHECK(fixture.dropped() == 1);
  CHECK(fixture.e1.stats().tasks + fixture.e2.stats().tasks == 0);
  fixture.check_still_serving();
}

TEST_CASE("a window with an index outside its total is refused in its ack") {
  Fixture fixture;
  wire::OutMessage out;
  fill_tasks(out.envelope().initTasks(), 60, 2, {{0, "square"}, {5, "square"}}, 0);
  const auto answer = send_bad(fixture, out.frame(), Kind::ACK);
  REQUIRE(answer);
  CHECK(answer->envelope().getAck().hasRefused());
  CHECK(answer->envelope().getAck().getBatchId() == 60);
  CHECK(contains(error_text(answer), "index 5"));
  CHECK(fixture.dropped() == 1);
  CHECK(fixture.broker.counters().tasks_received == 0);
  fixture.check_still_serving();
}

TEST_CASE("a window whose windows add up to more than its total is refused in its ack") {
  Fixture fixture;
  Peer sender(fixture.context, fixture.broker.endpoint(), PeerOptions{.heartbeat = false});
  sender.send(tasks_window(61, 3, 0, 2));  // two of three: the batch stays open
  sender.send(tasks_window(61, 3, 1, 2));
  const auto answer = sender.take(Kind::ACK);
  REQUIRE(answer);
  CHECK(contains(error_text(answer), "more tasks than its total"));
  CHECK(fixture.dropped() == 1);
  fixture.check_still_serving();
}

TEST_CASE("a window whose tasks carry another batch id is refused in its ack") {
  Fixture fixture;
  wire::OutMessage out;
  fill_tasks(out.envelope().initTasks(), 62, 2, {{0, "square"}, {1, "square"}}, 0);
  out.envelope().getTasks().getTasks()[1].setBatchId(63);
  const auto answer = send_bad(fixture, out.frame(), Kind::ACK);
  REQUIRE(answer);
  CHECK(answer->envelope().getAck().hasRefused());
  CHECK(contains(error_text(answer), "63"));
  CHECK(fixture.dropped() == 1);
  CHECK(fixture.e1.stats().tasks + fixture.e2.stats().tasks == 0);
  fixture.check_still_serving();
}

TEST_CASE("a task holding a capability pointer gets an error back") {
  Fixture fixture;
  wire::OutMessage out;
  fill_tasks(out.envelope().initTasks(), 64, 3, {{0, "square"}, {1, "square"}, {2, "square"}}, 0);
  for (auto task : out.envelope().getTasks().getTasks()) {
    // The pointer section follows the data section; `args` is pointer 2. A capability pointer:
    // kind OTHER (3), capability index 0.
    capnp::AnyStruct::Builder any(kj::mv(task));
    kj::ArrayPtr<kj::byte> data = any.getDataSection();
    const std::uint64_t capability = 3;
    std::memcpy(data.end() + 2 * sizeof(capnp::word), &capability, sizeof(capability));
  }
  const auto answer = send_bad(fixture, out.frame());
  REQUIRE(answer);
  CHECK(kind_of(answer) == wire::ErrorKind::BAD_MESSAGE);
  CHECK(fixture.dropped() == 1);
  fixture.check_still_serving();
}

// The crafted window that stopped the broker (found by the flood below, now and then): a struct
// where a task's avoidWorker text belongs passed every check on arrival, and dispatch, reading it
// outside the message's handling, threw and ended the loop. Key and avoidWorker are read on arrival.
TEST_CASE("a task whose avoidWorker or key is a struct instead of text is refused, and the broker keeps serving") {
  for (const char* field : {"avoidWorker", "key"}) {
    CAPTURE(field);
    Fixture fixture;
    const auto slot = capnp::Schema::from<wire::Task>().getFieldByName(field).getProto().getSlot().getOffset();
    wire::OutMessage out;
    fill_tasks(out.envelope().initTasks(), 65, 2, {{0, "square"}, {1, "square"}}, 0);
    for (auto task : out.envelope().getTasks().getTasks()) {
      if (std::string(field) == "key") task.setHasKey(true);
      capnp::AnyStruct::Builder any(kj::mv(task));
      any.getPointerSection()[slot].initAsAnyStruct(1, 0);
    }
    const auto answer = send_bad(fixture, out.frame());
    REQUIRE(answer);
    CHECK(kind_of(answer) == wire::ErrorKind::BAD_MESSAGE);
    fixture.check_still_serving();
    CHECK(fixture.broker.died().empty());
  }
}

// The class of the bug above, all of it: every pointer of every message a client or a worker
// sends, made each wrong kind in turn (wrong_kinds.hpp). The broker refuses or ignores each copy
// and answers the next question on the same connection; it never stops.
namespace {

// Sends every wrong-kind copy of the message `make()` builds (a fresh one each time: a window
// needs a batch id of its own) from `sender()`, each followed by a status question on the same
// connection; how many were sent. Fails the test at the first that gets no answer.
std::size_t send_each_wrong(const RunningBroker& broker, const std::function<Peer&()>& sender,
                            const std::function<zmq::message_t()>& make) {
  std::size_t sent = 0;
  const std::size_t pointers = pointer_count(make());
  for (std::size_t which = 0; which < pointers; ++which) {
    for (const WrongKind kind : kWrongKinds) {
      CAPTURE(which);
      CAPTURE(static_cast<int>(kind));
      Peer& peer = sender();
      peer.send(with_wrong_kind(make(), which, kind));
      peer.send(status_request());  // one connection keeps its order: answered after the message
      REQUIRE_MESSAGE(peer.take(Kind::STATUS), "no answer after the message; the broker: " << broker.died());
      ++sent;
    }
  }
  return sent;
}

// A window of two tasks with every optional part (a key, a worker to avoid) on each: dispatch
// reads the first task of a run of one name, the journal and the status any of them.
zmq::message_t keyed_window(std::uint64_t batch) {
  wire::OutMessage out;
  fill_tasks(out.envelope().initTasks(), batch, 2, {{0, "square"}, {1, "square"}}, 0);
  for (auto task : out.envelope().getTasks().getTasks()) {
    task.setHasKey(true);
    task.setKey("k");
    task.setAvoidWorker("w9");
  }
  return out.frame();
}

zmq::message_t shell_window(std::uint64_t batch) {
  wire::OutMessage out;
  fill_tasks(out.envelope().initTasks(), batch, 1, {{0, "fanout.shell"}}, 0);
  auto shell = out.envelope().getTasks().getTasks()[0].initShell();
  shell.initArgv(2).set(0, "echo");
  shell.getArgv().set(1, "x");
  shell.setWorkingDirectory("/");
  auto variable = shell.initEnv(1)[0];
  variable.setName("A");
  variable.setValue("b");
  return out.frame();
}

}  // namespace

TEST_CASE("every pointer of a client's message made the wrong kind: refused or ignored, and the broker keeps serving") {
  Fixture fixture;
  // Each copy from a new client the broker knows (it has a batch running), so that heartbeats,
  // cancels and goodbyes are read as a client's.
  std::uint64_t batch = 100;
  std::unique_ptr<Peer> client;
  const auto known_client = [&]() -> Peer& {
    client = std::make_unique<Peer>(fixture.context, fixture.broker.endpoint(), PeerOptions{.heartbeat = false});
    client->send(tasks_window(batch++, 2, 0, 1));
    return *client;
  };
  const std::vector<std::function<zmq::message_t()>> makers = {
      [&] { return keyed_window(batch++); },       [&] { return shell_window(batch++); },
      [&] { return cancel_message(batch - 1); }, [] { return heartbeat_message(10); },
      [] { return bye_message(); },
  };
  // As they are, each is taken: what is refused below is refused for its wrong pointer.
  for (const auto& make : makers) {
    Peer& peer = known_client();
    peer.send(make());
    peer.send(status_request());
    REQUIRE(peer.take(Kind::STATUS));
  }
  REQUIRE(fixture.dropped() == 0);
  std::size_t sent = 0;
  for (const auto& make : makers) sent += send_each_wrong(fixture.broker, known_client, make);
  MESSAGE(sent << " client messages with a pointer of the wrong kind; " << fixture.dropped() << " dropped");
  CHECK(fixture.dropped() > 0);
  client.reset();
  fixture.check_still_serving();
}

TEST_CASE("every pointer of a worker's message made the wrong kind: refused or ignored, and the broker keeps serving") {
  bool deferred = false;
  SUBCASE("tasks of a client's batch") { deferred = false; }
  SUBCASE("tasks of a deferred batch, the broker's own") { deferred = true; }
  fanout_test::TempDir journal;
  auto config = quick_task_config();
  // Deferred tasks are the broker's own: their results and errors go to its journal, not a client.
  if (deferred) config.journal = journal.path() / "journal";
  zmq::context_t context;
  RunningBroker broker(config, context);
  const auto& endpoint = broker.endpoint();
  // A worker holding tasks (64 ahead, prefetched as quick ones) of a long batch.
  Peer client(context, endpoint);
  Peer supervisor(context, endpoint, PeerOptions{.routing_id = "supervisor:x"});
  Peer executor(context, endpoint, PeerOptions{.routing_id = "x/0/0"});
  supervisor.send(announce_supervisor("x", 1));
  executor.send(announce_executor("x/0/0", "x", {"square"}, 64));
  REQUIRE(wait_executors(context, endpoint, 1));
  {
    std::vector<std::pair<std::uint32_t, std::string>> slots;
    for (std::uint32_t i = 0; i < 4000; ++i) slots.emplace_back(i, "square");
    wire::OutMessage out(64 + 4000 * 16);
    fill_tasks(out.envelope().initTasks(), 1, 4000, slots, 0);
    out.envelope().getTasks().setDeferred(deferred);
    client.send(out.frame());
  }
  const Received held = executor.take(Kind::TASKS);
  REQUIRE(held);
  const std::uint64_t batch = held->envelope().getTasks().getTasks()[0].getBatchId();  // the broker's id when deferred
  std::uint32_t next = 0;  // results name tasks it holds, one after another
  const auto from_executor = [&]() -> Peer& { return executor; };
  const auto from_supervisor = [&]() -> Peer& { return supervisor; };
  std::size_t sent = 0;
  sent += send_each_wrong(broker, from_executor, [&] {
    const std::uint32_t i = next++;
    return results_message({{batch, i, 0, std::int64_t{i} * i}}, "x/0/0");
  });
  sent += send_each_wrong(broker, from_executor, [&] { return failures_message({{batch, next++, 0, 0}}, "x/0/0"); });
  sent += send_each_wrong(broker, from_executor, [] { return heartbeat_message(); });
  sent += send_each_wrong(broker, from_supervisor, [&] { return executor_lost("x/0/0", std::pair{batch, next++}); });
  sent += send_each_wrong(broker, from_supervisor, [] { return announce_supervisor("x", 1); });
  sent += send_each_wrong(broker, from_executor, [] { return announce_executor("x/0/0", "x", {"square"}, 64); });
  MESSAGE(sent << " worker messages with a pointer of the wrong kind");
  REQUIRE_MESSAGE(broker.died().empty(), "the broker stopped: " << broker.died());
  // A real worker takes over what is left, and a new client is served.
  auto real_supervisor = make_supervisor(context, endpoint, "w1", 1);
  FakeExecutor real(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 64});
  FakeClient another(context, endpoint);
  another.send(tasks_window(2, 10, 0, 10));
  REQUIRE(another.wait_settled(2, 10));
  for (const auto& [index, outcome] : another.outcomes(2)) CHECK(outcome.value == std::int64_t{index} * index);
  CHECK(broker.died().empty());
}

TEST_CASE("an announce that makes no sense is refused") {
  Fixture fixture;
  SUBCASE("an unknown role") {
    wire::OutMessage out;
    auto announce = out.envelope().initAnnounce();
    announce.setRole(static_cast<wire::Announce::Role>(7));
    announce.setWorkerId("w9");
    const auto answer = send_bad(fixture, out.frame());
    REQUIRE(answer);
    CHECK(kind_of(answer) == wire::ErrorKind::REFUSED);
  }
  SUBCASE("an executor whose executorId is not its routing id") {
    const auto answer = send_bad(fixture, announce_executor("w9/0/0", "w9", {"square"}, 1), Kind::ERROR, "someone-else");
    REQUIRE(answer);
    CHECK(contains(error_text(answer), "w9/0/0"));
  }
  SUBCASE("a supervisor without a worker id") {
    const auto answer = send_bad(fixture, announce_supervisor("", 1));
    REQUIRE(answer);
    CHECK(kind_of(answer) == wire::ErrorKind::REFUSED);
  }
  CHECK(fixture.dropped() == 1);
  const auto status = query_status(fixture.context, fixture.broker.endpoint());
  REQUIRE(status);
  CHECK(status->workers.size() == 1);
  CHECK(status->executors() == 2);
  fixture.check_still_serving();
}

TEST_CASE("a flood of random and mutated messages never stops the broker") {
  Fixture fixture;
  std::mt19937_64 random(99);
  const std::vector<std::vector<std::uint8_t>> seeds = {
      bytes_of(tasks_window(70, 8, 0, 8)),
      bytes_of(mixed_window(71, {"square", "nope", "square"})),
      bytes_of(results_message({{72, 0, 0, 1}, {72, 1, 0, 2}})),
      bytes_of(cancel_message(73)),
      bytes_of(status_request()),
      bytes_of(executor_lost("x/0/0", std::pair{std::uint64_t{74}, std::uint32_t{0}})),
  };
  {
    Peer attacker(fixture.context, fixture.broker.endpoint(), PeerOptions{.heartbeat = false, .record = false});
    for (int round = 0; round < kRounds; ++round) {
      const auto bytes = round % 10 == 0 ? random_bytes(random, random() % 512) : mutated(random, seeds[random() % seeds.size()]);
      attacker.send(frame_of(bytes));
      if (round % 500 == 0) fixture.check_still_serving();  // served while the flood goes on
    }
    wait_quiet(fixture.broker);
  }
  MESSAGE("dropped " << fixture.dropped() << " of " << kRounds << " bad messages");
  fixture.check_still_serving();
}

TEST_CASE("a worker sending mutated messages never stops the broker") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  const auto& endpoint = broker.endpoint();
  std::mt19937_64 random(7);
  FakeClient client(context, endpoint);
  {
    // A worker whose supervisor and executor are registered, then garble everything they send:
    // announces, results of tasks they really hold, reports of lost executors, goodbyes.
    Peer supervisor(context, endpoint, PeerOptions{.routing_id = "supervisor:x", .heartbeat = false, .record = false});
    Peer executor(context, endpoint, PeerOptions{.routing_id = "x/0/0", .heartbeat = false, .record = false});
    supervisor.send(announce_supervisor("x", 1));
    executor.send(announce_executor("x/0/0", "x", {"square", "cube"}, 64));
    REQUIRE(wait_executors(context, endpoint, 1));
    client.send(tasks_window(1, 2000, 0, 2000));
    const std::vector<std::vector<std::uint8_t>> executor_seeds = {
        bytes_of(announce_executor("x/0/0", "x", {"square", "cube"}, 64)),
        bytes_of(results_message({{1, 0, 0, 0}, {1, 1, 0, 1}, {1, 2, 0, 4}})),
        bytes_of(results_message({{1, 3, 0, 9}})),
        bytes_of(heartbeat_message()),
        bytes_of(bye_message()),
    };
    const std::vector<std::vector<std::uint8_t>> supervisor_seeds = {
        bytes_of(announce_supervisor("x", 1)),
        bytes_of(announce_supervisor("x", 1, true)),
        bytes_of(executor_lost("x/0/0", std::pair{std::uint64_t{1}, std::uint32_t{0}})),
        bytes_of(executor_lost("x/0/0", std::nullopt, true)),
    };
    for (int round = 0; round < kRounds; ++round) {
      if (round % 3 == 0) {
        supervisor.send(frame_of(mutated(random, supervisor_seeds[random() % supervisor_seeds.size()])));
      } else {
        executor.send(frame_of(mutated(random, executor_seeds[random() % executor_seeds.size()])));
      }
      if (round % 100 == 0) {  // and the real thing now and then, to get registered again
        supervisor.send(frame_of(supervisor_seeds[0]));
        executor.send(frame_of(executor_seeds[0]));
      }
    }
    wait_quiet(broker);
  }
  REQUIRE_MESSAGE(broker.died().empty(), "the broker stopped: " << broker.died());
  // A real worker takes over whatever of the batch is left.
  auto supervisor = make_supervisor(context, endpoint, "w1", 1);
  FakeExecutor executor(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 16});
  REQUIRE(client.wait_settled(1, 2000, 60s));
  CHECK(client.twice() == 0);
  FakeClient another(context, endpoint);
  another.send(tasks_window(2, 10, 0, 10));
  REQUIRE(another.wait_settled(2, 10));
  for (const auto& [index, outcome] : another.outcomes(2)) CHECK(outcome.value == std::int64_t{index} * index);
  CHECK(broker.died().empty());
}

TEST_CASE("endpoints other than loopback, ipc and inproc are refused without insecure") {
  using fanout::broker::check_endpoint_allowed;
  // Only strings here: nothing in the tests ever binds a non-loopback address.
  CHECK_THROWS_AS(check_endpoint_allowed("tcp://0.0.0.0:5555", false), fanout::Error);
  CHECK_THROWS_AS(check_endpoint_allowed("tcp://10.1.2.3:5555", false), fanout::Error);
  CHECK_THROWS_AS(check_endpoint_allowed("tcp://*:5555", false), fanout::Error);
  CHECK_THROWS_AS(check_endpoint_allowed("tcp://eth0:5555", false), fanout::Error);
  CHECK_THROWS_AS(check_endpoint_allowed("tcp://127.0.0.1.example.com:5555", false), fanout::Error);
  CHECK_THROWS_AS(check_endpoint_allowed("tcp://[::]:5555", false), fanout::Error);
  CHECK_THROWS_AS(check_endpoint_allowed("udp://127.0.0.1:5555", false), fanout::Error);
  CHECK_THROWS_AS(check_endpoint_allowed("127.0.0.1:5555", false), fanout::Error);
  try {
    check_endpoint_allowed("tcp://0.0.0.0:5555", false);
  } catch (const fanout::Error& error) {
    CHECK(contains(error.what(), "--insecure"));
  }
  CHECK_NOTHROW(check_endpoint_allowed("tcp://127.0.0.1:5555", false));
  CHECK_NOTHROW(check_endpoint_allowed("tcp://127.0.0.1:*", false));
  CHECK_NOTHROW(check_endpoint_allowed("tcp://127.1.2.3:5555", false));
  CHECK_NOTHROW(check_endpoint_allowed("tcp://localhost:5555", false));
  CHECK_NOTHROW(check_endpoint_allowed("tcp://[::1]:5555", false));
  CHECK_NOTHROW(check_endpoint_allowed("ipc:///tmp/fanout.sock", false));
  CHECK_NOTHROW(check_endpoint_allowed("ipc://@fanout", false));
  CHECK_NOTHROW(check_endpoint_allowed("inproc://fanout", false));
  CHECK_NOTHROW(check_endpoint_allowed("tcp://0.0.0.0:5555", true));
  CHECK_NOTHROW(check_endpoint_allowed("tcp://10.1.2.3:5555", true));
}

TEST_CASE("a broker refuses a non-loopback endpoint before binding any of its endpoints") {
  zmq::context_t context;
  fanout::broker::Config config;
  const std::string first = "inproc://" + unique_name("first");
  config.endpoints = {first, "tcp://0.0.0.0:5555"};  // refused by the check, never bound
  CHECK_THROWS_AS(fanout::broker::Broker(config, context), fanout::Error);
  // The first endpoint was not bound either: binding it again works.
  zmq::socket_t probe(context, zmq::socket_type::router);
  CHECK_NOTHROW(probe.bind(first));
}

TEST_CASE("a broker listens on ipc and inproc endpoints as well") {
  zmq::context_t context;
  fanout_test::TempDir directory;
  auto config = test_config();
  const std::string ipc = "ipc://" + (directory.path() / "broker.sock").string();
  const std::string inproc = "inproc://" + unique_name("broker");
  config.endpoints = {ipc, inproc};
  RunningBroker broker(config, context);
  CHECK(query_status(context, ipc).has_value());
  CHECK(query_status(context, inproc).has_value());
}
