// Batches that end early: per-batch timeouts and cancellation.
#include "broker_harness.hpp"

using namespace broker_test;

namespace {

std::set<std::string> stopped_executors(Peer& supervisor, std::size_t count) {
  std::set<std::string> stopped;
  for (std::size_t n = 0; n < count; ++n) {
    const Received stop = supervisor.take(Kind::STOP_EXECUTOR);
    if (!stop) break;
    stopped.insert(stop->envelope().getStopExecutor().getExecutorId().cStr());
  }
  return stopped;
}

}  // namespace

TEST_CASE("a batch past its timeout fails as timeout naming the limit, its running executor is stopped and its late result dropped") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 2);
  FakeExecutor executor(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 1, .answer = false});
  REQUIRE(wait_executors(context, endpoint, 1));
  FakeClient client(context, endpoint);

  const auto sent_at = Clock::now();
  client.send(tasks_window(3, 4, 0, 4, "square", 200));
  REQUIRE(executor.wait_held(1));
  REQUIRE(client.wait_settled(3, 4));
  CHECK(Clock::now() - sent_at >= 200ms);
  for (const auto& [index, outcome] : client.outcomes(3)) {
    CHECK(outcome.kind == wire::ErrorKind::TIMEOUT);
    CHECK(contains(outcome.message, "200 ms"));
  }
  CHECK(stopped_executors(*supervisor, 1) == std::set<std::string>{"w1/0/0"});

  // The stopped executor answers late anyway: the result is dropped, not delivered.
  executor.answer(1);
  REQUIRE(fanout_test::eventually([&] { return broker.counters().duplicate_results == 1; }, kSoon));

  // New work goes to the replacement, never to the executor being stopped (which has a free
  // slot now, and would get half of these).
  FakeExecutor replacement(context, endpoint, ExecutorOptions{.id = "w1/0/1", .worker = "w1", .slots = 1});
  REQUIRE(wait_executors(context, endpoint, 2));
  client.send(tasks_window(4, 4, 0, 4));
  REQUIRE(client.wait_settled(4, 4));
  CHECK(executor.stats().tasks == 1);
  CHECK(client.twice() == 0);
  CHECK(client.outcomes(3).at(0).kind == wire::ErrorKind::TIMEOUT);
  supervisor->send(executor_lost("w1/0/0", std::pair{std::uint64_t{3}, std::uint32_t{0}}, true, 9));
  REQUIRE(wait_executors(context, endpoint, 1));
  CHECK(broker.counters().requeued_tasks == 0);
  CHECK(broker.died().empty());
}

TEST_CASE("a batch whose windows keep coming after its timeout fails them on arrival") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  const auto& endpoint = broker.endpoint();
  FakeClient client(context, endpoint);
  client.send(tasks_window(5, 4, 0, 2, "square", 100));  // no executor: they wait, then time out
  REQUIRE(client.wait_settled(5, 2));
  client.send(tasks_window(5, 4, 2, 2, "square", 100));
  REQUIRE(client.wait_settled(5, 4));
  for (const auto& [index, outcome] : client.outcomes(5)) CHECK(outcome.kind == wire::ErrorKind::TIMEOUT);
  CHECK(broker.died().empty());
}

TEST_CASE("cancel fails queued tasks as cancelled and stops the executors running the batch") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 3);
  FakeExecutor e1(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 1, .answer = false});
  FakeExecutor e2(context, endpoint, ExecutorOptions{.id = "w1/1/0", .worker = "w1", .slots = 1, .answer = false});
  REQUIRE(wait_executors(context, endpoint, 2));
  FakeClient client(context, endpoint);

  client.send(tasks_window(8, 10, 0, 5));
  REQUIRE(e1.wait_held(1));
  REQUIRE(e2.wait_held(1));
  client.send(cancel_message(8));
  REQUIRE(client.wait_settled(8, 5));
  for (const auto& [index, outcome] : client.outcomes(8)) {
    CHECK(outcome.kind == wire::ErrorKind::CANCELLED);
  }
  CHECK(stopped_executors(*supervisor, 2) == std::set<std::string>{"w1/0/0", "w1/1/0"});
  // The rest of the batch, sent after the cancel, fails on arrival.
  client.send(tasks_window(8, 10, 5, 5));
  REQUIRE(client.wait_settled(8, 10));
  for (const auto& [index, outcome] : client.outcomes(8)) CHECK(outcome.kind == wire::ErrorKind::CANCELLED);

  // A cancel for somebody else's batch does nothing; and the executors being stopped get no new
  // work.
  FakeExecutor e3(context, endpoint, ExecutorOptions{.id = "w1/2/0", .worker = "w1", .slots = 1, .answer = false});
  REQUIRE(wait_executors(context, endpoint, 3));
  FakeClient other(context, endpoint);
  other.send(tasks_window(9, 3, 0, 3));
  REQUIRE(e3.wait_held(1));
  client.send(cancel_message(9));
  client.send(tasks_window(10, 1, 0, 1, "nope"));  // answered at once: the cancel was handled before
  REQUIRE(client.wait_settled(10, 1));
  CHECK(supervisor->count(Kind::STOP_EXECUTOR) == 2);
  for (std::size_t answered = 1; answered <= 3; ++answered) {
    REQUIRE(e3.wait_tasks(answered));
    e3.answer(1);
  }
  REQUIRE(other.wait_settled(9, 3));
  for (const auto& [index, outcome] : other.outcomes(9)) CHECK(outcome.ok);
  CHECK(e1.stats().tasks == 1);
  CHECK(e2.stats().tasks == 1);
  CHECK(broker.died().empty());
}
