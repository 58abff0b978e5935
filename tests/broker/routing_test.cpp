// Routing: which executor gets which task, how many, in what order; results back to their client;
// status.
#include "broker_harness.hpp"

using namespace broker_test;

TEST_CASE("a 3-task window is spread over 3 idle executors and each result reaches the client by (batch, index)") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 3);
  std::vector<std::unique_ptr<FakeExecutor>> executors;
  for (int n = 0; n < 3; ++n) {
    executors.push_back(std::make_unique<FakeExecutor>(
        context, endpoint, ExecutorOptions{.id = "w1/" + std::to_string(n) + "/0", .worker = "w1", .slots = 4, .answer = false}));
  }
  REQUIRE(wait_executors(context, endpoint, 3));

  FakeClient client(context, endpoint);
  client.send(tasks_window(7, 3, 0, 3));
  for (auto& executor : executors) CHECK(executor->wait_held(1));
  for (auto& executor : executors) {
    CHECK(executor->held().size() == 1);  // one each, not three queued on one
    executor->answer(1);
  }
  REQUIRE(client.wait_settled(7, 3));
  const auto outcomes = client.outcomes(7);
  for (std::uint32_t index = 0; index < 3; ++index) {
    REQUIRE(outcomes.count(index) == 1);
    CHECK(outcomes.at(index).ok);
    CHECK(outcomes.at(index).value == std::int64_t{index} * index);
  }
  CHECK(broker.counters().tasks_dispatched == 3);
  CHECK(broker.counters().results_forwarded == 3);
  CHECK(broker.died().empty());
}

TEST_CASE("a results frame reaches the client unchanged and a result sent twice reaches it once") {
  zmq::context_t context;
  RunningBroker broker(quick_task_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 1);
  FakeExecutor executor(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 4, .answer = false});
  REQUIRE(wait_executors(context, endpoint, 1));
  FakeClient client(context, endpoint);

  client.send(tasks_window(9, 2, 0, 2));
  REQUIRE(executor.wait_held(2));
  const auto sent = bytes_of(results_message({{9, 0, 0, 100}, {9, 1, 0, 101}}));
  executor.peer().send(frame_of(sent));
  const Received forwarded = client.peer().take(Kind::RESULTS);
  REQUIRE(forwarded);
  CHECK(bytes_of(forwarded->frame()) == sent);

  // The same frame again: both results are duplicates now.
  executor.peer().send(frame_of(sent));
  REQUIRE(fanout_test::eventually([&] { return broker.counters().duplicate_results == 2; }, kSoon));

  // A message mixing a duplicate and a new result: only the new one goes on.
  client.send(tasks_window(10, 1, 0, 1));
  REQUIRE(executor.wait_held(3));
  executor.peer().send(results_message({{9, 1, 0, 101}, {10, 0, 0, 7}}));
  REQUIRE(client.wait_settled(10, 1));
  CHECK(client.outcomes(10).at(0).value == 7);
  CHECK(broker.counters().duplicate_results == 3);
  // Everything the broker sent this client before batch 10's result has arrived by now.
  CHECK(client.twice() == 0);
  CHECK(client.peer().count(Kind::RESULTS) == 2);
  CHECK(client.outcomes(9).size() == 2);
  CHECK(broker.counters().results_forwarded == 3);
  CHECK(broker.died().empty());
}

TEST_CASE("tasks wait while no executor is connected and are dispatched when one announces") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  const auto& endpoint = broker.endpoint();
  FakeClient client(context, endpoint);
  client.send(tasks_window(3, 3, 0, 3));
  REQUIRE(wait_status(context, endpoint, [](const StatusCounts& status) { return status.queued == 3; }));
  CHECK(client.settled(3) == 0);

  auto supervisor = make_supervisor(context, endpoint, "w1", 1);
  FakeExecutor executor(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 2});
  REQUIRE(client.wait_settled(3, 3));
  for (const auto& [index, outcome] : client.outcomes(3)) {
    CHECK(outcome.ok);
    CHECK(outcome.value == std::int64_t{index} * index);
  }
  CHECK(broker.died().empty());
}

