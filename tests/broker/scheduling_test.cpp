// Where work goes (docs/protocol.md, "Routing"): prefetch that follows how long tasks take,
// handing back and reclaiming work that another executor could start, run limits per task, and
// the drain of a worker.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <thread>
#include <vector>

#include "broker_harness.hpp"

using namespace broker_test;

namespace {

// Results that say how long each task ran (the real executor's elapsedUs), from which the broker
// learns how long tasks of that name take.
zmq::message_t timed_results(const std::vector<Answer>& answers, std::chrono::microseconds ran) {
  wire::OutMessage out;
  auto list = out.envelope().initResults(static_cast<unsigned>(answers.size()));
  for (unsigned i = 0; i < answers.size(); ++i) {
    list[i].setBatchId(answers[i].batch);
    list[i].setIndex(answers[i].index);
    list[i].setAttempt(answers[i].attempt);
    list[i].initValue().setInt(answers[i].value);
    list[i].setRanOn("fake executor");
    list[i].setElapsedUs(static_cast<std::uint64_t>(ran.count()));
  }
  return out.frame();
}

zmq::message_t hand_back(const std::vector<std::pair<std::uint64_t, std::uint32_t>>& tasks) {
  wire::OutMessage out;
  auto list = out.envelope().initHandBack().initTasks(static_cast<unsigned>(tasks.size()));
  for (unsigned i = 0; i < tasks.size(); ++i) {
    list[i].setBatchId(tasks[i].first);
    list[i].setIndex(tasks[i].second);
  }
  return out.frame();
}

// One task with a run limit of its own (Task.timeoutMs), in a batch without a deadline.
zmq::message_t limited_task(std::uint64_t batch, std::uint32_t limit_ms) {
  wire::OutMessage out;
  fill_tasks(out.envelope().initTasks(), batch, 1, {{0, "square"}}, 0);
  out.envelope().getTasks().getTasks()[0].setTimeoutMs(limit_ms);
  return out.frame();
}

// Teaches the broker that "square" is quick: one task, answered as having run for 5 µs.
void teach_quick(FakeClient& client, FakeExecutor& executor) {
  client.send(tasks_window(1, 1, 0, 1));
  REQUIRE(executor.wait_held(1));
  executor.peer().send(timed_results({{1, 0, 0, 0}}, std::chrono::microseconds(5)));
  REQUIRE(client.wait_settled(1, 1));
}

ExecutorOptions holding(const std::string& id, const std::string& worker, bool record = false) {
  return ExecutorOptions{.id = id, .worker = worker, .slots = 64, .answer = false, .record = record};
}

// A broker, one worker of two executors that hold what they get until the test answers, and a
// client.
struct TwoHoldingExecutors {
  zmq::context_t context;
  RunningBroker broker{test_config(), context};
  std::unique_ptr<Peer> supervisor = make_supervisor(context, broker.endpoint(), "w1", 2);
  FakeExecutor first{context, broker.endpoint(), holding("w1/0/0", "w1")};
  FakeExecutor second{context, broker.endpoint(), holding("w1/1/0", "w1")};
  bool joined = wait_executors(context, broker.endpoint(), 2);
  FakeClient client{context, broker.endpoint()};

  // Tasks received so far by each executor.
  std::pair<std::size_t, std::size_t> received() { return {first.stats().tasks, second.stats().tasks}; }
  std::size_t received_in_all() { return first.stats().tasks + second.stats().tasks; }
};

}  // namespace

TEST_CASE("a task nobody has seen finish goes only to an idle executor: slow work waits at the broker, not behind other work") {
  TwoHoldingExecutors pool;
  REQUIRE(pool.joined);
  FakeExecutor& first = pool.first;
  FakeExecutor& second = pool.second;
  FakeClient& client = pool.client;

  client.send(tasks_window(7, 4, 0, 4));
  REQUIRE(first.wait_held(1));
  REQUIRE(second.wait_held(1));
  CHECK_FALSE(first.wait_held(2, std::chrono::milliseconds(200)));  // nothing ahead of a task of unknown length
  CHECK(second.held().size() == 1);

  // The first finishes after 300 ms: its name is slow, so it still gets one task at a time.
  const HeldTask done = first.held().front();
  first.peer().send(timed_results({{7, done.index, 0, 0}}, std::chrono::milliseconds(300)));
  REQUIRE(client.wait_settled(7, 1));
  REQUIRE(first.wait_tasks(2));
  CHECK_FALSE(first.wait_tasks(3, std::chrono::milliseconds(200)));
  CHECK(pool.broker.died().empty());
}

