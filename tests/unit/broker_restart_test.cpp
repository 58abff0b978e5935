// A broker that restarted answers every message a client sent while it was away ("I do not know
// you"), several of them when the client heartbeated meanwhile. The process driver's client sends
// its batch again once per restart, not once per answer: a second copy is more tasks than the batch
// holds, and the broker refuses the whole batch. Here a fake broker on a real ZeroMQ socket plays
// the restarted one.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include <fanout/fanout.hpp>
#include <zmq.hpp>

#include "fake_router.hpp"
#include "test_support.hpp"
#include "transport.hpp"

using namespace std::chrono_literals;

namespace {

const fanout::Task restart_twice{"restart.twice", [](int x) { return 2 * x; }};

constexpr std::uint32_t kTasks = 4;

// Takes the batch, then answers as a restarted broker would the three heartbeats the client sent
// while it was away: three refusals, the last two arriving once the client is sending the batch
// again. Counts the tasks sent again; once they have all come and nothing more for a while,
// answers them.
class RestartedBroker {
 public:
  RestartedBroker()
      : router_([this](const std::string& identity, zmq::message_t& frame) { on_message(identity, frame); },
                [this] { on_idle(); }) {}

  const std::string& endpoint() const { return router_.endpoint(); }
  std::uint32_t sent_again() const { return sent_again_; }

 private:
  void on_message(const std::string& identity, zmq::message_t& frame) {
    identity_ = identity;
    auto message = fanout::wire::InMessage::parse(std::move(frame));
    if (!message || !message->envelope().isTasks()) return;
    const auto window = message->envelope().getTasks();
    batch_ = window.getBatchId();
    if (first_ < kTasks) {
      first_ += window.getTasks().size();
      if (first_ >= kTasks) send(refusal());
    } else {
      // The other two answers reach the client after it has begun sending the batch again: on
      // the wire they were behind the first, and the client acts on the first at once.
      if (sent_again_ == 0) {
        for (int n = 0; n < 2; ++n) send(refusal());
      }
      sent_again_ += window.getTasks().size();
      quiet_since_ = std::chrono::steady_clock::now();
    }
  }

  void on_idle() {
    if (!answered_ && sent_again_ >= kTasks && std::chrono::steady_clock::now() - quiet_since_ > 300ms) {
      send(results());
      answered_ = true;
    }
  }

  zmq::message_t refusal() {
    fanout::wire::OutMessage out;
    auto error = out.envelope().initError();
    error.setKind(fanout::wire::ErrorKind::REFUSED);
    error.setMessage("unknown peer: announce first (the broker may have restarted)");
    return out.frame();
  }

  zmq::message_t results() {
    fanout::wire::OutMessage out;
    auto list = out.envelope().initResults(kTasks);
    for (std::uint32_t i = 0; i < kTasks; ++i) {
      list[i].setBatchId(batch_);
      list[i].setIndex(i);
      list[i].initValue().setInt(2 * static_cast<std::int64_t>(i));
      list[i].setRanOn("the restarted broker's executor");
    }
    return out.frame();
  }

  void send(zmq::message_t frame) { router_.send(identity_, std::move(frame)); }

  std::string identity_;
  std::uint64_t batch_ = 0;
  std::uint32_t first_ = 0;  // tasks of the first sending
  std::chrono::steady_clock::time_point quiet_since_ = std::chrono::steady_clock::now();
  std::atomic<std::uint32_t> sent_again_{0};
  bool answered_ = false;
  fanout_test::FakeRouter router_;  // last: serves once everything above exists
};

}  // namespace

TEST_CASE("a client sends its batch again once when a restarted broker refuses several of its messages") {
  RestartedBroker broker;
  const fanout_test::ScopedEnv remote("FANOUT_BROKER", broker.endpoint().c_str());
  std::vector<fanout::Call<int>> calls;
  for (std::uint32_t i = 0; i < kTasks; ++i) calls.push_back(restart_twice(static_cast<int>(i)));
  const auto results = fanout::Concurrency::driver("process").deadline(20s).run(calls);
  CHECK(results == std::vector<int>{0, 2, 4, 6});
  CHECK(broker.sent_again() == kTasks);  // once, not once per refusal
}
