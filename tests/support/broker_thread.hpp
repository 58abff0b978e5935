// broker_thread.hpp: the broker library (fanout::broker::Broker) served on a thread of the test,
// for tests that drive a real broker in-process (fake peers, a client of the process driver).
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include <fanout/broker/broker.hpp>
#include <fanout/broker/metrics.hpp>
#include <zmq.hpp>

namespace fanout_test {

// The broker, served on its own thread from construction; stopped and joined at the end of the
// scope, whatever happened. An exception escaping run() (which would be a broker bug) is kept for
// the test to see (died()).
class RunningBroker {
 public:
  RunningBroker(fanout::broker::Config config, zmq::context_t& context);
  ~RunningBroker();
  RunningBroker(const RunningBroker&) = delete;
  RunningBroker& operator=(const RunningBroker&) = delete;

  // The first endpoint it listens on, with the port the OS picked.
  const std::string& endpoint() const { return broker_.endpoints().front(); }
  const fanout::broker::Counters& counters() const { return broker_.counters(); }
  // What the broker published at its last heartbeat (<fanout/broker/metrics.hpp>).
  std::shared_ptr<const fanout::broker::MetricsSnapshot> metrics() const { return broker_.metrics(); }
  // CPU time the broker's thread has used so far.
  std::chrono::duration<double> cpu_time();
  // Empty while run() is serving or returned normally; why it died otherwise.
  std::string died() const;

 private:
  void serve();
  void record(std::string why);

  fanout::broker::Broker broker_;
  mutable std::mutex mutex_;
  std::string died_;
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace fanout_test