// An extra executor (started for slow work, Announce.extra) shares its worker's cores: quick work
// spread over more processes than cores only slows itself down. It gets quick work only once the
// worker's own executors have no room for it.
TEST_CASE("quick work goes to a worker's own executors, and to its extra executors only when they are full") {
  zmq::context_t context;
  // A task of a name never seen finish counts as 100 µs: the own executor below, holding one,
  // has a backlog that does not grow with time (a known task's would, once it overran).
  auto config = test_config();
  config.unknown_task_time = std::chrono::microseconds(100);
  RunningBroker broker(config, context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 2);
  auto own_options = holding("w1/0/0", "w1");
  own_options.names = {"square", "other"};
  FakeExecutor own(context, broker.endpoint(), own_options);
  auto extra_options = holding("w1/1/0", "w1");
  extra_options.extra = true;
  FakeExecutor extra(context, broker.endpoint(), extra_options);
  REQUIRE(wait_executors(context, broker.endpoint(), 2));
  FakeClient client(context, broker.endpoint());
  // Tasks of 5 µs, taught by whichever executor gets the first (nothing is known of them yet).
  client.send(tasks_window(1, 1, 0, 1));
  REQUIRE(fanout_test::eventually([&] { return own.stats().tasks + extra.stats().tasks == 1; }));
  FakeExecutor& taught = own.stats().tasks == 1 ? own : extra;
  taught.peer().send(timed_results({{1, 0, 0, 0}}, std::chrono::microseconds(5)));
  REQUIRE(client.wait_settled(1, 1));
  // The own executor busy with one task only it serves: the extra, idle, is the first choice of
  // the broker's idle-first order, and the own one still has room (100 µs of 2 ms ahead).
  const std::size_t own_before = own.stats().tasks;
  client.send(tasks_window(2, 1, 0, 1, "other"));
  REQUIRE(own.wait_tasks(own_before + 1));

  // Fifteen of them (75 µs: not worth sharing, they go to one executor): to the own one.
  const std::size_t extra_before = extra.stats().tasks;
  client.send(tasks_window(3, 15, 0, 15));
  REQUIRE(own.wait_tasks(own_before + 16));
  CHECK(extra.stats().tasks == extra_before);

  // Sixty more, with room for at most 48 at its own (a credit of 64): the extra takes the rest.
  client.send(tasks_window(4, 60, 0, 60));
  CHECK(extra.wait_tasks(extra_before + 12));
  CHECK(broker.died().empty());
}

TEST_CASE("tasks that proved quick are sent ahead, as many as the executor's credit holds") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
  FakeExecutor executor(context, broker.endpoint(), holding("w1/0/0", "w1"));
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());
  teach_quick(client, executor);

  client.send(tasks_window(8, 40, 0, 40));
  CHECK(executor.wait_held(40));  // all at once: 40 tasks of 5 µs are well within what it may hold ahead
}

TEST_CASE("quick work that together takes less than a message's round trip goes to one executor; more of it is shared") {
  TwoHoldingExecutors pool;
  REQUIRE(pool.joined);
  FakeExecutor& first = pool.first;
  FakeExecutor& second = pool.second;
  FakeClient& client = pool.client;
  // Tasks of 5 µs, taught by whichever executor gets the first; both are idle again after it.
  client.send(tasks_window(1, 1, 0, 1));
  REQUIRE(fanout_test::eventually([&] { return pool.received_in_all() == 1; }));
  FakeExecutor& taught = first.stats().tasks == 1 ? first : second;
  taught.peer().send(timed_results({{1, 0, 0, 0}}, std::chrono::microseconds(5)));
  REQUIRE(client.wait_settled(1, 1));

  // Three of them (15 µs): one executor takes all three, in the client's own message.
  const auto before = pool.received();
  client.send(tasks_window(2, 3, 0, 3));
  const std::size_t expected = before.first + before.second + 3;
  REQUIRE(fanout_test::eventually([&] { return pool.received_in_all() == expected; }));
  const auto after = pool.received();
  const bool first_took = after.first - before.first == 3;
  CHECK((first_took || after.second - before.second == 3));
  FakeExecutor& took = first_took ? first : second;
  took.peer().send(timed_results({{2, 0, 0, 0}, {2, 1, 0, 0}, {2, 2, 0, 0}}, std::chrono::microseconds(5)));
  REQUIRE(client.wait_settled(2, 3));

  // Sixty of them (300 µs): worth another executor's round trip, so both get a share.
  const auto then = pool.received();
  client.send(tasks_window(3, 60, 0, 60));
  CHECK(first.wait_tasks(then.first + 1));
  CHECK(second.wait_tasks(then.second + 1));
  CHECK(pool.broker.died().empty());
}

