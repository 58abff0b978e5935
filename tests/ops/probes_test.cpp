// /healthz and /readyz: health says the process's loop turns (never whether a broker is
// reachable), readiness says the process does its job (a broker serves, a worker is registered
// with its broker). Against real processes over loopback, and against the broker library with its
// endpoint in-process where the test must decide when the loop stops.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <zmq.hpp>

#include <fanout/broker/broker.hpp>

#include "broker_endpoint.hpp"
#include "cluster.hpp"
#include "scrape.hpp"

using namespace std::chrono_literals;
using fanout_test::http_get;

namespace {

bool answers(const std::string& url, const std::string& path, int status) {
  const auto answer = http_get(url, path);
  return answer && answer->status == status;
}

}  // namespace

TEST_CASE("the broker is ready once its loop serves, and unhealthy once its loop stops turning") {
  zmq::context_t context;
  fanout::broker::BrokerEndpoint endpoint({"127.0.0.1", 0}, 300ms);
  const std::string url = endpoint.url();
  // Before the broker exists (binding, reading its journal): alive, not ready.
  CHECK(answers(url, "/healthz", 200));
  CHECK(answers(url, "/readyz", 503));
  CHECK(http_get(url, "/readyz")->body.find("starting") != std::string::npos);

  fanout::broker::Config config;
  config.endpoints = {"tcp://127.0.0.1:*"};
  config.heartbeat = 50ms;
  fanout::broker::Broker broker(config, context);
  endpoint.serve(&broker);
  CHECK(answers(url, "/readyz", 503));  // made, not serving yet
  std::thread loop([&] { broker.run(); });
  CHECK(fanout_test::eventually([&] { return answers(url, "/readyz", 200); }));
  CHECK(answers(url, "/healthz", 200));
  // The loop stops turning (run() returns while the endpoint still reports on it): unhealthy
  // once the stall limit has passed, and saying why.
  broker.stop();
  loop.join();
  CHECK(fanout_test::eventually([&] { return answers(url, "/healthz", 503); }));
  CHECK(http_get(url, "/healthz")->body.find("has not turned for") != std::string::npos);
  endpoint.serve(nullptr);
  CHECK(answers(url, "/readyz", 503));
}

TEST_CASE("/healthz answers at once while the broker's loop works through a flood of messages") {
  fanout_test::BrokerProcess broker({"--metrics", "127.0.0.1:0"});
  const auto url = broker.process().wait_for_line("metrics ", fanout_test::kPatience);
  REQUIRE(url.has_value());
  INFO(broker.log());
  const std::string refused = R"(fanout_broker_messages_refused_total{reason="bad_message"})";
  // Ready: the loop serves, and its first snapshot is published.
  REQUIRE(fanout_test::eventually([&] { return answers(*url, "/readyz", 200); }));
  const double before = fanout_test::scrape(*url, refused).value_or(-1);
  REQUIRE(before == 0);

  // 20,000 malformed messages, as fast as a socket takes them: each one read, parsed, refused
  // and answered by the loop.
  constexpr int kFlood = 20000;
  std::atomic<bool> flooding{true};
  std::atomic<bool> counted{false};
  std::thread flood([&] {
    zmq::context_t context;
    zmq::socket_t dealer(context, zmq::socket_type::dealer);
    dealer.connect(broker.endpoint());
    zmq::message_t answer;
    for (int i = 0; i < kFlood; ++i) {
      dealer.send(zmq::str_buffer("not an envelope"), zmq::send_flags::none);
      while (dealer.recv(answer, zmq::recv_flags::dontwait)) {
      }  // the broker's answers (an error each) are read and let go, so that nothing backs up
    }
    flooding = false;
    // Connected until the broker has counted the whole flood: a ROUTER drops what it has not yet
    // read from a peer that disconnects, and on a busy machine that can be its whole queue.
    while (!counted) {
      while (dealer.recv(answer, zmq::recv_flags::dontwait)) {
      }
      std::this_thread::sleep_for(1ms);
    }
    dealer.set(zmq::sockopt::linger, 0);
  });
  // However the checks below end, the flood's thread ends before the test does.
  const std::unique_ptr<std::thread, void (*)(std::thread*)> joined(&flood, [](std::thread* thread) { thread->join(); });
  struct Release {
    std::atomic<bool>& flag;
    ~Release() { flag = true; }
  } release{counted};
  int probes = 0;
  auto slowest = std::chrono::steady_clock::duration::zero();
  while (flooding || probes < 5) {
    const auto asked = std::chrono::steady_clock::now();
    const auto answer = http_get(*url, "/healthz", 3s);
    slowest = std::max(slowest, std::chrono::steady_clock::now() - asked);
    REQUIRE(answer.has_value());
    CHECK(answer->status == 200);
    ++probes;
  }
  MESSAGE(probes << " probes during the flood, the slowest took "
                 << std::chrono::duration_cast<std::chrono::milliseconds>(slowest).count() << " ms");
  CHECK(slowest < 2s);
  // Every message of the flood was refused and counted, once.
  CHECK(fanout_test::eventually([&] { return fanout_test::scrape(*url, refused) == before + kFlood; },
                                fanout_test::kPatience));
  CHECK(fanout_test::scrape(*url, refused).value_or(-1) == before + kFlood);
}

TEST_CASE("a worker's /readyz flips when its broker goes away and comes back; /healthz never depends on it") {
  fanout_test::Cluster cluster{fanout_test::ClusterOptions{
      .workers = {{.processes = 1, .arguments = {"--metrics", "127.0.0.1:0", "--heartbeat-ms", "100",
                                                 "--liveness-ms", "600"}}}}};
  std::optional<std::string> url;
  REQUIRE(fanout_test::eventually([&] {
    url = fanout_test::url_after(cluster.worker(0).out(), "serving metrics on ");
    return url.has_value();
  }));
  INFO(cluster.logs());
  CHECK(fanout_test::eventually([&] { return answers(*url, "/readyz", 200); }));
  CHECK(answers(*url, "/healthz", 200));

  cluster.broker().kill();
  CHECK(fanout_test::eventually([&] { return answers(*url, "/readyz", 503); }, fanout_test::kPatience));
  CHECK(http_get(*url, "/readyz")->body.find("not registered") != std::string::npos);
  CHECK(answers(*url, "/healthz", 200));
  CHECK(fanout_test::scrape(*url, "fanout_worker_registered") == 0);

  cluster.broker().restart();
  CHECK(fanout_test::eventually([&] { return answers(*url, "/readyz", 200); }, fanout_test::kPatience));
  CHECK(answers(*url, "/healthz", 200));
}
