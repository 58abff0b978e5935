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
#include <thread>
#include <vector>

#include <fanout/fanout.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

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
  RestartedBroker() : router_(context_, zmq::socket_type::router) {
    fanout::wire::configure_socket(router_);
    router_.bind("tcp://127.0.0.1:*");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] { serve(); });
  }
  ~RestartedBroker() {
    stop_ = true;
    thread_.join();
  }
  RestartedBroker(const RestartedBroker&) = delete;
  RestartedBroker& operator=(const RestartedBroker&) = delete;

  const std::string& endpoint() const { return endpoint_; }
  std::uint32_t sent_again() const { return sent_again_; }

 private:
  void serve() {
    std::uint32_t first = 0;
    auto quiet_since = std::chrono::steady_clock::now();
    while (!stop_) {
      zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 10ms);
      std::vector<zmq::message_t> parts;
      while (zmq::recv_multipart(router_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
        if (parts.size() == 2) {
          identity_ = parts[0].to_string();
          auto message = fanout::wire::InMessage::parse(std::move(parts[1]));
          if (message && message->envelope().isTasks()) {
            const auto window = message->envelope().getTasks();
            batch_ = window.getBatchId();
            if (first < kTasks) {
              first += window.getTasks().size();
              if (first >= kTasks) send(refusal());
            } else {
              // The other two answers reach the client after it has begun sending the batch again:
              // on the wire they were behind the first, and the client acts on the first at once.
              if (sent_again_ == 0) {
                for (int n = 0; n < 2; ++n) send(refusal());
              }
              sent_again_ += window.getTasks().size();
              quiet_since = std::chrono::steady_clock::now();
            }
          }
        }
        parts.clear();
      }
      if (!answered_ && sent_again_ >= kTasks && std::chrono::steady_clock::now() - quiet_since > 300ms) {
        send(results());
        answered_ = true;
      }
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

  void send(zmq::message_t frame) {
    router_.send(zmq::buffer(identity_), zmq::send_flags::sndmore);
    router_.send(frame, zmq::send_flags::none);
  }

  zmq::context_t context_;
  zmq::socket_t router_;
  std::string endpoint_;
  std::string identity_;
  std::uint64_t batch_ = 0;
  std::atomic<std::uint32_t> sent_again_{0};
  bool answered_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: starts once everything above exists
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