TEST_CASE("a unit's run time counts for each of its slots: a name's units do not make its single calls look slow") {
  TwoHoldingExecutors pool;
  REQUIRE(pool.joined);
  FakeExecutor& first = pool.first;
  FakeExecutor& second = pool.second;
  FakeClient& client = pool.client;
  // A unit of 500 slots that ran 2.5 ms: 5 µs a slot.
  wire::OutMessage unit;
  fill_tasks(unit.envelope().initTasks(), 1, 500, {{0, "square"}}, 0);
  unit.envelope().getTasks().getTasks()[0].setSlots(500);
  client.send(unit.frame());
  REQUIRE(fanout_test::eventually([&] { return pool.received_in_all() == 1; }));
  FakeExecutor& taught = first.stats().tasks == 1 ? first : second;
  taught.peer().send(timed_results({{1, 0, 0, 0}}, std::chrono::microseconds(2500)));
  REQUIRE(wait_status(pool.context, pool.broker.endpoint(), [](const StatusCounts& status) { return status.running == 0; }));

  // Three single calls of that name are 15 µs of work, not 7.5 ms: they go together.
  const auto before = pool.received();
  client.send(tasks_window(2, 3, 0, 3));
  const std::size_t expected = before.first + before.second + 3;
  REQUIRE(fanout_test::eventually([&] { return pool.received_in_all() == expected; }));
  const auto after = pool.received();
  CHECK((after.first - before.first == 3 || after.second - before.second == 3));
  CHECK(pool.broker.died().empty());
}

TEST_CASE("a unit's slots it refused to run do not count in its run time") {
  TwoHoldingExecutors pool;
  REQUIRE(pool.joined);
  // A unit of 100 slots that ran 50 of them in 3 ms (the rest refused, as past half a frame): 60 µs
  // a slot, not 30.
  wire::OutMessage unit;
  fill_tasks(unit.envelope().initTasks(), 1, 100, {{0, "square"}}, 0);
  unit.envelope().getTasks().getTasks()[0].setSlots(100);
  pool.client.send(unit.frame());
  REQUIRE(fanout_test::eventually([&] { return pool.received_in_all() == 1; }));
  FakeExecutor& taught = pool.first.stats().tasks == 1 ? pool.first : pool.second;
  wire::OutMessage answer;
  auto result = answer.envelope().initResults(1)[0];
  result.setBatchId(1);
  result.setIndex(0);
  result.initValue().initList(50);
  result.setRanOn("fake executor");
  result.setElapsedUs(3000);
  auto refused = result.initSlotErrors(50);
  for (unsigned i = 0; i < 50; ++i) {
    refused[i].setSlot(50 + i);
    refused[i].initError().setKind(wire::ErrorKind::REFUSED);
  }
  taught.peer().send(answer.frame());
  REQUIRE(wait_status(pool.context, pool.broker.endpoint(), [](const StatusCounts& status) { return status.running == 0; }));

  // Three single calls are 180 µs of work: worth sharing.
  const auto before = pool.received();
  pool.client.send(tasks_window(2, 3, 0, 3));
  CHECK(pool.first.wait_tasks(before.first + 1));
  CHECK(pool.second.wait_tasks(before.second + 1));
  CHECK(pool.broker.died().empty());
}

