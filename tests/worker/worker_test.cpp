// fanout-worker, driven from outside: a real worker process (loading the example task library)
// against a fake broker on a real socket. Every wait has a deadline; every process is killed and
// reaped by its owner object, also when a check fails.
#include <doctest/doctest.h>

#include <capnp/any.h>

#include <sys/wait.h>

#include <algorithm>
#include <bit>
#include <csignal>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "test_support.hpp"
#include "worker_harness.hpp"

using namespace fanout_test;
using namespace std::chrono_literals;

namespace {

// A fake broker on an ipc endpoint in a fresh directory, and a worker connected to it whose
// supervisor and executors have announced themselves.
class Setup {
 public:
  explicit Setup(unsigned processes, std::vector<std::string> extra = {}) : processes_(processes) {
    become_subreaper();
    std::vector<std::string> arguments{"--connect",  endpoint_,           "--processes", std::to_string(processes),
                                       "--load",     FANOUT_EXAMPLE_TASKS, "--id",        "test-worker",
                                       "--log-level", "debug"};
    arguments.insert(arguments.end(), extra.begin(), extra.end());
    worker_ = std::make_unique<Child>(start_worker(arguments));
    const Received* supervisor = broker_->take(supervisor_announce());
    if (supervisor == nullptr) FAIL("the supervisor did not announce itself; worker log:\n" << log());
    supervisor_ = supervisor->peer;
    for (unsigned i = 0; i < processes; ++i) {
      const Received* executor = broker_->take(executor_announce());
      if (executor == nullptr) FAIL("executor " << i << " did not announce itself; worker log:\n" << log());
      executors_.emplace_back(executor->envelope().getAnnounce().getExecutorId());
      executor_pids_.push_back(executor->envelope().getAnnounce().getPid());
    }
    // Announced in whatever order the executors got going; tests address them by number.
    std::vector<std::size_t> order(executors_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return executors_[a] < executors_[b]; });
    std::vector<std::string> ids;
    std::vector<pid_t> pids;
    for (const std::size_t i : order) {
      ids.push_back(executors_[i]);
      pids.push_back(executor_pids_[i]);
    }
    executors_ = std::move(ids);
    executor_pids_ = std::move(pids);
  }

  ~Setup() {
    worker_.reset();  // kills and reaps the supervisor...
    reap_orphans();   // ...whose executors, orphaned, die and come back to this process
  }
  Setup(const Setup&) = delete;
  Setup& operator=(const Setup&) = delete;

  FakeBroker& broker() { return *broker_; }
  Child& worker() { return *worker_; }
  const std::string& endpoint() const { return endpoint_; }
  const std::string& supervisor() const { return supervisor_; }
  const std::string& executor(std::size_t n) const { return executors_.at(n); }
  pid_t executor_pid(std::size_t n) const { return executor_pids_.at(n); }
  unsigned processes() const { return processes_; }
  std::string log() const { return worker_->out(); }

  // Simulates a broker restart: the old socket closes, a new one binds the same endpoint.
  FakeBroker& restart_broker() {
    broker_.reset();
    broker_.emplace(endpoint_);
    return *broker_;
  }

 private:
  TempDir directory_;
  std::string endpoint_ = "ipc://" + (directory_.path() / "broker").string();
  std::optional<FakeBroker> broker_{std::in_place, endpoint_};
  std::unique_ptr<Child> worker_;  // after the broker: killed and reaped first
  unsigned processes_;
  std::string supervisor_;
  std::vector<std::string> executors_;
  std::vector<pid_t> executor_pids_;
};

// The value of one result, decoded as T; fails the test for an error result.
template <class T>
T value_of(wire::Result::Reader result) {
  if (!result.isValue()) {
    FAIL("expected a value, got an error: " << std::string(result.getError().getMessage()));
  }
  return fanout::decode<T>(wire::wrap(result.getValue()));
}

// The single result of a batch, or a test failure.
wire::Result::Reader single_result(FakeBroker& broker, std::uint64_t batch, const std::string& log) {
  const Received* results = broker.take(results_of(batch));
  if (results == nullptr) FAIL("no results for batch " << batch << "; worker log:\n" << log);
  REQUIRE(results->envelope().getResults().size() == 1);
  return results->envelope().getResults()[0];
}

bool exited_with(const std::optional<int>& status, int code) {
  return status && WIFEXITED(*status) && WEXITSTATUS(*status) == code;
}

}  // namespace

