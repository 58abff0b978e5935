// fake_router.hpp: a broker played by a test, for client-side tests. A ROUTER socket on tcp
// loopback, served by a thread of its own: every message a client sends reaches `on_message`
// (the client's routing id and its one frame; a message of another shape is dropped), which may
// answer with send(); `on_idle` runs at least every 10 ms, for answers that wait on time. The
// thread stops and is joined when the router goes, also when a check failed.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <iterator>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "transport.hpp"

namespace fanout_test {

class FakeRouter {
 public:
  using OnMessage = std::function<void(const std::string& identity, zmq::message_t& frame)>;
  using OnIdle = std::function<void()>;

  explicit FakeRouter(OnMessage on_message, OnIdle on_idle = {})
      : on_message_(std::move(on_message)), on_idle_(std::move(on_idle)), router_(context_, zmq::socket_type::router) {
    fanout::wire::configure_socket(router_);
    router_.bind("tcp://127.0.0.1:*");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeRouter() {
    stop_ = true;
    thread_.join();
  }
  FakeRouter(const FakeRouter&) = delete;
  FakeRouter& operator=(const FakeRouter&) = delete;

  const std::string& endpoint() const { return endpoint_; }

  // To the client `identity`; from on_message or on_idle only (the serving thread owns the socket).
  void send(const std::string& identity, zmq::message_t frame) {
    router_.send(zmq::buffer(identity), zmq::send_flags::sndmore);
    router_.send(frame, zmq::send_flags::none);
  }

 private:
  void serve() {
    using namespace std::chrono_literals;
    while (!stop_) {
      zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 10ms);
      std::vector<zmq::message_t> parts;
      while (zmq::recv_multipart(router_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
        if (parts.size() == 2) on_message_(parts[0].to_string(), parts[1]);
        parts.clear();
      }
      if (on_idle_) on_idle_();
    }
  }

  OnMessage on_message_;
  OnIdle on_idle_;
  zmq::context_t context_;
  zmq::socket_t router_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace fanout_test