TEST_CASE("a window of quick tasks goes whole to a busy executor once it has room for half of it, never copied in parts") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
  FakeExecutor executor(context, broker.endpoint(), holding("w1/0/0", "w1"));
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());
  // Tasks of 100 µs: the 2 ms an executor may hold ahead is 20 of them.
  client.send(tasks_window(1, 1, 0, 1));
  REQUIRE(executor.wait_held(1));
  executor.peer().send(timed_results({{1, 0, 0, 0}}, std::chrono::microseconds(100)));
  REQUIRE(client.wait_settled(1, 1));

  client.send(tasks_window(2, 20, 0, 20));
  REQUIRE(executor.wait_tasks(1 + 20));  // all of it: as much as it may hold ahead
  client.send(tasks_window(3, 12, 0, 12));
  REQUIRE(wait_status(context, broker.endpoint(), [](const StatusCounts& status) { return status.queued == 12; }));
  // Results come one by one. Once the room ahead takes half the waiting window (about six answered:
  // fourteen of 100 µs left), the window goes, whole. Exactly when depends on the broker's clock (a
  // front task it sees running long leaves less room; a sanitized build on a busy machine sees
  // that), so results keep coming until it goes; never as a slice copied into a window of its own.
  std::uint32_t answered = 0;
  REQUIRE(fanout_test::eventually([&] {
    if (executor.stats().task_messages >= 3) return true;
    if (answered < 20) executor.peer().send(timed_results({{2, answered++, 0, 0}}, std::chrono::microseconds(100)));
    return false;
  }));
  CHECK(answered < 20);  // it went to a busy executor, not one that had finished everything
  CHECK(executor.wait_tasks(1 + 20 + 12));
  CHECK(executor.stats().task_messages == 3);  // the window as the client sent it, in one message
}

TEST_CASE("tasks an executor hands back go to the front of the queue with their attempts unchanged, and run elsewhere") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
  FakeExecutor first(context, broker.endpoint(), holding("w1/0/0", "w1"));
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());
  teach_quick(client, first);
  client.send(tasks_window(9, 4, 0, 4));
  REQUIRE(first.wait_held(5));  // the lesson's task, and all four at once

  // It drains: it says so, runs task 0 and gives back the others, the last received first.
  first.peer().send(announce_executor("w1/0/0", "w1", {"square"}, 64, /*draining=*/true));
  first.peer().send(hand_back({{9, 3}, {9, 2}, {9, 1}}));
  std::atomic<std::uint64_t> sequence{0};
  auto other = make_supervisor(context, broker.endpoint(), "w2", 1);
  FakeExecutor second(context, broker.endpoint(),
                      ExecutorOptions{.id = "w2/0/0", .worker = "w2", .slots = 64, .sequence = &sequence});
  REQUIRE(second.wait_tasks(3));
  std::vector<std::uint32_t> order;
  for (const auto& dispatched : second.dispatched()) order.push_back(dispatched.index);
  CHECK(order == std::vector<std::uint32_t>{1, 2, 3});
  CHECK(broker.counters().handed_back_tasks == 3);
  first.answer(2);  // the lesson's task (already settled: a duplicate) and task 0
  REQUIRE(client.wait_settled(9, 4));
  for (const auto& [index, outcome] : client.outcomes(9)) {
    CAPTURE(index);
    CHECK(outcome.ok);
    CHECK(outcome.attempt == 0);  // handing back is no attempt
  }
  CHECK(client.twice() == 0);
}

namespace {

// The free slots of worker `worker` in a status reply; nullopt when it is not listed.
std::optional<std::uint32_t> free_slots(const Received& status, const std::string& worker) {
  if (!status) return std::nullopt;
  for (const auto listed : status->envelope().getStatus().getWorkers()) {
    if (listed.getWorkerId().cStr() == worker) return listed.getFreeSlots();
  }
  return std::nullopt;
}

}  // namespace