TEST_CASE("a worker announces its supervisor and executors, with the tasks of --load and its credit") {
  Setup setup(2, {"--slots", "17"});
  auto& broker = setup.broker();
  const auto supervisor = broker.count([&](const Received& r) {
    if (!r.envelope().isAnnounce() || r.peer != setup.supervisor()) return false;
    const auto announce = r.envelope().getAnnounce();
    return announce.getWorkerId() == "test-worker" && announce.getPid() == setup.worker().pid() &&
           announce.getProcesses() == 2 && !announce.getAllowShell() && !announce.getDraining() &&
           announce.getHost().size() > 0;
  });
  CHECK(supervisor == 1);
  // <workerId>/<slot>/<generation>/<64 random bits in hex>
  CHECK(setup.executor(0).rfind("test-worker/0/0/", 0) == 0);
  CHECK(setup.executor(1).rfind("test-worker/1/0/", 0) == 0);
  CHECK(setup.executor(0).size() == std::string("test-worker/0/0/").size() + 16);
  for (std::size_t n = 0; n < 2; ++n) {
    CHECK(broker.count([&](const Received& r) {
      if (!r.envelope().isAnnounce() || r.peer != setup.executor(n)) return false;  // routing id = executorId
      const auto announce = r.envelope().getAnnounce();
      std::vector<std::string> names;
      for (const auto name : announce.getTaskNames()) names.emplace_back(name);
      return announce.getWorkerId() == "test-worker" && announce.getSlots() == 17 &&
             std::find(names.begin(), names.end(), "example.square") != names.end() &&
             std::find(names.begin(), names.end(), "example.concat") != names.end() &&
             std::find(names.begin(), names.end(), "example.crash") != names.end() &&
             std::find(names.begin(), names.end(), "example.sleep_ms") != names.end();
    }) == 1);
  }
  // The supervisor keeps heartbeating (every 500 ms by default).
  CHECK(broker.take(heartbeat_from(setup.supervisor())) != nullptr);
}

TEST_CASE("an executor runs the tasks it receives and answers with their results in order") {
  Setup setup(1);
  auto& broker = setup.broker();
  std::vector<TaskSpec> tasks;
  for (std::uint32_t i = 0; i < 5; ++i) tasks.push_back({i, "example.square", arguments(static_cast<int>(i) + 1)});
  tasks.push_back({5, "example.concat", arguments(std::string(", "), std::vector<std::string>{"a", "b", "c"}), 2});
  auto message = tasks_message(0xBA7C4, tasks);
  broker.send(setup.executor(0), message);

  // Quick results travel together, but never wait for a task of a name not run here yet (it may
  // be slow): the six may come in more than one message, in order.
  std::vector<wire::Result::Reader> results;
  while (results.size() < 6) {
    const Received* received = broker.take(results_of(0xBA7C4));
    REQUIRE_MESSAGE(received != nullptr, setup.log());
    for (const auto result : received->envelope().getResults()) results.push_back(result);
  }
  REQUIRE(results.size() == 6);
  for (std::uint32_t i = 0; i < 5; ++i) {
    CHECK(results[i].getBatchId() == 0xBA7C4);
    CHECK(results[i].getIndex() == i);
    CHECK(value_of<int>(results[i]) == static_cast<int>((i + 1) * (i + 1)));
  }
  CHECK(results[5].getIndex() == 5);
  CHECK(results[5].getAttempt() == 2);  // echoed, so the broker can tell attempts apart
  CHECK(value_of<std::string>(results[5]) == "a, b, c");
  const std::string ran_on = results[0].getRanOn();
  CHECK(ran_on == "worker test-worker pid " + std::to_string(setup.executor_pid(0)));
}

TEST_CASE("results go back in messages of at most 1024, all of one batch") {
  constexpr std::uint32_t kTasks = 3000;
  constexpr std::uint64_t kBatch = 300;
  Setup setup(1, {"--slots", "4096"});
  auto& broker = setup.broker();
  std::vector<TaskSpec> tasks;
  for (std::uint32_t i = 0; i < kTasks; ++i) tasks.push_back({i, "example.square", arguments(static_cast<int>(i % 1000))});
  auto message = tasks_message(kBatch, tasks);
  broker.send(setup.executor(0), message);

  std::vector<bool> seen(kTasks, false);
  std::size_t answered = 0;
  std::size_t messages = 0;
  while (answered < kTasks) {
    const Received* received = broker.take(results_of(kBatch));
    REQUIRE_MESSAGE(received != nullptr, "answered " << answered << " of " << kTasks << "; " << setup.log());
    const auto results = received->envelope().getResults();
    ++messages;
    CHECK(results.size() <= 1024);
    for (const auto result : results) {
      REQUIRE(result.getBatchId() == kBatch);
      REQUIRE(result.getIndex() < kTasks);
      CHECK_FALSE(seen[result.getIndex()]);
      seen[result.getIndex()] = true;
      const int x = static_cast<int>(result.getIndex() % 1000);
      CHECK(value_of<int>(result) == x * x);
      ++answered;
    }
  }
  CHECK(messages >= 3);  // batched, not one message for everything
  CHECK(std::all_of(seen.begin(), seen.end(), [](bool s) { return s; }));
}

TEST_CASE("a result leaves as soon as it exists, not held back by a slower task after it in the same frame") {
  Setup setup(1);
  auto& broker = setup.broker();
  // The executor learns that squares are quick; sleep_ms it has never run.
  auto warm_up = tasks_message(50, {{0, "example.square", arguments(1)}, {1, "example.square", arguments(2)}});
  broker.send(setup.executor(0), warm_up);
  for (std::size_t answered = 0; answered < 2;) {
    const Received* received = broker.take(results_of(50));
    REQUIRE_MESSAGE(received != nullptr, setup.log());
    answered += received->envelope().getResults().size();
  }

  auto message = tasks_message(51, {{0, "example.square", arguments(3)}, {1, "example.square", arguments(4)},
                                    {2, "example.sleep_ms", arguments(3000)}});
  const auto sent = Clock::now();
  broker.send(setup.executor(0), message);
  std::vector<std::uint32_t> quick;
  while (quick.size() < 2) {
    const Received* received = broker.take(results_of(51), milliseconds(2500));
    REQUIRE_MESSAGE(received != nullptr, "the squares' results waited for the 3 s task; " << setup.log());
    for (const auto result : received->envelope().getResults()) {
      CHECK(result.getIndex() != 2);
      quick.push_back(result.getIndex());
    }
  }
  CHECK(Clock::now() - sent < milliseconds(2500));
  CHECK(quick == std::vector<std::uint32_t>{0, 1});
  const Received* slow = broker.take(results_of(51));
  REQUIRE_MESSAGE(slow != nullptr, setup.log());
  REQUIRE(slow->envelope().getResults().size() == 1);
  CHECK(slow->envelope().getResults()[0].getIndex() == 2);
}

