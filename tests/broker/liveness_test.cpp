// Liveness: lost executors, silent supervisors and clients, peers the broker does not know.
#include "broker_harness.hpp"

using namespace broker_test;

namespace {

std::map<std::uint32_t, std::uint16_t> attempts_of(const std::vector<HeldTask>& held) {
  std::map<std::uint32_t, std::uint16_t> attempts;
  for (const auto& task : held) attempts[task.index] = task.attempt;
  return attempts;
}

ExecutorOptions holding(const std::string& id, std::uint32_t slots = 4) {
  return ExecutorOptions{.id = id, .worker = "w1", .slots = slots, .answer = false};
}

}  // namespace

TEST_CASE("an executor lost while running a task has its tasks requeued elsewhere with only that task's attempt raised") {
  zmq::context_t context;
  RunningBroker broker(quick_task_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 4);
  FakeClient client(context, endpoint);

  auto first = std::make_unique<FakeExecutor>(context, endpoint, holding("w1/0/0"));
  REQUIRE(wait_executors(context, endpoint, 1));
  client.send(tasks_window(5, 3, 0, 3));
  REQUIRE(first->wait_held(3));
  auto second = std::make_unique<FakeExecutor>(context, endpoint, holding("w1/1/0"));
  REQUIRE(wait_executors(context, endpoint, 2));

  supervisor->send(executor_lost("w1/0/0", std::pair{std::uint64_t{5}, std::uint32_t{1}}));
  REQUIRE(second->wait_held(3));
  CHECK(attempts_of(second->held()) == std::map<std::uint32_t, std::uint16_t>{{0, 0}, {1, 1}, {2, 0}});
  CHECK(broker.counters().requeued_tasks == 3);
  CHECK(broker.counters().executors_lost == 1);

  // The same task takes down two more executors: the third time it fails as worker lost, and the
  // others run once more.
  auto third = std::make_unique<FakeExecutor>(context, endpoint, holding("w1/2/0"));
  REQUIRE(wait_executors(context, endpoint, 2));
  supervisor->send(executor_lost("w1/1/0", std::pair{std::uint64_t{5}, std::uint32_t{1}}));
  REQUIRE(third->wait_held(3));
  CHECK(attempts_of(third->held()) == std::map<std::uint32_t, std::uint16_t>{{0, 0}, {1, 2}, {2, 0}});

  auto fourth = std::make_unique<FakeExecutor>(context, endpoint, holding("w1/3/0"));
  REQUIRE(wait_executors(context, endpoint, 2));
  supervisor->send(executor_lost("w1/2/0", std::pair{std::uint64_t{5}, std::uint32_t{1}}));
  REQUIRE(client.wait_settled(5, 1));
  const auto lost = client.outcomes(5);
  REQUIRE(lost.count(1) == 1);
  CHECK(lost.at(1).kind == wire::ErrorKind::WORKER_LOST);
  CHECK(contains(lost.at(1).message, "3 times"));
  REQUIRE(fourth->wait_held(2));
  CHECK(attempts_of(fourth->held()) == std::map<std::uint32_t, std::uint16_t>{{0, 0}, {2, 0}});
  fourth->answer(2);
  REQUIRE(client.wait_settled(5, 3));
  const auto outcomes = client.outcomes(5);
  CHECK(outcomes.at(0).value == 0);
  CHECK(outcomes.at(2).value == 4);
  CHECK(broker.died().empty());
}

TEST_CASE("an executor lost without saying what it ran has its oldest task blamed") {
  zmq::context_t context;
  RunningBroker broker(quick_task_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 2);
  FakeClient client(context, endpoint);
  FakeExecutor first(context, endpoint, holding("w1/0/0"));
  REQUIRE(wait_executors(context, endpoint, 1));
  client.send(tasks_window(6, 2, 0, 2));
  REQUIRE(first.wait_held(2));
  FakeExecutor second(context, endpoint, holding("w1/1/0"));
  REQUIRE(wait_executors(context, endpoint, 2));
  supervisor->send(executor_lost("w1/0/0", std::nullopt));
  REQUIRE(second.wait_held(2));
  CHECK(attempts_of(second.held()) == std::map<std::uint32_t, std::uint16_t>{{0, 1}, {1, 0}});
  CHECK(broker.died().empty());
}

