// Results the broker does not check whole: it reads a few fields of each on arrival and forwards
// the frame unread, and the client reads each result under a guard of its own. A hostile (or
// broken) executor's malformed result must fail its own slot and nothing else: never stop the
// broker, never leave another slot of the message unsettled, never hang the caller.
#include "broker_harness.hpp"

#include <capnp/any.h>
#include <capnp/schema.h>

#include <cstring>
#include <future>

#include <fanout/fanout.hpp>

#include "test_support.hpp"

using namespace broker_test;

namespace {

const fanout::Task square{"square", [](std::int64_t x) { return x * x; }};

// Result `which` of `out`'s results gets a pointer, in its value/error slot, to a struct a million
// words past the end of the message: every read of that value (or error) throws.
void point_out_of_bounds(wire::OutMessage& out, unsigned which) {
  const auto slot = capnp::Schema::from<wire::Result>().getFieldByName("value").getProto().getSlot().getOffset();
  capnp::AnyStruct::Builder any(out.envelope().getResults()[which]);
  kj::ArrayPtr<kj::byte> data = any.getDataSection();
  // A struct pointer (kind 0) with an offset of 2^20 words and one data word.
  const std::uint64_t pointer = (std::uint64_t{1} << 32) | (std::uint64_t{1} << 20 << 2);
  std::memcpy(data.end() + slot * sizeof(capnp::word), &pointer, sizeof(pointer));
}

// The results of `held` (argument * argument), as an executor sends them; result `bad` is an
// error (with `error`) or a value whose pointer leads out of the message.
zmq::message_t results_with_one_unreadable(const std::vector<HeldTask>& held, unsigned bad, bool error) {
  wire::OutMessage out;
  auto list = out.envelope().initResults(static_cast<unsigned>(held.size()));
  for (unsigned i = 0; i < held.size(); ++i) {
    auto result = list[i];
    result.setBatchId(held[i].batch);
    result.setIndex(held[i].index);
    result.setRanOn("hostile executor");
    if (i == bad && error) {
      result.initError().setKind(wire::ErrorKind::EXCEPTION);
    } else {
      result.initValue().setInt(held[i].argument * held[i].argument);
    }
  }
  point_out_of_bounds(out, bad);
  return out.frame();
}

}  // namespace

TEST_CASE("results whose error cannot be read are refused with nothing changed, and their good answer settles every slot") {
  zmq::context_t context;
  RunningBroker broker(quick_task_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 1);
  FakeExecutor executor(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 4, .answer = false});
  REQUIRE(wait_executors(context, endpoint, 1));
  FakeClient client(context, endpoint);

  client.send(tasks_window(5, 3, 0, 3));
  REQUIRE(executor.wait_held(3));
  // The first result is fine, the second's error leads out of the message: on_results reads
  // every error's kind before it settles anything, so the first is not settled and lost either.
  executor.peer().send(results_with_one_unreadable(executor.held(), 1, /*error=*/true));
  REQUIRE(fanout_test::eventually([&] { return broker.counters().dropped_messages == 1; }, kSoon));
  CHECK(client.settled(5) == 0);

  executor.answer(3);
  REQUIRE(client.wait_settled(5, 3));
  for (const auto& [index, outcome] : client.outcomes(5)) {
    CHECK(outcome.ok);
    CHECK(outcome.value == std::int64_t{index} * index);
  }
  CHECK(broker.counters().duplicate_results == 0);
  CHECK(broker.died().empty());
}