TEST_CASE("an unknown task name fails its slot with kind unknownTask") {
  Setup setup(1);
  auto message = tasks_message(41, {{7, "example.no_such_task", arguments(1)}});
  setup.broker().send(setup.executor(0), message);
  const auto result = single_result(setup.broker(), 41, setup.log());
  CHECK(result.getIndex() == 7);
  REQUIRE(result.isError());
  CHECK(result.getError().getKind() == wire::ErrorKind::UNKNOWN_TASK);
  CHECK(std::string(result.getError().getMessage()).find("example.no_such_task") != std::string::npos);
}

// A unit (fanout.capnp, Task.slots): many slots of one quick task in one Task, whose arguments
// are the list of the slots' tuples; its Result holds the list of their values.
TEST_CASE("a unit's slots run in turn; a slot that fails is named in slotErrors, the others have values") {
  Setup setup(1);
  // example.square takes and gives an int: its slots run on scalars read straight from the
  // unit, and those that are not exactly an int run the general way, converted or refused.
  const auto unit_args = [](wire::Value::Builder out) {
    auto list = out.initList(7);
    for (unsigned i = 0; i < 7; ++i) {
      if (i == 2) {
        fanout::encode(wire::wrap(list[i]), std::make_tuple(std::string("not a number")));
      } else if (i == 5) {
        fanout::encode(wire::wrap(list[i]), std::make_tuple(std::uint32_t{6}));  // a uint: converted
      } else if (i == 6) {
        fanout::encode(wire::wrap(list[i]), std::make_tuple(7, 7));  // one argument too many
      } else {
        fanout::encode(wire::wrap(list[i]), std::make_tuple(static_cast<int>(i) + 1));
      }
    }
  };
  auto message = tasks_message(42, {{3, "example.square", unit_args, 0, 7}});
  setup.broker().send(setup.executor(0), message);
  const auto result = single_result(setup.broker(), 42, setup.log());
  CHECK(result.getIndex() == 3);
  REQUIRE(result.isValue());
  REQUIRE(result.getValue().isList());
  const auto values = result.getValue().getList();
  REQUIRE(values.size() == 7);
  CHECK(values[0].getInt() == 1);
  CHECK(values[1].getInt() == 4);
  CHECK(values[2].isNone());
  CHECK(values[3].getInt() == 16);
  CHECK(values[4].getInt() == 25);
  CHECK(values[5].getInt() == 36);
  CHECK(values[6].isNone());
  REQUIRE(result.getSlotErrors().size() == 2);
  CHECK(result.getSlotErrors()[0].getSlot() == 2);
  CHECK(result.getSlotErrors()[0].getError().getKind() == wire::ErrorKind::BAD_ARGUMENTS);
  CHECK(std::string(result.getSlotErrors()[0].getError().getRanOn()) == std::string(result.getRanOn()));
  CHECK(result.getSlotErrors()[1].getSlot() == 6);
  CHECK(result.getSlotErrors()[1].getError().getKind() == wire::ErrorKind::BAD_ARGUMENTS);

  SUBCASE("a unit of a name not registered fails whole") {
    auto unknown = tasks_message(43, {{0, "example.no_such_task", unit_args, 0, 7}});
    setup.broker().send(setup.executor(0), unknown);
    const auto failed = single_result(setup.broker(), 43, setup.log());
    REQUIRE(failed.isError());
    CHECK(failed.getError().getKind() == wire::ErrorKind::UNKNOWN_TASK);
  }
  SUBCASE("a unit whose arguments are not a list of as many tuples fails whole, and the executor goes on") {
    auto wrong = tasks_message(44, {{0, "example.square", unit_args, 0, 8}});
    setup.broker().send(setup.executor(0), wrong);
    const auto failed = single_result(setup.broker(), 44, setup.log());
    REQUIRE(failed.isError());
    CHECK(failed.getError().getKind() == wire::ErrorKind::BAD_MESSAGE);
    auto plain = tasks_message(45, {{0, "example.square", arguments(9)}});
    setup.broker().send(setup.executor(0), plain);
    CHECK(value_of<int>(single_result(setup.broker(), 45, setup.log())) == 81);
  }
}