TEST_CASE("a silent supervisor is declared dead after the liveness period and its executors' tasks go to another worker") {
  zmq::context_t context;
  RunningBroker broker(quick_task_config(), context);
  const auto& endpoint = broker.endpoint();
  FakeClient client(context, endpoint);
  auto w1 = make_supervisor(context, endpoint, "w1", 1);
  FakeExecutor e1(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 2, .answer = false});
  REQUIRE(wait_executors(context, endpoint, 1));
  client.send(tasks_window(8, 2, 0, 2));
  REQUIRE(e1.wait_held(2));
  auto w2 = make_supervisor(context, endpoint, "w2", 1);
  FakeExecutor e2(context, endpoint, ExecutorOptions{.id = "w2/0/0", .worker = "w2", .slots = 2, .answer = false});
  REQUIRE(wait_executors(context, endpoint, 2));

  // The supervisor freezes; its executor still heartbeats, but a worker's liveness is its
  // supervisor's.
  const auto silent_from = Clock::now();
  w1->set_heartbeat(false);
  REQUIRE(e2.wait_held(2));
  const auto noticed_after = Clock::now() - silent_from;
  MESSAGE("silent supervisor noticed after " << std::chrono::duration_cast<std::chrono::milliseconds>(noticed_after).count()
                                             << " ms (liveness " << kLiveness.count() << " ms)");
  CHECK(noticed_after >= kLiveness - kBeat);
  CHECK(attempts_of(e2.held()) == std::map<std::uint32_t, std::uint16_t>{{0, 1}, {1, 0}});
  const auto status = query_status(context, endpoint);
  REQUIRE(status);
  CHECK(status->worker("w1") == nullptr);
  CHECK(status->worker("w2") != nullptr);

  e2.answer(2);
  REQUIRE(client.wait_settled(8, 2));
  CHECK(client.outcomes(8).at(1).value == 1);
  CHECK(broker.died().empty());
}

TEST_CASE("an executor busy with a long task stays alive while its supervisor heartbeats") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  const auto& endpoint = broker.endpoint();
  FakeClient client(context, endpoint);
  auto supervisor = make_supervisor(context, endpoint, "w1", 2);
  FakeExecutor busy(context, endpoint, holding("w1/0/0", 1));
  REQUIRE(wait_executors(context, endpoint, 1));
  client.send(tasks_window(9, 1, 0, 1));
  REQUIRE(busy.wait_held(1));
  // A task that runs for many liveness periods: the executor says nothing meanwhile, as a
  // single-threaded executor running user code cannot; its supervisor heartbeats for it.
  busy.peer().set_heartbeat(false);
  FakeExecutor idle(context, endpoint, holding("w1/1/0", 1));
  REQUIRE(wait_executors(context, endpoint, 2));
  CHECK_FALSE(idle.wait_held(1, 5 * kLiveness));
  busy.answer(1);
  REQUIRE(client.wait_settled(9, 1));
  CHECK(client.outcomes(9).at(0).ok);
  CHECK(busy.peer().count(Kind::ERROR) == 0);
  CHECK(broker.counters().executors_lost == 0);
  CHECK(broker.died().empty());
}

TEST_CASE("a silent client has its queued tasks dropped") {
  zmq::context_t context;
  RunningBroker broker(quick_task_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 1);
  FakeExecutor executor(context, endpoint, holding("w1/0/0", 2));
  REQUIRE(wait_executors(context, endpoint, 1));

  FakeClient silent(context, endpoint);
  silent.send(tasks_window(11, 50, 0, 50));
  REQUIRE(executor.wait_held(2));
  silent.peer().set_heartbeat(false);
  REQUIRE(wait_status(context, endpoint, [](const StatusCounts& status) { return status.queued == 0; }));

  // Its two running tasks finish; none of its other tasks is dispatched, the next client's are.
  executor.answer(2);
  FakeClient next(context, endpoint);
  next.send(tasks_window(12, 3, 0, 3));
  REQUIRE(executor.wait_tasks(4));
  for (const auto& task : executor.held()) CHECK(task.batch == 12);
  executor.answer(2);
  REQUIRE(executor.wait_tasks(5));
  executor.answer(1);
  REQUIRE(next.wait_settled(12, 3));
  CHECK(executor.stats().tasks == 5);
  CHECK(silent.settled(11) == 0);
  CHECK(broker.died().empty());
}

TEST_CASE("a heartbeat from an unknown peer is answered with an error") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  Peer stranger(context, broker.endpoint(), PeerOptions{.heartbeat = false});
  stranger.send(heartbeat_message());
  const Received answer = stranger.take(Kind::ERROR);
  REQUIRE(answer);
  CHECK(contains(error_text(answer), "unknown peer"));
  CHECK(broker.counters().dropped_messages == 1);
  CHECK(broker.died().empty());
}
