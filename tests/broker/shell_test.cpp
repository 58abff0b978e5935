// Shell commands (fanout::Process pools on remote workers) and per-batch running limits, as the
// broker routes them: one command per idle executor, maxRunning per batch, output forwarded live.
#include "broker_harness.hpp"

using namespace broker_test;

namespace {

constexpr const char* kShell = "fanout.shell";

zmq::message_t window_with_limit(std::uint64_t batch, std::uint32_t total, const std::string& name,
                                 std::uint32_t max_running) {
  std::vector<std::pair<std::uint32_t, std::string>> slots;
  for (std::uint32_t i = 0; i < total; ++i) slots.emplace_back(i, name);
  wire::OutMessage out;
  auto window = out.envelope().initTasks();
  fill_tasks(window, batch, total, slots, 0);
  window.setMaxRunning(max_running);
  return out.frame();
}

zmq::message_t output_chunk(std::uint64_t batch, std::uint32_t index, const std::string& text) {
  wire::OutMessage out;
  auto chunk = out.envelope().initOutput();
  chunk.setBatchId(batch);
  chunk.setIndex(index);
  chunk.setStream(wire::OutputChunk::Stream::OUT);
  chunk.setData(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(text.data()), text.size()));
  return out.frame();
}

std::size_t held_by_all(std::vector<std::unique_ptr<FakeExecutor>>& executors) {
  std::size_t held = 0;
  for (auto& executor : executors) held += executor->held().size();
  return held;
}

std::vector<std::unique_ptr<FakeExecutor>> start_executors(zmq::context_t& context, const std::string& endpoint, int count,
                                                           std::vector<std::string> names) {
  std::vector<std::unique_ptr<FakeExecutor>> executors;
  for (int n = 0; n < count; ++n) {
    executors.push_back(std::make_unique<FakeExecutor>(
        context, endpoint,
        ExecutorOptions{.id = "w1/" + std::to_string(n) + "/0", .worker = "w1", .names = names, .slots = 8, .answer = false}));
  }
  return executors;
}

}  // namespace

TEST_CASE("a batch's maxRunning caps how many of its tasks are at executors at once") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 3);
  auto executors = start_executors(context, broker.endpoint(), 3, {"square"});
  REQUIRE(wait_executors(context, broker.endpoint(), 3));

  FakeClient client(context, broker.endpoint());
  client.send(window_with_limit(11, 7, "square", 2));
  REQUIRE(fanout_test::eventually([&] { return held_by_all(executors) == 2; }));
  std::size_t answered = 0;
  while (answered < 7) {
    // Never more than two out at once, whatever the executors' credit.
    REQUIRE(fanout_test::eventually([&] { return held_by_all(executors) == std::min<std::size_t>(2, 7 - answered); }));
    CHECK(held_by_all(executors) <= 2);
    for (auto& executor : executors) {
      if (!executor->held().empty()) {
        executor->answer(1);
        ++answered;
        break;
      }
    }
    REQUIRE(client.wait_settled(11, answered));
  }
  CHECK(client.outcomes(11).size() == 7);
}

TEST_CASE("a shell command goes only to an executor with nothing in flight, one at a time") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 2);
  auto executors = start_executors(context, broker.endpoint(), 2, {kShell});
  REQUIRE(wait_executors(context, broker.endpoint(), 2));

  FakeClient client(context, broker.endpoint());
  client.send(tasks_window(12, 5, 0, 5, kShell));
  REQUIRE(executors[0]->wait_held(1));
  REQUIRE(executors[1]->wait_held(1));
  // Each executor has credit 8, yet holds one command: the rest wait at the broker.
  CHECK(executors[0]->held().size() == 1);
  CHECK(executors[1]->held().size() == 1);
  executors[0]->answer(1);
  REQUIRE(client.wait_settled(12, 1));
  REQUIRE(executors[0]->wait_tasks(2));
  CHECK(executors[0]->held().size() == 1);
  CHECK(executors[1]->held().size() == 1);
}

TEST_CASE("shell commands fail as refused, naming --allow-shell, when no worker runs them") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
  auto executors = start_executors(context, broker.endpoint(), 1, {"square"});
  REQUIRE(wait_executors(context, broker.endpoint(), 1));

  FakeClient client(context, broker.endpoint());
  client.send(tasks_window(13, 2, 0, 2, kShell));
  REQUIRE(client.wait_settled(13, 2));
  for (const auto& [index, outcome] : client.outcomes(13)) {
    CHECK_FALSE(outcome.ok);
    CHECK(outcome.kind == wire::ErrorKind::REFUSED);
    CHECK(contains(outcome.message, "--allow-shell"));
  }
  CHECK(executors[0]->stats().tasks == 0);
}

TEST_CASE("output of a running command reaches its client; output for a task not in flight is dropped") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
  auto executors = start_executors(context, broker.endpoint(), 1, {kShell});
  REQUIRE(wait_executors(context, broker.endpoint(), 1));

  FakeClient client(context, broker.endpoint());
  client.send(tasks_window(14, 2, 0, 2, kShell));
  REQUIRE(executors[0]->wait_held(1));
  const std::uint32_t running = executors[0]->held()[0].index;
  executors[0]->peer().send(output_chunk(14, running, "first line\n"));
  executors[0]->peer().send(output_chunk(14, running == 0 ? 1 : 0, "not running: dropped\n"));
  executors[0]->peer().send(output_chunk(99, running, "unknown batch: dropped\n"));
  executors[0]->peer().send(output_chunk(14, running, "second line\n"));
  REQUIRE(client.wait_output(14, 2));
  const auto chunks = client.output(14);
  REQUIRE(chunks.size() == 2);
  CHECK(chunks[0] == std::make_pair(running, std::string("first line\n")));
  CHECK(chunks[1] == std::make_pair(running, std::string("second line\n")));
  CHECK(client.output(99).empty());
}

TEST_CASE("a client that leaves has its running shell commands stopped, not left to run") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 2);
  auto executors = start_executors(context, broker.endpoint(), 2, {kShell, "square"});
  REQUIRE(wait_executors(context, broker.endpoint(), 2));

  // A registered task of a client that leaves runs to its end; a shell command is stopped.
  FakeClient tasks(context, broker.endpoint());
  tasks.send(tasks_window(16, 1, 0, 1, "square"));
  REQUIRE(fanout_test::eventually([&] { return held_by_all(executors) == 1; }));
  tasks.send(bye_message());
  FakeClient commands(context, broker.endpoint());
  commands.send(tasks_window(17, 1, 0, 1, kShell));
  REQUIRE(fanout_test::eventually([&] { return held_by_all(executors) == 2; }));
  commands.send(bye_message());
  const Received stop = supervisor->take(Kind::STOP_EXECUTOR);
  REQUIRE(stop);
  std::string running_command;
  for (auto& executor : executors) {
    for (const auto& task : executor->held()) {
      if (task.batch == 17) running_command = executor->id();
    }
  }
  CHECK(std::string(stop->envelope().getStopExecutor().getExecutorId().cStr()) == running_command);
  CHECK(contains(stop->envelope().getStopExecutor().getReason().cStr(), "client left"));
  CHECK_FALSE(supervisor->take(Kind::STOP_EXECUTOR, std::chrono::milliseconds(300)));  // only that one
}