TEST_CASE("a task that no connected executor serves fails at once as unknownTask naming what is served") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 1);
  FakeExecutor executor(context, endpoint,
                        ExecutorOptions{.id = "w1/0/0", .worker = "w1", .names = {"square", "cube"}, .slots = 2});
  REQUIRE(wait_executors(context, endpoint, 1));
  FakeClient client(context, endpoint);

  client.send(tasks_window(4, 2, 0, 2, "nope"));
  REQUIRE(client.wait_settled(4, 2));
  for (const auto& [index, outcome] : client.outcomes(4)) {
    CHECK_FALSE(outcome.ok);
    CHECK(outcome.kind == wire::ErrorKind::UNKNOWN_TASK);
    CHECK(contains(outcome.message, "'nope'"));
    CHECK(contains(outcome.message, "cube, square"));
  }

  // In a window mixing names, only the unknown ones fail.
  client.send(mixed_window(5, {"square", "nope", "square"}));
  REQUIRE(client.wait_settled(5, 3));
  const auto mixed = client.outcomes(5);
  CHECK(mixed.at(0).ok);
  CHECK(mixed.at(0).value == 0);
  CHECK(mixed.at(1).kind == wire::ErrorKind::UNKNOWN_TASK);
  CHECK(mixed.at(2).ok);
  CHECK(mixed.at(2).value == 4);
  CHECK(broker.died().empty());
}

TEST_CASE("executors only get tasks whose names they announced and never more than their credit") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 2);
  FakeExecutor a(context, endpoint,
                 ExecutorOptions{.id = "w1/0/0", .worker = "w1", .names = {"a"}, .slots = 2, .answer_after = 1ms});
  FakeExecutor b(context, endpoint,
                 ExecutorOptions{.id = "w1/1/0", .worker = "w1", .names = {"b"}, .slots = 3, .answer_after = 1ms});
  REQUIRE(wait_executors(context, endpoint, 2));
  FakeClient client(context, endpoint);

  client.send(tasks_window(1, 40, 0, 40, "a"));
  client.send(tasks_window(2, 40, 0, 40, "b"));
  // One window whose tasks no single executor serves all of: each goes where its name is served.
  std::vector<std::string> names;
  for (int i = 0; i < 20; ++i) names.push_back(i % 3 == 0 ? "b" : "a");
  client.send(mixed_window(3, names));

  REQUIRE(client.wait_settled(1, 40));
  REQUIRE(client.wait_settled(2, 40));
  REQUIRE(client.wait_settled(3, 20));
  for (const std::uint64_t batch : {1, 2, 3}) {
    for (const auto& [index, outcome] : client.outcomes(batch)) {
      CHECK(outcome.ok);
      CHECK(outcome.value == std::int64_t{index} * index);
    }
  }
  const auto stats_a = a.stats();
  const auto stats_b = b.stats();
  CHECK(stats_a.names == std::set<std::string>{"a"});
  CHECK(stats_b.names == std::set<std::string>{"b"});
  CHECK(stats_a.tasks == 40 + 13);
  CHECK(stats_b.tasks == 40 + 7);
  CHECK(stats_a.max_outstanding == 2);
  CHECK(stats_b.max_outstanding == 3);
  CHECK(broker.died().empty());
}

