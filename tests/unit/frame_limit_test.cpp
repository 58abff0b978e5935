// The process driver's windows under a lowered frame limit. FANOUT_MAX_FRAME_BYTES is read once
// per process, so this test is a program of its own that sets it before anything reads it. A
// fake broker (tests/support/fake_router.hpp) records the largest window it receives.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include <fanout/fanout.hpp>
#include <zmq.hpp>

#include "fake_router.hpp"
#include "test_support.hpp"
#include "transport.hpp"

using namespace std::chrono_literals;

namespace {

constexpr std::size_t kFrameLimit = std::size_t{1} << 20;
const fanout_test::ScopedEnv frame_limit("FANOUT_MAX_FRAME_BYTES", "1M");  // before main(): before any read

const fanout::Task sized{"frame.size", [](fanout::Bytes data) { return data.size(); }};

// Answers every task with the size of its bytes argument.
class FakeBroker {
 public:
  FakeBroker()
      : router_([this](const std::string& identity, zmq::message_t& frame) {
          largest_ = std::max<std::size_t>(largest_, frame.size());
          auto message = fanout::wire::InMessage::parse(std::move(frame));
          if (!message || !message->envelope().isTasks()) return;
          ++windows_;
          const auto tasks = message->envelope().getTasks().getTasks();
          fanout::wire::OutMessage out;
          auto results = out.envelope().initResults(tasks.size());
          for (unsigned i = 0; i < tasks.size(); ++i) {
            results[i].setBatchId(tasks[i].getBatchId());
            results[i].setIndex(tasks[i].getIndex());
            results[i].initValue().setUint(tasks[i].getArgs().getTuple()[0].getBytes().size());
          }
          router_.send(identity, out.frame());
        }) {}

  const std::string& endpoint() const { return router_.endpoint(); }
  std::size_t largest() const { return largest_; }
  std::size_t windows() const { return windows_; }

 private:
  std::atomic<std::size_t> largest_{0};
  std::atomic<std::size_t> windows_{0};
  fanout_test::FakeRouter router_;  // last: serves once everything above exists
};

}  // namespace

TEST_CASE("under a frame limit of 1 MiB, 200 KiB arguments travel in windows within it, and every slot runs") {
  FakeBroker broker;
  const fanout_test::ScopedEnv remote("FANOUT_BROKER", broker.endpoint().c_str());
  constexpr std::size_t kBytes = 200 << 10;
  std::vector<fanout::Call<std::size_t>> calls;
  for (int i = 0; i < 20; ++i) calls.push_back(sized(fanout::Bytes(kBytes, std::byte{5})));
  CHECK(fanout::Concurrency::driver("process").deadline(20s).run(calls) == std::vector<std::size_t>(20, kBytes));
  CHECK(broker.largest() <= kFrameLimit);
  CHECK(broker.windows() >= 4);  // 4 MB of arguments in windows of at most half a MiB
}