// A unit's scalars laid out together (Task.scalarArgs): a word and a kind byte per argument, slot
// after slot; (kind, bits) pairs here, kinds numbered as Value's members (bool 1 ... float64 5).
std::function<void(wire::Task::Builder)> laid_out(std::vector<std::pair<std::uint8_t, std::uint64_t>> scalars) {
  return [scalars](wire::Task::Builder task) {
    auto bits = task.initScalarArgs(static_cast<unsigned>(scalars.size()));
    auto kinds = task.initScalarKinds(static_cast<unsigned>(scalars.size()));
    for (unsigned i = 0; i < scalars.size(); ++i) {
      kinds.set(i, scalars[i].first);
      bits.set(i, scalars[i].second);
    }
  };
}

constexpr std::uint8_t kInt = 2, kUint = 3, kFloat64 = 5;

TEST_CASE("a unit of scalars laid out together runs on them and answers with its values laid out the same way") {
  Setup setup(1);
  auto message = tasks_message(50, {{2, "example.square", {}, 0, 5, laid_out({{kInt, 1}, {kInt, 2}, {kInt, 3},
                                                                              {kInt, static_cast<std::uint64_t>(-4)},
                                                                              {kInt, 5}})}});
  setup.broker().send(setup.executor(0), message);
  const auto result = single_result(setup.broker(), 50, setup.log());
  CHECK(result.getIndex() == 2);
  REQUIRE(result.isValue());
  CHECK_FALSE(result.getValue().isList());  // no Value per slot
  REQUIRE(result.getScalarValues().size() == 5);
  REQUIRE(result.getScalarKinds().size() == 5);
  const std::int64_t squares[] = {1, 4, 9, 16, 25};
  for (unsigned i = 0; i < 5; ++i) {
    CHECK(static_cast<std::int64_t>(result.getScalarValues()[i]) == squares[i]);
    CHECK(result.getScalarKinds()[i] == kInt);
  }
  CHECK(result.getSlotErrors().size() == 0);

  SUBCASE("a slot that is not exactly the task's types runs the general way; the values become a list of Values") {
    auto mixed = tasks_message(51, {{0, "example.square", {}, 0, 4, laid_out({{kInt, 2}, {kInt, 3}, {kUint, 4},
                                                                              {kFloat64, std::bit_cast<std::uint64_t>(1.5)}})}});
    setup.broker().send(setup.executor(0), mixed);
    const auto answer = single_result(setup.broker(), 51, setup.log());
    REQUIRE(answer.isValue());
    CHECK(answer.getScalarValues().size() == 0);
    REQUIRE(answer.getValue().isList());
    const auto values = answer.getValue().getList();
    REQUIRE(values.size() == 4);
    CHECK(values[0].getInt() == 4);  // run before the switch, kept
    CHECK(values[1].getInt() == 9);
    CHECK(values[2].getInt() == 16);  // a uint, converted
    CHECK(values[3].isNone());
    REQUIRE(answer.getSlotErrors().size() == 1);
    CHECK(answer.getSlotErrors()[0].getSlot() == 3);
    CHECK(answer.getSlotErrors()[0].getError().getKind() == wire::ErrorKind::BAD_ARGUMENTS);
  }
  SUBCASE("two arguments a slot for a task of one: every slot fails as badArguments, the unit does not") {
    auto pairs = tasks_message(52, {{0, "example.square", {}, 0, 2, laid_out({{kInt, 1}, {kInt, 2}, {kInt, 3}, {kInt, 4}})}});
    setup.broker().send(setup.executor(0), pairs);
    const auto answer = single_result(setup.broker(), 52, setup.log());
    REQUIRE(answer.isValue());
    REQUIRE(answer.getSlotErrors().size() == 2);
    CHECK(answer.getSlotErrors()[1].getError().getKind() == wire::ErrorKind::BAD_ARGUMENTS);
  }
  SUBCASE("lists that do not describe the unit's slots fail it whole as badMessage, and the executor goes on") {
    const std::vector<std::pair<std::string, TaskSpec>> malformed{
        {"sizes that do not divide", {0, "example.square", {}, 0, 3, laid_out({{kInt, 1}, {kInt, 2}, {kInt, 3}, {kInt, 4}})}},
        {"fewer kinds than words",
         {0, "example.square", {}, 0, 2,
          [](wire::Task::Builder task) {
            task.initScalarArgs(2);
            task.initScalarKinds(1).set(0, kInt);
          }}},
        {"kinds only", {0, "example.square", {}, 0, 1, [](wire::Task::Builder task) { task.initScalarKinds(1).set(0, kInt); }}},
        {"a kind past float64", {0, "example.square", {}, 0, 2, laid_out({{kInt, 1}, {6, 2}})}},
        {"kind none", {0, "example.square", {}, 0, 2, laid_out({{kInt, 1}, {0, 2}})}},
        {"nine arguments a slot", {0, "example.square", {}, 0, 1, laid_out(std::vector<std::pair<std::uint8_t, std::uint64_t>>(9, {kInt, 1}))}},
    };
    std::uint64_t batch = 60;
    for (const auto& [what, spec] : malformed) {
      CAPTURE(what);
      auto bad = tasks_message(batch, {spec});
      setup.broker().send(setup.executor(0), bad);
      const auto failed = single_result(setup.broker(), batch, setup.log());
      REQUIRE(failed.isError());
      CHECK(failed.getError().getKind() == wire::ErrorKind::BAD_MESSAGE);
      ++batch;
    }
    auto plain = tasks_message(batch, {{0, "example.square", arguments(9)}});
    setup.broker().send(setup.executor(0), plain);
    CHECK(value_of<int>(single_result(setup.broker(), batch, setup.log())) == 81);
  }
}