TEST_CASE("a small batch from a second client is dispatched at once while a big batch keeps every executor busy") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  const auto& endpoint = broker.endpoint();
  std::atomic<std::uint64_t> sequence{0};
  auto supervisor = make_supervisor(context, endpoint, "w1", 2);
  FakeExecutor first(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 8, .sequence = &sequence});
  FakeExecutor second(context, endpoint, ExecutorOptions{.id = "w1/1/0", .worker = "w1", .slots = 8, .sequence = &sequence});
  REQUIRE(wait_executors(context, endpoint, 2));

  constexpr std::uint32_t kBig = 100'000;
  constexpr std::uint32_t kWindow = 10'000;
  FakeClient big(context, endpoint);
  for (std::uint32_t first_index = 0; first_index < kBig; first_index += kWindow) {
    big.send(tasks_window(1, kBig, first_index, kWindow));
  }
  REQUIRE(big.wait_settled(1, 2'000));

  FakeClient small(context, endpoint);
  const std::uint64_t submitted_at = sequence.load();
  small.send(tasks_window(2, 3, 0, 3));
  REQUIRE(small.wait_settled(2, 3));
  const std::size_t big_done_then = big.settled(1);
  for (const auto& [index, outcome] : small.outcomes(2)) CHECK(outcome.value == std::int64_t{index} * index);

  const bool big_done = big.wait_settled(1, kBig, 120s);
  if (!big_done) {
    const auto status = query_status(context, endpoint);
    FAIL("the big batch stalled at " << big.settled(1) << " of " << kBig << "; broker queued "
                                     << (status ? status->queued : 0) << ", running " << (status ? status->running : 0)
                                     << "; executors got " << first.stats().tasks << " and " << second.stats().tasks
                                     << ", hold " << first.held().size() << " and " << second.held().size()
                                     << "; broker: " << broker.died());
  }
  std::vector<FakeExecutor::Dispatched> log = first.dispatched();
  const auto more = second.dispatched();
  log.insert(log.end(), more.begin(), more.end());
  std::sort(log.begin(), log.end(), [](const auto& x, const auto& y) { return x.sequence < y.sequence; });
  std::vector<std::uint64_t> small_at;
  for (const auto& entry : log) {
    if (entry.batch == 2) small_at.push_back(entry.sequence);
  }
  REQUIRE(small_at.size() == 3);
  const std::uint64_t wait_before = small_at.front() - submitted_at;  // big tasks dispatched meanwhile
  const std::uint64_t spread = small_at.back() - small_at.front();
  MESSAGE("big-batch tasks dispatched between the small batch's submission and its first task: " << wait_before
          << "; between its first and last task: " << spread << "; big tasks done when the small batch was: "
          << big_done_then);
  // 2 executors x 8 slots: each dispatch turn moves at most 16 tasks. The first small task may wait
  // for the time its window takes to reach the broker; after that its tasks go within a few turns
  // (the round-robin over clients decides whose turn a freed slot is, and on two loaded cores the
  // fake executors record what they got late), never behind the big batch's 100,000-task queue.
  CHECK(wait_before < 2'000);
  CHECK(spread <= 16 * 16);
  CHECK(big_done_then < kBig / 2);
  for (const auto& [index, outcome] : big.outcomes(1)) {
    if (outcome.value != std::int64_t{index} * index) FAIL_CHECK("wrong value for index " << index);
  }
  CHECK(broker.died().empty());
}

TEST_CASE("a status request returns workers with their executors, free slots and task names, and the queue depth") {
  zmq::context_t context;
  RunningBroker broker(quick_task_config(), context);
  const auto& endpoint = broker.endpoint();
  auto w1 = make_supervisor(context, endpoint, "w1", 2);
  auto w2 = make_supervisor(context, endpoint, "w2", 1);
  FakeExecutor e1(context, endpoint,
                  ExecutorOptions{.id = "w1/0/0", .worker = "w1", .names = {"square", "cube"}, .slots = 3, .answer = false});
  FakeExecutor e2(context, endpoint,
                  ExecutorOptions{.id = "w1/1/0", .worker = "w1", .names = {"square", "cube"}, .slots = 3, .answer = false});
  FakeExecutor e3(context, endpoint, ExecutorOptions{.id = "w2/0/0", .worker = "w2", .names = {"shell"}, .slots = 1, .answer = false});
  REQUIRE(wait_executors(context, endpoint, 3));

  FakeClient client(context, endpoint);
  client.send(tasks_window(1, 5, 0, 5, "square"));
  client.send(tasks_window(2, 3, 0, 3, "shell"));
  REQUIRE(fanout_test::eventually([&] { return e1.held().size() + e2.held().size() == 5 && e3.held().size() == 1; }, kSoon));

  const auto status = query_status(context, endpoint);
  REQUIRE(status);
  CHECK(status->workers.size() == 2);
  const WorkerInfo* first = status->worker("w1");
  const WorkerInfo* second = status->worker("w2");
  REQUIRE(first != nullptr);
  REQUIRE(second != nullptr);
  CHECK(first->executors == 2);
  CHECK(first->free_slots == 1);
  CHECK(first->names == std::vector<std::string>{"cube", "square"});
  CHECK(second->executors == 1);
  CHECK(second->free_slots == 0);
  CHECK(second->names == std::vector<std::string>{"shell"});
  CHECK(status->queued == 2);
  CHECK(status->running == 6);
  CHECK(broker.died().empty());
}
