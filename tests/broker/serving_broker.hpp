// serving_broker.hpp: a broker that serves while a test attacks it: one worker of two executors
// (answering on their own) and one well-behaved client, which check_still_serving() uses to show
// that the attack changed nothing for others.
#pragma once

#include <cstdint>
#include <memory>

#include "broker_harness.hpp"

namespace broker_test {

struct ServingBroker {
  // `record_first`: the first executor keeps what it receives, for tests that look at it.
  explicit ServingBroker(fanout::broker::Config config, bool record_first = false)
      : broker(std::move(config), context),
        supervisor(make_supervisor(context, broker.endpoint(), "w1", 2)),
        e1(context, broker.endpoint(), ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 2, .record = record_first}),
        e2(context, broker.endpoint(), ExecutorOptions{.id = "w1/1/0", .worker = "w1", .slots = 2}),
        client(context, broker.endpoint()) {
    REQUIRE(wait_executors(context, broker.endpoint(), 2));
  }

  // A batch of 5 from the well-behaved client completes with the right values.
  void check_still_serving() {
    REQUIRE_MESSAGE(broker.died().empty(), "the broker stopped: " << broker.died());
    const std::uint64_t batch = next_batch++;
    client.send(tasks_window(batch, 5, 0, 5));
    REQUIRE(client.wait_settled(batch, 5));
    for (const auto& [index, outcome] : client.outcomes(batch)) {
      CHECK(outcome.ok);
      CHECK(outcome.value == std::int64_t{index} * index);
    }
    CHECK(broker.died().empty());
  }

  zmq::context_t context;
  RunningBroker broker;
  std::unique_ptr<Peer> supervisor;
  FakeExecutor e1;
  FakeExecutor e2;
  FakeClient client;
  std::uint64_t next_batch = 1000;
};

}  // namespace broker_test