TEST_CASE("arguments of the wrong types fail the slot with kind badArguments") {
  Setup setup(1);
  auto message = tasks_message(42, {{0, "example.square", arguments(std::string("three"))},
                                    {1, "example.square", arguments(1, 2)},
                                    {2, "example.square", arguments(3)}});
  setup.broker().send(setup.executor(0), message);
  std::vector<wire::Result::Reader> results;  // in one message or several (results wait only for quick tasks)
  while (results.size() < 3) {
    const Received* received = setup.broker().take(results_of(42));
    REQUIRE_MESSAGE(received != nullptr, setup.log());
    for (const auto result : received->envelope().getResults()) results.push_back(result);
  }
  REQUIRE(results.size() == 3);
  for (unsigned i = 0; i < 2; ++i) {
    REQUIRE(results[i].isError());
    CHECK(results[i].getError().getKind() == wire::ErrorKind::BAD_ARGUMENTS);
    CHECK(std::string(results[i].getError().getMessage()).find("example.square") != std::string::npos);
  }
  CHECK(value_of<int>(results[2]) == 9);  // one bad slot does not spoil the others
}

TEST_CASE("a task that kills its executor is reported as executorLost with the running task, and a replacement announces") {
  Setup setup(1);
  auto& broker = setup.broker();
  auto message = tasks_message(55, {{3, "example.crash", arguments(0)}});
  broker.send(setup.executor(0), message);

  const Received* lost = broker.take(executor_lost());
  REQUIRE_MESSAGE(lost != nullptr, setup.log());
  CHECK(lost->peer == setup.supervisor());
  const auto report = lost->envelope().getExecutorLost();
  CHECK(report.getExecutorId() == setup.executor(0));
  CHECK(report.getSignal() == SIGKILL);
  CHECK(report.getRunning());
  CHECK(report.getBatchId() == 55);
  CHECK(report.getIndex() == 3);
  CHECK_FALSE(report.getStoppedByBroker());

  const Received* replacement = broker.take(executor_announce("test-worker/0/1"));
  REQUIRE_MESSAGE(replacement != nullptr, setup.log());
  auto next = tasks_message(56, {{0, "example.square", arguments(12)}});
  broker.send(executor_id_of(*replacement), next);
  CHECK(value_of<int>(single_result(broker, 56, setup.log())) == 144);
}