TEST_CASE("a result whose value cannot be read fails its slot only, in the process driver's caller") {
  zmq::context_t context;
  RunningBroker broker(quick_task_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 1);
  FakeExecutor executor(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 4, .answer = false});
  REQUIRE(wait_executors(context, endpoint, 1));

  // The real client of the process driver, in remote mode against this broker.
  const fanout_test::ScopedEnv remote("FANOUT_BROKER", endpoint.c_str());
  std::vector<fanout::Call<std::int64_t>> calls{square(0), square(1), square(2)};
  auto settled = std::async(std::launch::async, [&] {
    return fanout::Concurrency::driver("process").deadline(std::chrono::seconds(20)).settle(calls);
  });
  REQUIRE(executor.wait_held(3, fanout_test::kPatience));
  executor.peer().send(results_with_one_unreadable(executor.held(), 1, /*error=*/false));

  REQUIRE(settled.wait_for(fanout_test::kPatience) == std::future_status::ready);
  const auto outcomes = settled.get();
  REQUIRE(outcomes.size() == 3);
  CHECK(outcomes[0].ok());
  CHECK(outcomes[2].ok());
  if (outcomes[0].ok()) CHECK(outcomes[0].value() == 0);
  if (outcomes[2].ok()) CHECK(outcomes[2].value() == 4);
  REQUIRE_FALSE(outcomes[1].ok());
  CHECK(outcomes[1].error().kind() == fanout::ErrorKind::bad_message);
  CHECK(outcomes[1].error().remote_message().find("could not be read") != std::string::npos);
  // The broker forwarded the frame as it came and serves on.
  CHECK(broker.counters().results_forwarded == 3);
  CHECK(broker.died().empty());
}

namespace {

// A unit (fanout.capnp, Task.slots) of `slots` square calls of 1..slots, as a client sends it.
zmq::message_t unit_window(std::uint64_t batch, std::uint32_t slots) {
  wire::OutMessage out;
  fanout_test::fill_tasks(out.envelope().initTasks(), batch, 1,
                          {{0, "square",
                            [slots](wire::Value::Builder args) {
                              auto list = args.initList(slots);
                              for (unsigned i = 0; i < slots; ++i) {
                                fanout::encode(wire::wrap(list[i]), std::make_tuple(std::int64_t{i + 1}));
                              }
                            },
                            0, slots}});
  return out.frame();
}

std::uint64_t completed(const RunningBroker& broker, const std::string& outcome) {
  for (const auto& [label, count] : broker.metrics()->completed) {
    if (label == outcome) return count;
  }
  return 0;
}

}  // namespace

TEST_CASE("the broker's metrics count a unit's slots one by one, its failed slots by kind") {
  zmq::context_t context;
  RunningBroker broker(quick_task_config(), context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 1);
  FakeExecutor executor(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 4, .answer = false});
  REQUIRE(wait_executors(context, endpoint, 1));
  FakeClient client(context, endpoint);

  client.send(unit_window(7, 5));
  REQUIRE(executor.wait_held(1));
  CHECK(broker.counters().tasks_received == 5);
  // The executor's answer: slot 2 threw, slot 4 was not run (its unit's values filled half a
  // message; the client sends it again alone, so it is not settled here).
  wire::OutMessage out;
  auto result = out.envelope().initResults(1)[0];
  result.setBatchId(7);
  result.setIndex(0);
  result.setRanOn("fake executor");
  auto values = result.initValue().initList(5);
  for (unsigned i = 0; i < 5; ++i) values[i].setInt(std::int64_t{i + 1} * (i + 1));
  auto errors = result.initSlotErrors(2);
  errors[0].setSlot(2);
  errors[0].initError().setKind(wire::ErrorKind::EXCEPTION);
  errors[1].setSlot(4);
  errors[1].initError().setKind(wire::ErrorKind::REFUSED);
  executor.peer().send(out.frame());
  REQUIRE(client.wait_settled(7, 1));
  CHECK(fanout_test::eventually([&] { return completed(broker, "success") == 3; }, kSoon));
  CHECK(completed(broker, "exception") == 1);
  CHECK(completed(broker, "refused") == 0);
}

TEST_CASE("a window holding a unit of more slots than any client sends is refused whole") {
  zmq::context_t context;
  RunningBroker broker(quick_task_config(), context);
  FakeClient client(context, broker.endpoint());
  client.send(unit_window(8, 1025));
  const auto ack = client.wait_ack(8);
  REQUIRE(ack.has_value());
  CHECK(ack->find("refused: a unit of 1025 slots (at most 1024)") == 0);
  CHECK(broker.counters().tasks_received == 0);
}
