// Flow control: a batch far larger than what may be in flight streams through the broker in
// windows, with memory bounded by the window, and every result arrives once and right.
#include "broker_harness.hpp"

#include <fstream>

using namespace broker_test;

namespace {

// Resident set size of this process (broker, fake peers and test together), in MiB.
double rss_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0;
  long resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

struct StreamPlan {
  std::uint32_t total;
  std::uint32_t frame_tasks;  // tasks per window message (the process driver sends 128)
  std::uint32_t in_flight;    // most tasks sent and not yet answered (the process driver: 16,384)
};

// A client that streams one batch: it sends windows while fewer than `in_flight` tasks are out,
// checks every result as it arrives, and never keeps more than a bitmap of what it has seen.
class StreamingClient {
 public:
  StreamingClient(zmq::context_t& context, const std::string& endpoint, StreamPlan plan, std::uint64_t batch)
      : plan_(plan),
        batch_(batch),
        seen_(plan.total, false),
        peer_(context, endpoint, PeerOptions{.record = false}, [this](Peer&, wire::InMessage& message) { on_message(message); },
              [this](Peer& peer) { top_up(peer); }) {}

  bool wait_done(std::chrono::milliseconds limit) {
    return peer_.wait([&] { return settled_ >= plan_.total; }, limit);
  }
  std::uint32_t settled() {
    std::lock_guard lock(peer_.mutex());
    return settled_;
  }
  std::uint32_t wrong() {
    std::lock_guard lock(peer_.mutex());
    return wrong_;
  }
  std::uint32_t twice() {
    std::lock_guard lock(peer_.mutex());
    return twice_;
  }
  std::uint32_t most_in_flight() {
    std::lock_guard lock(peer_.mutex());
    return most_in_flight_;
  }
  Clock::time_point started() {
    std::lock_guard lock(peer_.mutex());
    return started_;
  }

 private:
  void top_up(Peer& peer) {
    std::uint32_t next = 0;
    std::uint32_t settled = 0;
    {
      std::lock_guard lock(peer_.mutex());
      if (next_ == 0) started_ = Clock::now();
      next = next_;
      settled = settled_;
    }
    while (next < plan_.total && next - settled + plan_.frame_tasks <= plan_.in_flight) {
      const std::uint32_t count = std::min(plan_.frame_tasks, plan_.total - next);
      peer.send_now(tasks_window(batch_, plan_.total, next, count));
      next += count;
    }
    std::lock_guard lock(peer_.mutex());
    next_ = next;
    most_in_flight_ = std::max(most_in_flight_, next_ - settled_);
  }

  void on_message(wire::InMessage& message) {
    const auto envelope = message.envelope();
    if (!envelope.isResults()) return;
    std::lock_guard lock(peer_.mutex());
    for (const auto result : envelope.getResults()) {
      const std::uint32_t index = result.getIndex();
      if (result.getBatchId() != batch_ || index >= plan_.total || !result.isValue() ||
          result.getValue().getInt() != std::int64_t{index} * index) {
        ++wrong_;
        continue;
      }
      if (seen_[index]) {
        ++twice_;
        continue;
      }
      seen_[index] = true;
      ++settled_;
    }
  }

  const StreamPlan plan_;
  const std::uint64_t batch_;
  // Guarded by peer_.mutex():
  std::vector<bool> seen_;
  std::uint32_t next_ = 0;
  std::uint32_t settled_ = 0;
  std::uint32_t wrong_ = 0;
  std::uint32_t twice_ = 0;
  std::uint32_t most_in_flight_ = 0;
  Clock::time_point started_;
  Peer peer_;  // last
};

void stream(const StreamPlan& plan, std::uint32_t slots, std::size_t flush_every) {
  zmq::context_t context;
  auto config = test_config();
  config.endpoints = {"inproc://" + unique_name("streaming")};
  RunningBroker broker(config, context);
  const auto& endpoint = broker.endpoint();
  auto supervisor = make_supervisor(context, endpoint, "w1", 2);
  FakeExecutor first(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = slots, .flush_every = flush_every});
  FakeExecutor second(context, endpoint, ExecutorOptions{.id = "w1/1/0", .worker = "w1", .slots = slots, .flush_every = flush_every});
  REQUIRE(wait_executors(context, endpoint, 2));

  const double rss_before = rss_mib();
  const auto cpu_before = broker.cpu_time();
  StreamingClient client(context, endpoint, plan, 42);
  REQUIRE(client.wait_done(std::chrono::milliseconds(std::chrono::minutes(4))));
  const auto elapsed = std::chrono::duration<double>(Clock::now() - client.started()).count();
  const double broker_cpu = (broker.cpu_time() - cpu_before).count();
  const double rss_after = rss_mib();
  MESSAGE(plan.total << " tasks in windows of " << plan.frame_tasks << " (at most " << plan.in_flight
                     << " in flight), 2 executors of " << slots << " slots answering at most "
                     << (flush_every == 0 ? std::string("all") : std::to_string(flush_every)) << " per message: "
                     << elapsed << " s, " << static_cast<long>(plan.total / elapsed) << " tasks/s end to end; broker thread "
                     << broker_cpu << " s CPU (" << static_cast<long>(plan.total / broker_cpu)
                     << " tasks per broker CPU second); RSS " << rss_before << " -> " << rss_after << " MiB");

  CHECK(client.wrong() == 0);
  CHECK(client.twice() == 0);
  CHECK(client.most_in_flight() <= plan.in_flight);
  const auto& counters = broker.counters();
  CHECK(counters.tasks_received == plan.total);
  CHECK(counters.tasks_dispatched == plan.total);
  CHECK(counters.results_forwarded == plan.total);
  CHECK(counters.duplicate_results == 0);
  CHECK(counters.dropped_messages == 0);
  // Bounded by the window, not the batch: the whole million costs less than a few windows' worth.
  // (Not under AddressSanitizer, which keeps freed memory in quarantine on purpose.)
#ifndef FANOUT_TEST_SANITIZED
  CHECK(rss_after - rss_before < 64.0);
#endif
  // The finished batch is forgotten.
  const auto status = query_status(context, endpoint);
  REQUIRE(status);
  CHECK(status->queued == 0);
  CHECK(status->running == 0);
  CHECK(broker.died().empty());
}

#ifdef FANOUT_TEST_SANITIZED
constexpr std::uint32_t kMillion = 200'000;  // sanitizers make every step ~10x slower
#else
constexpr std::uint32_t kMillion = 1'000'000;
#endif

}  // namespace

TEST_CASE("a million-task batch streams through the broker in windows with bounded memory") {
  // As the process driver sends it: frames of 128 tasks, at most 16,384 in flight; executors
  // answer in messages of at most 128 results, as the real executor flushes.
  stream(StreamPlan{kMillion, 128, 16'384}, 1024, 128);
}

TEST_CASE("a million-task batch streams through the broker in large windows") {
  stream(StreamPlan{kMillion, 4096, 16'384}, 4096, 0);
}