TEST_CASE("stopExecutor kills the executor, which is reported as stopped by the broker and replaced") {
  Setup setup(1);
  auto& broker = setup.broker();
  auto message = tasks_message(66, {{9, "example.sleep_ms", arguments(60'000)}});
  broker.send(setup.executor(0), message);
  auto stop = stop_executor_message(setup.executor(0), "timeout of batch 66 after 10 ms");
  broker.send(setup.supervisor(), stop);

  const Received* lost = broker.take(executor_lost());
  REQUIRE_MESSAGE(lost != nullptr, setup.log());
  const auto report = lost->envelope().getExecutorLost();
  CHECK(report.getExecutorId() == setup.executor(0));
  CHECK(report.getStoppedByBroker());
  CHECK(report.getSignal() == SIGKILL);
  if (report.getRunning()) {  // it may have been stopped before it took the task up
    CHECK(report.getBatchId() == 66);
    CHECK(report.getIndex() == 9);
  }
  CHECK(eventually([&] { return process_ended(setup.executor_pid(0)); }));
  const Received* replacement = broker.take(executor_announce("test-worker/0/1"));
  REQUIRE_MESSAGE(replacement != nullptr, setup.log());
  // A stop for an executor that is not (or no longer) there changes nothing.
  auto stale = stop_executor_message(setup.executor(0), "stale");
  broker.send(setup.supervisor(), stale);
  auto next = tasks_message(67, {{0, "example.square", arguments(5)}});
  broker.send(executor_id_of(*replacement), next);
  CHECK(value_of<int>(single_result(broker, 67, setup.log())) == 25);
  CHECK(broker.count([](const Received& r) { return r.envelope().isExecutorLost(); }) == 1);
}

TEST_CASE("an executor keeps heartbeating while a task runs longer than the liveness period") {
  Setup setup(1, {"--heartbeat-ms", "100", "--liveness-ms", "500"});
  auto& broker = setup.broker();
  const auto before = broker.count(heartbeat_from(setup.executor(0)));
  auto message = tasks_message(444, {{0, "example.sleep_ms", arguments(1500)}});
  broker.send(setup.executor(0), message);
  CHECK(value_of<int>(single_result(broker, 444, setup.log())) == 1500);
  // About 15 while the task ran (one per 100 ms); a broker that hears nothing for 500 ms would
  // take the executor for dead and hand its task to another.
  CHECK(broker.count(heartbeat_from(setup.executor(0))) - before >= 5);
}

TEST_CASE("SIGTERM drains: the running task's result arrives, then bye, and the worker exits 0") {
  Setup setup(1);
  auto& broker = setup.broker();
  auto message = tasks_message(77, {{0, "example.sleep_ms", arguments(400)}});
  broker.send(setup.executor(0), message);
  REQUIRE_MESSAGE(wait_until_sleeping(setup.executor_pid(0)), setup.log());  // the task runs
  setup.worker().signal(SIGTERM);

  const Received* draining = broker.take([&](const Received& r) {
    return r.peer == setup.supervisor() && r.envelope().isAnnounce() && r.envelope().getAnnounce().getDraining();
  });
  CHECK_MESSAGE(draining != nullptr, setup.log());
  const auto result = single_result(broker, 77, setup.log());
  CHECK(value_of<int>(result) == 400);
  const Received* goodbye = broker.take(bye());
  REQUIRE_MESSAGE(goodbye != nullptr, setup.log());
  CHECK(goodbye->peer == setup.supervisor());
  // Drained executors are not "lost": nothing to requeue.
  CHECK(broker.count([](const Received& r) { return r.envelope().isExecutorLost(); }) == 0);
  const auto status = setup.worker().wait_exit();
  CHECK_MESSAGE(exited_with(status, 0), setup.log());
  CHECK(process_ended(setup.executor_pid(0)));
}

TEST_CASE("SIGTERM hands back at once the tasks not started, while the running one finishes") {
  Setup setup(1);
  auto& broker = setup.broker();
  auto message = tasks_message(78, {{0, "example.sleep_ms", arguments(1500)},
                                    {1, "example.sleep_ms", arguments(1500)},
                                    {2, "example.sleep_ms", arguments(1500)}});
  broker.send(setup.executor(0), message);
  REQUIRE_MESSAGE(wait_until_sleeping(setup.executor_pid(0)), setup.log());
  const auto signalled = Clock::now();
  setup.worker().signal(SIGTERM);

  const Received* returned = broker.take(hand_back_from(setup.executor(0)), milliseconds(1000));
  REQUIRE_MESSAGE(returned != nullptr, "no handBack within 1 s of SIGTERM; " << setup.log());
  CHECK(Clock::now() - signalled < milliseconds(1000));  // not after the running task's 1.5 s
  std::set<std::uint32_t> indexes;
  for (const auto task : returned->envelope().getHandBack().getTasks()) {
    CHECK(task.getBatchId() == 78);
    indexes.insert(task.getIndex());
  }
  CHECK(indexes == std::set<std::uint32_t>{1, 2});
  // The running one still finishes, and only it.
  const auto result = single_result(broker, 78, setup.log());
  CHECK(result.getIndex() == 0);
  CHECK(value_of<int>(result) == 1500);
  REQUIRE_MESSAGE(broker.take(bye()) != nullptr, setup.log());
  CHECK(broker.count(results_of(78)) == 1);
  CHECK_MESSAGE(exited_with(setup.worker().wait_exit(), 0), setup.log());
}

TEST_CASE("a reclaim hands back tasks not started, the last received first, and is answered even with none") {
  Setup setup(1);
  auto& broker = setup.broker();
  auto message = tasks_message(79, {{0, "example.sleep_ms", arguments(1000)},
                                    {1, "example.square", arguments(1)},
                                    {2, "example.square", arguments(2)},
                                    {3, "example.square", arguments(3)}});
  broker.send(setup.executor(0), message);
  REQUIRE_MESSAGE(wait_until_sleeping(setup.executor_pid(0)), setup.log());

  auto reclaim_two = reclaim_message(2);
  broker.send(setup.executor(0), reclaim_two);
  const Received* first = broker.take(hand_back_from(setup.executor(0)), milliseconds(800));
  REQUIRE_MESSAGE(first != nullptr, "no answer to the reclaim while the 1 s task runs; " << setup.log());
  std::vector<std::uint32_t> returned;
  for (const auto task : first->envelope().getHandBack().getTasks()) returned.push_back(task.getIndex());
  CHECK(returned == std::vector<std::uint32_t>{3, 2});

  // What it kept still runs: the sleeping task, then square(1).
  std::vector<std::uint32_t> ran;
  while (ran.size() < 2) {
    const Received* results = broker.take(results_of(79));
    REQUIRE_MESSAGE(results != nullptr, setup.log());
    for (const auto result : results->envelope().getResults()) ran.push_back(result.getIndex());
  }
  CHECK(ran == std::vector<std::uint32_t>{0, 1});

  broker.send(setup.executor(0), reclaim_two);  // nothing left to hand back: an empty answer
  const Received* empty = broker.take(hand_back_from(setup.executor(0)));
  REQUIRE_MESSAGE(empty != nullptr, setup.log());
  CHECK(empty->envelope().getHandBack().getTasks().size() == 0);
}

TEST_CASE("a drain that runs out of time stops the running task's executor and reports it lost as drained") {
  Setup setup(1, {"--drain-timeout", "0.3"});
  auto& broker = setup.broker();
  auto message = tasks_message(80, {{0, "example.sleep_ms", arguments(20000)}});
  broker.send(setup.executor(0), message);
  REQUIRE_MESSAGE(wait_until_sleeping(setup.executor_pid(0)), setup.log());
  setup.worker().signal(SIGTERM);
  const Received* lost = broker.take(executor_lost());
  REQUIRE_MESSAGE(lost != nullptr, setup.log());
  const auto report = lost->envelope().getExecutorLost();
  CHECK(report.getDrained());  // the broker runs the task again elsewhere, without counting an attempt
  CHECK(report.getRunning());
  CHECK(report.getIndex() == 0);
  CHECK_MESSAGE(exited_with(setup.worker().wait_exit(), 0), setup.log());
}

TEST_CASE("after a broker restart the worker and its executors announce themselves again") {
  // Short heartbeats so that a silent broker is noticed quickly.
  Setup setup(2, {"--heartbeat-ms", "100", "--liveness-ms", "800"});

  SUBCASE("a new broker that ignores unknown peers: the supervisor notices the silence") {
    FakeBroker& broker = setup.restart_broker();
    broker.refuse_unknown_peers = false;
    CHECK_MESSAGE(broker.take(supervisor_announce()) != nullptr, setup.log());
    for (unsigned n = 0; n < setup.processes(); ++n) {
      CHECK_MESSAGE(broker.take(executor_announce(setup.executor(n))) != nullptr, setup.log());
    }
  }
  SUBCASE("a new broker that answers unknown peers with `refused`") {
    FakeBroker& broker = setup.restart_broker();
    broker.refuse_unknown_peers = true;
    CHECK_MESSAGE(broker.take(supervisor_announce()) != nullptr, setup.log());
    for (unsigned n = 0; n < setup.processes(); ++n) {
      CHECK_MESSAGE(broker.take(executor_announce(setup.executor(n))) != nullptr, setup.log());
    }
  }
  // Whichever way it came back, the new broker is served.
  auto message = tasks_message(88, {{0, "example.square", arguments(9)}});
  setup.broker().send(setup.executor(1), message);
  CHECK(value_of<int>(single_result(setup.broker(), 88, setup.log())) == 81);
}

TEST_CASE("malformed frames sent to an executor are dropped and it keeps serving") {
  Setup setup(1);
  auto& broker = setup.broker();
  const std::string executor = setup.executor(0);
  std::mt19937 random(20261122);
  const auto random_bytes = [&](std::size_t size) {
    std::string bytes(size, '\0');
    for (auto& byte : bytes) byte = static_cast<char>(random() & 0xFF);
    return bytes;
  };
  const auto send_bytes = [&](const std::string& bytes) { broker.send_frame(executor, zmq::message_t(bytes.data(), bytes.size())); };

  send_bytes("");                    // empty
  send_bytes("abc");                 // not whole words
  send_bytes(std::string(8, '\0'));  // a segment table and nothing else
  send_bytes(random_bytes(64));
  send_bytes(random_bytes(4096));
  broker.send_multipart(executor, {"one", "two"});
  {
    wire::OutMessage other_version;
    other_version.envelope().setVersion(wire::PROTOCOL_VERSION + 1);
    other_version.envelope().initTasks().setBatchId(1);
    broker.send(executor, other_version);
  }
  {
    wire::OutMessage results;  // executors do not accept results
    results.envelope().initResults(1)[0].setBatchId(2);
    broker.send(executor, results);
  }
  // Valid tasks frames with random bytes overwritten: unreadable pointers, absurd list sizes,
  // garbage names. Whatever still parses is answered (batch ids other than 99).
  // (Only concat: a flipped argument of square could overflow x * x, which UBSan rightly stops.)
  auto valid = tasks_message(99, {{0, "example.concat", arguments(std::string("-"), std::vector<std::string>{"x", "y"})},
                                  {1, "example.concat", arguments(std::string("+"), std::vector<std::string>{"z"})}});
  const zmq::message_t pristine = valid.frame();
  for (int i = 0; i < 200; ++i) {
    std::string bytes(static_cast<const char*>(pristine.data()), pristine.size());
    for (int flips = 0; flips < 3; ++flips) bytes[random() % bytes.size()] = static_cast<char>(random() & 0xFF);
    if (bytes == std::string(static_cast<const char*>(pristine.data()), pristine.size())) continue;
    send_bytes(bytes);
  }
  // Still alive and serving.
  auto good = tasks_message(1000, {{0, "example.square", arguments(11)}});
  broker.send(executor, good);
  const Received* received = broker.take(results_of(1000));
  REQUIRE_MESSAGE(received != nullptr, setup.log());
  CHECK(value_of<int>(received->envelope().getResults()[0]) == 121);
  CHECK(broker.count([](const Received& r) { return r.envelope().isExecutorLost(); }) == 0);
  CHECK_FALSE(process_ended(setup.executor_pid(0)));
}

TEST_CASE("a worker started without --allow-shell refuses shell tasks with kind refused") {
  Setup setup(1);
  wire::OutMessage message;
  auto window = message.envelope().initTasks();
  window.setBatchId(123);
  window.setTotal(1);
  auto task = window.initTasks(1)[0];
  task.setBatchId(123);
  task.setName("fanout.shell");
  task.initArgs().initTuple(0);
  auto shell = task.initShell();
  shell.setUseShell(true);
  shell.setScript("touch /tmp/fanout-must-not-exist");
  setup.broker().send(setup.executor(0), message);
  const auto result = single_result(setup.broker(), 123, setup.log());
  REQUIRE(result.isError());
  CHECK(result.getError().getKind() == wire::ErrorKind::REFUSED);
  CHECK(std::string(result.getError().getMessage()) ==
        "this worker does not run shell commands: it was started without --allow-shell");
}

TEST_CASE("executors die with their supervisor") {
  Setup setup(2);
  setup.worker().signal(SIGKILL);
  CHECK(setup.worker().wait_exit().has_value());
  for (unsigned n = 0; n < setup.processes(); ++n) {
    const pid_t executor = setup.executor_pid(n);
    CHECK_MESSAGE(eventually([&] { return process_ended(executor); }), "executor pid " << executor);
  }
}

TEST_CASE("--load of a missing library exits with code 3 and names the library") {
  TempDir directory;
  Child worker = start_worker(
      {"--connect", "ipc://" + (directory.path() / "nobody").string(), "--load", "/nonexistent/libno-such-tasks.so"});
  const auto status = worker.wait_exit();
  CHECK_MESSAGE(exited_with(status, 3), worker.out());
  const std::string output = worker.out();
  CHECK(output.find("cannot load task library '/nonexistent/libno-such-tasks.so'") != std::string::npos);
  CHECK(output.find("No such file or directory") != std::string::npos);  // dlerror()
}

TEST_CASE("the command line: --help exits 0 with examples, bad usage exits 2") {
  {
    Child help = start_worker({"--help"});
    CHECK(exited_with(help.wait_exit(), 0));
    CHECK(help.out().find("Examples:") != std::string::npos);
    CHECK(help.out().find("FANOUT_BROKER") != std::string::npos);
  }
  {
    const ScopedEnv no_broker("FANOUT_BROKER", nullptr);
    Child missing = start_worker({});  // no --connect, no FANOUT_BROKER
    CHECK(exited_with(missing.wait_exit(), 2));
  }
  {
    Child bad = start_worker({"--connect", "tcp://127.0.0.1:5555", "--processes", "many"});
    CHECK(exited_with(bad.wait_exit(), 2));
  }
  {
    Child inproc = start_worker({"--connect", "inproc://nope"});
    CHECK(exited_with(inproc.wait_exit(), 2));
    CHECK(inproc.out().find("inproc://nope") != std::string::npos);
  }
}

// Quick tasks of one name are timed in groups (one clock reading per group). A name known to be
// quick whose tasks turn slow must not hold results for the rest of a group: the first slow
// task's result leaves before the next task starts, as the rule for tasks not known to be quick
// says (the group ends at the executor's next tick, and the slow run is recorded then).
TEST_CASE("the result of a quick name's task that turned slow leaves before the rest of its group runs") {
  Setup setup(1);
  auto& broker = setup.broker();
  std::vector<TaskSpec> warm;
  for (std::uint32_t i = 0; i < 64; ++i) warm.push_back({i, "example.sleep_ms", arguments(0)});
  auto warm_up = tasks_message(60, warm);
  broker.send(setup.executor(0), warm_up);
  for (std::size_t answered = 0; answered < warm.size();) {
    const Received* received = broker.take(results_of(60));
    REQUIRE_MESSAGE(received != nullptr, setup.log());
    answered += received->envelope().getResults().size();
  }
  auto message = tasks_message(61, {{0, "example.sleep_ms", arguments(400)}, {1, "example.sleep_ms", arguments(400)},
                                    {2, "example.sleep_ms", arguments(400)}, {3, "example.sleep_ms", arguments(400)}});
  const auto sent = Clock::now();
  broker.send(setup.executor(0), message);
  const Received* first = broker.take(results_of(61), milliseconds(5000));
  REQUIRE_MESSAGE(first != nullptr, setup.log());
  const auto waited = Clock::now() - sent;
  MESSAGE("first results message after " << std::chrono::duration_cast<milliseconds>(waited).count() << " ms with "
                                          << first->envelope().getResults().size() << " results");
  CHECK(first->envelope().getResults()[0].getIndex() == 0);
  CHECK(waited < milliseconds(1000));  // task 0 ended at ~400 ms
}

// A list claims its count in one word: a unit's list of zero-sized elements could claim millions
// of runs and a results message of gigabytes from a frame of a few hundred KiB.
TEST_CASE("a unit whose argument list is a list of zero-sized elements is refused, not run") {
  Setup setup(1);
  // A claim above the most slots a unit may have, and one below it that only the list's bytes
  // give away.
  std::uint64_t batch = 46;
  for (const std::uint32_t claimed : {1u << 18, 1000u}) {
    CAPTURE(claimed);
    const auto void_list = [claimed](wire::Value::Builder out) {
      out.initList(0);  // the union says `list`
      capnp::toAny(out).getPointerSection()[0].initAsAnyList(capnp::ElementSize::VOID, claimed);
    };
    auto message = tasks_message(batch, {{0, "example.square", void_list, 0, claimed}});
    // The traversal limit is 8 words per word of the frame: a key nobody reads pays for the claim.
    message.envelope().getTasks().getTasks()[0].setKey(std::string(2 * claimed + 8192, 'k'));
    CHECK(message.builder().sizeInWords() * sizeof(capnp::word) < claimed * 3 + 16384);
    const auto started = Clock::now();
    setup.broker().send(setup.executor(0), message);
    const auto result = single_result(setup.broker(), batch++, setup.log());
    REQUIRE(result.isError());
    CHECK(result.getError().getKind() == wire::ErrorKind::BAD_MESSAGE);
    CHECK(Clock::now() - started < milliseconds(2000));  // refused, not run 262,144 times (8.7 s)
  }
}