// A draining executor hands back at once whatever it is sent: were it given work, the same task
// would go back and forth between it and the broker (an idle executor is served first) and its
// batch would never end. Local mode's pool does this all the time: an extra executor leaves once
// idle, and its supervisor announces the pool's new size.
TEST_CASE("an executor that said it drains gets no more work, even after its supervisor announces itself again") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  Peer supervisor(context, broker.endpoint(), PeerOptions{"supervisor:w1", true, true});
  supervisor.send(announce_supervisor("w1", 2, /*draining=*/false, /*max_processes=*/4));
  FakeExecutor leaving(context, broker.endpoint(), holding("w1/0/0", "w1"));
  FakeExecutor staying(context, broker.endpoint(), holding("w1/1/0", "w1"));
  REQUIRE(wait_executors(context, broker.endpoint(), 2));

  leaving.peer().send(announce_executor("w1/0/0", "w1", {"square"}, 64, /*draining=*/true));
  REQUIRE(fanout_test::eventually([&] {
    const auto status = query_status(context, broker.endpoint());
    return status && status->workers.size() == 1 && status->workers[0].free_slots == 64;
  }));
  // The supervisor announces the size it has now; its status request is answered after that.
  supervisor.send(announce_supervisor("w1", 1, /*draining=*/false, /*max_processes=*/4));
  supervisor.send(status_request());
  const auto free = free_slots(supervisor.take(Kind::STATUS), "w1");
  REQUIRE(free);
  CHECK(*free == 64);  // the staying executor's

  FakeClient client(context, broker.endpoint());
  client.send(tasks_window(30, 2, 0, 2));  // a task not seen yet: one at a time, the other waits
  REQUIRE(staying.wait_held(1));
  CHECK(leaving.stats().tasks == 0);
}

TEST_CASE("an idle executor gets the work another holds behind a task that turned out slow: the broker reclaims it") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
  FakeExecutor busy(context, broker.endpoint(), holding("w1/0/0", "w1", /*record=*/true));
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());
  teach_quick(client, busy);
  client.send(tasks_window(10, 4, 0, 4));
  REQUIRE(busy.wait_held(5));  // the lesson's task, then four quick ones, all ahead; task 0 takes far longer than 5 µs

  std::atomic<std::uint64_t> sequence{0};
  auto other = make_supervisor(context, broker.endpoint(), "w2", 1);
  FakeExecutor idle(context, broker.endpoint(),
                    ExecutorOptions{.id = "w2/0/0", .worker = "w2", .slots = 64, .sequence = &sequence});
  const Received reclaim = busy.peer().take(Kind::RECLAIM);
  REQUIRE(reclaim);
  CHECK(reclaim->envelope().getReclaim().getCount() == 3);  // all but the one it runs
  // The broker counts a reclaim once it has left, so the count may trail its arrival here.
  CHECK(fanout_test::eventually([&] { return broker.counters().reclaims == 1; }));
  busy.peer().send(hand_back({{10, 3}, {10, 2}, {10, 1}}));
  REQUIRE(idle.wait_tasks(3));
  std::set<std::uint32_t> ran_elsewhere;
  for (const auto& dispatched : idle.dispatched()) ran_elsewhere.insert(dispatched.index);
  CHECK(ran_elsewhere == std::set<std::uint32_t>{1, 2, 3});
}

TEST_CASE("a task over its own run limit fails as timeout naming the limit, and its executor is stopped") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = std::make_unique<Peer>(context, broker.endpoint(), PeerOptions{"supervisor:w1", true, true});
  supervisor->send(announce_supervisor("w1", 1));
  FakeExecutor executor(context, broker.endpoint(), holding("w1/0/0", "w1"));
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());

  const auto sent = Clock::now();
  client.send(limited_task(11, 150));
  REQUIRE(executor.wait_held(1));
  REQUIRE(client.wait_settled(11, 1, std::chrono::seconds(5)));
  const auto outcome = client.outcomes(11).at(0);
  CHECK_FALSE(outcome.ok);
  CHECK(outcome.kind == wire::ErrorKind::TIMEOUT);
  CHECK(outcome.message.find("time limit of 150 ms") != std::string::npos);
  CHECK(Clock::now() - sent >= std::chrono::milliseconds(150));  // never before its limit
  const Received stop = supervisor->take(Kind::STOP_EXECUTOR);
  REQUIRE(stop);
  CHECK(std::string(stop->envelope().getStopExecutor().getExecutorId().cStr()) == "w1/0/0");
  // Its late result is a duplicate, not a second outcome.
  executor.answer(1);
  REQUIRE(fanout_test::eventually([&] { return broker.counters().duplicate_results == 1; }, kSoon));
  CHECK(client.twice() == 0);
}

