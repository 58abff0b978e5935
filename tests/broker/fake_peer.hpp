// fake_peer.hpp: one fake peer of the broker (client, supervisor or executor) on a real ZeroMQ
// DEALER, and the timing the broker tests run with.
//
// Every fake peer owns one DEALER and one thread that does all of that socket's I/O: it sends
// what the test queues, records or handles what arrives, and heartbeats once it has said
// something (announce, tasks), as real peers do. Tests only wait on conditions with deadlines.
#pragma once

#include <doctest/doctest.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "broker_messages.hpp"
#include "transport.hpp"

namespace broker_test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Kind = wire::Envelope::Which;

// Heartbeats every 50 ms, dead after 300 ms of silence: liveness tests take well under a second.
inline constexpr auto kBeat = std::chrono::milliseconds(50);
inline constexpr auto kLiveness = std::chrono::milliseconds(300);
// What "soon" means for a condition that should hold after a few broker loop turns. Generous,
// because sanitizer builds on two loaded cores are slow; a passing test never waits it out.
inline constexpr auto kSoon = std::chrono::seconds(10);

using Received = std::shared_ptr<wire::InMessage>;

struct PeerOptions {
  std::string routing_id{};  // empty: ZeroMQ picks one (clients)
  bool heartbeat = true;   // heartbeat every kBeat once the peer has sent something
  bool record = true;      // keep every message received for the test to inspect
  // Heartbeats say how many bytes of results and output it read, as a real client's do; false:
  // a client that never reads what it is sent, as far as the broker can tell.
  bool report_reads = true;
};

class Peer {
 public:
  // Called on the peer's thread for every message received; may call send_now().
  using Handler = std::function<void(Peer&, wire::InMessage&)>;
  // Called on the peer's thread on every turn of its loop (at least every millisecond).
  using Tick = std::function<void(Peer&)>;

  Peer(zmq::context_t& context, std::string endpoint, PeerOptions options = {}, Handler handler = {}, Tick tick = {})
      : context_(context),
        endpoint_(std::move(endpoint)),
        options_(std::move(options)),
        handler_(std::move(handler)),
        tick_(std::move(tick)),
        wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        beating_(options_.heartbeat) {
    REQUIRE(wake_fd_ >= 0);
    std::promise<void> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, &ready] { loop(ready); });
    started.get();  // the socket is connected (or the constructor rethrows why not)
  }
  ~Peer() {
    stop_ = true;
    wake();
    thread_.join();
    ::close(wake_fd_);
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  // Queues a message (one frame, or several for a multi-part message) for the peer's thread.
  void send(zmq::message_t frame) {
    std::vector<zmq::message_t> parts;
    parts.push_back(std::move(frame));
    send_parts(std::move(parts));
  }
  void send_parts(std::vector<zmq::message_t> parts) {
    {
      std::lock_guard lock(mutex_);
      outbox_.push_back(std::move(parts));
    }
    wake();
  }
  // Sends at once; only from a handler or tick (the peer's own thread).
  void send_now(zmq::message_t frame) {
    socket_->send(frame, zmq::send_flags::none);
    spoke_ = true;
  }

  // Heartbeats on or off (a peer that "goes silent" while its socket stays connected).
  void set_heartbeat(bool on) { beating_ = on; }

  // The oldest recorded message of kind `which` not taken yet, waiting up to `limit`; it is taken.
  Received take(Kind which, std::chrono::milliseconds limit = kSoon) {
    std::unique_lock lock(mutex_);
    Received found;
    cv_.wait_for(lock, limit, [&] {
      for (auto& [message, taken] : inbox_) {
        if (!taken && message->envelope().which() == which) {
          taken = true;
          found = message;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  // Waits until `condition()` holds; it is evaluated under mutex() after every message received
  // (so it must be cheap: the peer's thread waits for the lock meanwhile).
  template <class Condition>
  bool wait(Condition condition, std::chrono::milliseconds limit = kSoon) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, limit, condition);
  }

  std::vector<Received> recorded() {
    std::lock_guard lock(mutex_);
    return recorded_locked();
  }
  std::size_t count(Kind which) {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count_if(inbox_.begin(), inbox_.end(), [&](const auto& entry) {
      return entry.first->envelope().which() == which;
    }));
  }
  std::size_t unreadable() const { return unreadable_.load(); }

  // For owners that keep their own state under the peer's lock and notify waiters.
  std::mutex& mutex() { return mutex_; }
  void notify() { cv_.notify_all(); }

 private:
  std::vector<Received> recorded_locked() const {
    std::vector<Received> all;
    all.reserve(inbox_.size());
    for (const auto& entry : inbox_) all.push_back(entry.first);
    return all;
  }

  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(wake_fd_, &one, sizeof(one));
  }

  void loop(std::promise<void>& ready) {
    try {
      socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
      wire::configure_socket(*socket_);
      if (!options_.routing_id.empty()) socket_->set(zmq::sockopt::routing_id, options_.routing_id);
      socket_->connect(endpoint_);
    } catch (...) {
      ready.set_exception(std::current_exception());
      return;
    }
    ready.set_value();
    auto next_beat = Clock::now() + kBeat;
    while (!stop_) {
      zmq::pollitem_t items[] = {{socket_->handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd_, ZMQ_POLLIN, 0}};
      const auto timeout = tick_ ? 1ms : std::chrono::milliseconds(10);
      zmq::poll(items, 2, timeout);
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t value = 0;
        [[maybe_unused]] const auto got = ::read(wake_fd_, &value, sizeof(value));
      }
      std::deque<std::vector<zmq::message_t>> outgoing;
      {
        std::lock_guard lock(mutex_);
        outgoing.swap(outbox_);
      }
      for (auto& parts : outgoing) {
        for (std::size_t i = 0; i < parts.size(); ++i) {
          socket_->send(parts[i], i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
        }
        spoke_ = true;
      }
      for (int n = 0; n < 1024; ++n) {
        if (n % 64 == 63) beat_if_due(next_beat);  // a long burst must not silence the peer
        zmq::message_t frame;
        if (!socket_->recv(frame, zmq::recv_flags::dontwait)) break;
        const std::size_t bytes = frame.size();
        auto message = wire::InMessage::parse(std::move(frame));
        if (!message) {
          ++unreadable_;
          continue;
        }
        if (message->envelope().isResults() || message->envelope().isOutput()) unreported_ += bytes;
        if (handler_) handler_(*this, *message);
        if (options_.record) {
          std::lock_guard lock(mutex_);
          inbox_.emplace_back(std::make_shared<wire::InMessage>(std::move(*message)), false);
        }
        cv_.notify_all();
      }
      if (tick_) tick_(*this);
      beat_if_due(next_beat);
    }
    socket_.reset();
  }

  void beat_if_due(Clock::time_point& next_beat) {
    const auto now = Clock::now();
    if (now < next_beat) return;
    next_beat = now + kBeat;
    if (beating_ && spoke_) send_now(heartbeat_message(options_.report_reads ? std::exchange(unreported_, 0) : 0));
  }

  zmq::context_t& context_;
  std::string endpoint_;
  PeerOptions options_;
  Handler handler_;
  Tick tick_;
  int wake_fd_;
  std::atomic<bool> beating_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> unreadable_{0};
  bool spoke_ = false;  // peer thread only
  std::uint64_t unreported_ = 0;  // bytes of results and output read since the last heartbeat; peer thread only
  std::unique_ptr<zmq::socket_t> socket_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::vector<zmq::message_t>> outbox_;
  std::deque<std::pair<Received, bool>> inbox_;  // (message, taken)
  std::thread thread_;
};

}  // namespace broker_test