TEST_CASE("a task whose executor was stopped at the end of its worker's drain runs again without counting an attempt") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
  FakeExecutor draining(context, broker.endpoint(), holding("w1/0/0", "w1"));
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());
  client.send(tasks_window(12, 1, 0, 1));
  REQUIRE(draining.wait_held(1));

  wire::OutMessage lost;
  auto report = lost.envelope().initExecutorLost();
  report.setExecutorId("w1/0/0");
  report.setSignal(9);
  report.setRunning(true);
  report.setBatchId(12);
  report.setIndex(0);
  report.setDrained(true);
  supervisor->send(lost.frame());

  auto other = make_supervisor(context, broker.endpoint(), "w2", 1);
  FakeExecutor elsewhere(context, broker.endpoint(), holding("w2/0/0", "w2"));
  REQUIRE(elsewhere.wait_held(1));
  CHECK(elsewhere.held().front().attempt == 0);
}

TEST_CASE("tasks waiting while every executor runs a slow one make the broker ask a worker that may grow for more") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = std::make_unique<Peer>(context, broker.endpoint(), PeerOptions{"supervisor:w1", true, true});
  supervisor->send(announce_supervisor("w1", 1, /*draining=*/false, /*max_processes=*/4));
  FakeExecutor executor(context, broker.endpoint(), holding("w1/0/0", "w1"));
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());

  client.send(tasks_window(13, 3, 0, 3));  // one runs (and turns slow), two wait
  REQUIRE(executor.wait_held(1));
  const Received grow = supervisor->take(Kind::GROW);
  REQUIRE(grow);
  CHECK(grow->envelope().getGrow().getExecutors() == 1);  // one slow executor: one more
  // Asked once: no second request before the worker answers (or a second of patience passes).
  CHECK_FALSE(supervisor->take(Kind::GROW, std::chrono::milliseconds(300)));
}

TEST_CASE("a small batch of tasks never seen finish grows the worker at once, before any of them has run for long") {
  // As Laravel starts every task of a small batch at once: the broker does not wait kSlowSlot to
  // find out whether they are slow. These executors answer at once, so no task ever runs for
  // kSlowSlot, and only the eager rule can ask for growth.
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = std::make_unique<Peer>(context, broker.endpoint(), PeerOptions{"supervisor:w1", true, true});
  supervisor->send(announce_supervisor("w1", 2, /*draining=*/false, /*max_processes=*/4));
  FakeExecutor first(context, broker.endpoint(), ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 64});
  FakeExecutor second(context, broker.endpoint(), ExecutorOptions{.id = "w1/1/0", .worker = "w1", .slots = 64});
  REQUIRE(wait_executors(context, broker.endpoint(), 2));
  FakeClient client(context, broker.endpoint());

  client.send(tasks_window(30, 3, 0, 3));  // two start, one waits
  const Received grow = supervisor->take(Kind::GROW);
  REQUIRE(grow);
  CHECK(grow->envelope().getGrow().getExecutors() == 1);
  CHECK(client.wait_settled(30, 3));
}

TEST_CASE("a task known to be quick that is late makes a worker grow only after a long while, not at once") {
  // A late result of a name that takes microseconds means an executor without a CPU (a loaded
  // machine), which more processes on the same CPUs would make worse; a long wait still grows.
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = std::make_unique<Peer>(context, broker.endpoint(), PeerOptions{"supervisor:w1", true, true});
  supervisor->send(announce_supervisor("w1", 1, /*draining=*/false, /*max_processes=*/4));
  auto options = holding("w1/0/0", "w1");
  FakeExecutor executor(context, broker.endpoint(), options);
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());

  client.send(tasks_window(20, 1, 0, 1));  // its result says "square" takes no time at all
  REQUIRE(executor.wait_held(1));
  executor.answer(1);
  REQUIRE(client.wait_settled(20, 1));

  const auto sent = Clock::now();
  client.send(tasks_window(21, 100, 0, 100));  // 64 held (its credit), the first stays late; 36 wait
  REQUIRE(executor.wait_held(64));
  CHECK_FALSE(supervisor->take(Kind::GROW, std::chrono::milliseconds(150)));
  const Received grow = supervisor->take(Kind::GROW, std::chrono::seconds(3));
  REQUIRE(grow);
  CHECK(Clock::now() - sent >= std::chrono::milliseconds(250));
  CHECK(grow->envelope().getGrow().getExecutors() == 1);
}

TEST_CASE("a worker of fixed size is never asked to grow, and quick tasks never make a worker grow") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto fixed = std::make_unique<Peer>(context, broker.endpoint(), PeerOptions{"supervisor:w1", true, true});
  fixed->send(announce_supervisor("w1", 1));
  FakeExecutor executor(context, broker.endpoint(), holding("w1/0/0", "w1"));
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());
  client.send(tasks_window(14, 3, 0, 3));
  REQUIRE(executor.wait_held(1));
  CHECK_FALSE(fixed->take(Kind::GROW, std::chrono::milliseconds(300)));
}

TEST_CASE("a retry that asks to avoid a worker runs on another one, and on that worker only when no other serves it") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto first_worker = make_supervisor(context, broker.endpoint(), "w1", 1);
  FakeExecutor first(context, broker.endpoint(), holding("w1/0/0", "w1"));
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());
  const auto avoiding = [](std::uint64_t batch, const std::string& worker) {
    wire::OutMessage out;
    fill_tasks(out.envelope().initTasks(), batch, 1, {{0, "square"}}, 0);
    out.envelope().getTasks().getTasks()[0].setAvoidWorker(worker);
    return out.frame();
  };

  // Alone, w1 still runs it: better there than nowhere.
  client.send(avoiding(15, "w1"));
  REQUIRE(first.wait_held(1));

  auto second_worker = make_supervisor(context, broker.endpoint(), "w2", 1);
  FakeExecutor second(context, broker.endpoint(), holding("w2/0/0", "w2"));
  REQUIRE(wait_executors(context, broker.endpoint(), 2));
  first.answer(1);
  REQUIRE(client.wait_settled(15, 1));
  // Both idle now: the retry of a task that failed on w1 goes to w2.
  client.send(avoiding(16, "w1"));
  REQUIRE(second.wait_held(1));
  CHECK(second.held().front().batch == 16);
  CHECK(first.stats().tasks == 1);
}

TEST_CASE("a worker's supervisor that reconnects replaces its registration: the old one's silence takes no executor") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto old_connection = make_supervisor(context, broker.endpoint(), "w1", 1);
  FakeExecutor executor(context, broker.endpoint(), holding("w1/0/0", "w1"));
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());
  client.send(tasks_window(17, 1, 0, 1));
  REQUIRE(executor.wait_held(1));

  // The supervisor reconnects from a fresh socket; the old one falls silent.
  auto fresh = std::make_unique<Peer>(context, broker.endpoint(), PeerOptions{"supervisor:w1:again"});
  fresh->send(announce_supervisor("w1", 1));
  old_connection->set_heartbeat(false);
  // Well past the liveness period of the old connection: the executor is still there, its task
  // neither requeued nor charged an attempt.
  CHECK_FALSE(fanout_test::eventually([&] { return broker.counters().executors_lost > 0; }, 3 * kLiveness));
  CHECK(broker.counters().requeued_tasks == 0);
  executor.answer(1);
  REQUIRE(client.wait_settled(17, 1));
  CHECK(client.outcomes(17).at(0).ok);
}

TEST_CASE("after its supervisor reconnected, an executor gets work only once it has announced itself again") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto old_connection = make_supervisor(context, broker.endpoint(), "w1", 1);
  FakeExecutor executor(context, broker.endpoint(), holding("w1/0/0", "w1"));
  REQUIRE(wait_executors(context, broker.endpoint(), 1));

  // A partition ends: the supervisor comes back on a fresh connection; the executor's may be dead.
  auto fresh = std::make_unique<Peer>(context, broker.endpoint(), PeerOptions{"supervisor:w1:again"});
  fresh->send(announce_supervisor("w1", 1));
  fresh->send(status_request());  // answered after the announce (one connection keeps its order)
  REQUIRE(fresh->take(Kind::STATUS));
  FakeClient client(context, broker.endpoint());
  client.send(tasks_window(18, 1, 0, 1));
  CHECK_FALSE(executor.wait_held(1, std::chrono::milliseconds(300)));

  executor.peer().send(announce_executor("w1/0/0", "w1", {"square"}, 64));  // reachable again
  REQUIRE(executor.wait_held(1));
}
