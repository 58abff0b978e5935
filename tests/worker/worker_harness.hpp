// worker_harness.hpp: a real fanout-worker process (a fanout_test::Child) and a fake broker to
// drive it.
//
// The fake broker is a ZeroMQ ROUTER speaking the wire protocol by hand, so that tests can send
// exactly what a broker would (or would not: malformed frames, stopExecutor at a chosen moment)
// and look at every message the supervisor and its executors send back.
#pragma once

#include <sys/syscall.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <fstream>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include <fanout/codec.hpp>

#include "child.hpp"
#include "cluster.hpp"
#include "task_window.hpp"
#include "test_support.hpp"
#include "transport.hpp"

namespace fanout_test {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
namespace wire = fanout::wire;

// fanout-worker with `arguments` (its environment this process's), stdout and stderr in one log
// (out()). The Child kills its group (the executors are in it) and reaps it, whatever the test did.
inline Child start_worker(const std::vector<std::string>& arguments) {
  std::vector<std::string> command{worker_program()};
  command.insert(command.end(), arguments.begin(), arguments.end());
  return Child(std::move(command), ChildOptions{.merge_output = true});
}

// One message a peer sent to the fake broker.
struct Received {
  std::string peer;  // the sender's routing id
  wire::InMessage message;
  bool taken = false;

  wire::Envelope::Reader envelope() const { return message.envelope(); }
};

class FakeBroker {
 public:
  // Binds a ROUTER to `endpoint` (e.g. ipc:///tmp/x/broker or tcp://127.0.0.1:*).
  explicit FakeBroker(const std::string& endpoint) : router_(context_, zmq::socket_type::router) {
    wire::configure_socket(router_);
    router_.set(zmq::sockopt::router_mandatory, true);
    router_.set(zmq::sockopt::router_handover, true);  // as the real broker: a peer that reconnects takes its name over
    router_.bind(endpoint);
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
  }

  const std::string& endpoint() const noexcept { return endpoint_; }

  // Like the real broker: answer a heartbeat from a peer that announced with a heartbeat...
  bool answer_heartbeats = true;
  // ...and a message from one that did not with `error` (refused, "unknown peer"). When false,
  // unknown peers are ignored, as by a broker that is silent towards them.
  bool refuse_unknown_peers = false;

  // Takes the first message not taken yet that satisfies `match`, waiting for new ones up to
  // `limit`; nullptr when none came. The reference stays valid as long as the broker.
  Received* take(const std::function<bool(const Received&)>& match, milliseconds limit = kPatience) {
    const auto deadline = Clock::now() + limit;
    std::size_t checked = 0;
    for (;;) {
      for (; checked < received_.size(); ++checked) {
        Received& candidate = received_[checked];
        if (!candidate.taken && match(candidate)) {
          candidate.taken = true;
          return &candidate;
        }
      }
      const auto now = Clock::now();
      if (now >= deadline) return nullptr;
      pump(std::chrono::ceil<milliseconds>(deadline - now));
    }
  }

  // Receives (and answers heartbeats) for `duration`, e.g. to check that nothing else comes.
  void listen(milliseconds duration) {
    const auto deadline = Clock::now() + duration;
    for (auto now = Clock::now(); now < deadline; now = Clock::now()) pump(std::chrono::ceil<milliseconds>(deadline - now));
  }

  // Every message received so far that satisfies `match`, taken or not.
  std::size_t count(const std::function<bool(const Received&)>& match) const {
    std::size_t n = 0;
    for (const auto& message : received_) n += match(message) ? 1 : 0;
    return n;
  }

  void send(const std::string& peer, wire::OutMessage& message) { send_frame(peer, message.frame()); }

  void send_frame(const std::string& peer, zmq::message_t&& frame) {
    router_.send(zmq::buffer(peer), zmq::send_flags::sndmore);
    router_.send(frame, zmq::send_flags::none);
  }

  // A message of several frames after the routing id, which a DEALER peer never expects.
  void send_multipart(const std::string& peer, const std::vector<std::string>& frames) {
    router_.send(zmq::buffer(peer), zmq::send_flags::sndmore);
    for (std::size_t i = 0; i < frames.size(); ++i) {
      router_.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }

 private:
  void pump(milliseconds limit) {
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    if (::zmq_poll(&item, 1, static_cast<long>(std::min(limit, milliseconds(100)).count())) <= 0) return;
    for (;;) {
      zmq::message_t identity;
      if (!router_.recv(identity, zmq::recv_flags::dontwait)) return;
      std::vector<zmq::message_t> parts;
      for (bool more = identity.more(); more;) {
        zmq::message_t part;
        (void)router_.recv(part);
        more = part.more();
        parts.push_back(std::move(part));
      }
      if (parts.size() != 1) throw std::runtime_error("a worker sent a multipart message");
      std::string why;
      auto message = wire::InMessage::parse(std::move(parts[0]), &why);
      if (!message) throw std::runtime_error("a worker sent an unreadable frame: " + why);
      handle(identity.to_string(), std::move(*message));
    }
  }

  void handle(const std::string& peer, wire::InMessage message) {
    const auto envelope = message.envelope();
    if (envelope.isAnnounce()) known_.insert(peer);
    if (!known_.count(peer) && refuse_unknown_peers) {
      wire::OutMessage error;
      auto refused = error.envelope().initError();
      refused.setKind(wire::ErrorKind::REFUSED);
      refused.setMessage("unknown peer: announce first (the broker may have restarted)");
      wire::send_to(router_, peer, error.frame());  // the peer may be gone already: not an error
    } else if (envelope.isHeartbeat() && known_.count(peer) && answer_heartbeats) {
      wire::OutMessage beat;
      beat.envelope().initHeartbeat().setSentUnixMs(wire::unix_ms());
      wire::send_to(router_, peer, beat.frame());
    }
    received_.push_back(Received{peer, std::move(message), false});
  }

  zmq::context_t context_{1};
  zmq::socket_t router_;
  std::string endpoint_;
  std::set<std::string> known_;
  std::deque<Received> received_;  // a deque: references stay valid as it grows
};

// ---- matchers ---------------------------------------------------------------------------------

inline auto announce_of(wire::Announce::Role role) {
  return [role](const Received& r) { return r.envelope().isAnnounce() && r.envelope().getAnnounce().getRole() == role; };
}
inline auto supervisor_announce() { return announce_of(wire::Announce::Role::SUPERVISOR); }
inline auto executor_announce() { return announce_of(wire::Announce::Role::EXECUTOR); }
// The announce of the executor `id`, or of the one in slot `id` ("<workerId>/<n>/<generation>",
// which a real id continues with '/' and 64 random bits).
inline auto executor_announce(const std::string& id) {
  return [id](const Received& r) {
    if (!r.envelope().isAnnounce() || r.envelope().getAnnounce().getRole() != wire::Announce::Role::EXECUTOR) return false;
    const std::string_view announced = r.envelope().getAnnounce().getExecutorId().cStr();
    return announced == id ||
           (announced.size() > id.size() && announced.compare(0, id.size(), id) == 0 && announced[id.size()] == '/');
  };
}
inline std::string executor_id_of(const Received& announce) { return announce.envelope().getAnnounce().getExecutorId().cStr(); }
inline auto results_of(std::uint64_t batch) {
  return [batch](const Received& r) {
    return r.envelope().isResults() && r.envelope().getResults().size() > 0 &&
           r.envelope().getResults()[0].getBatchId() == batch;
  };
}
inline auto executor_lost() {
  return [](const Received& r) { return r.envelope().isExecutorLost(); };
}
inline auto bye() {
  return [](const Received& r) { return r.envelope().isBye(); };
}
inline auto heartbeat_from(const std::string& peer) {
  return [peer](const Received& r) { return r.peer == peer && r.envelope().isHeartbeat(); };
}
inline auto hand_back_from(const std::string& peer) {
  return [peer](const Received& r) { return r.peer == peer && r.envelope().isHandBack(); };
}

// Whether the main thread of process `pid` is asleep in (clock_)nanosleep before `limit`: the
// example task sleep_ms is running there (an idle executor waits in poll instead).
inline bool wait_until_sleeping(pid_t pid, milliseconds limit = kPatience) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/syscall");
    long number = -1;
    if (file >> number && (number == SYS_clock_nanosleep || number == SYS_nanosleep)) return true;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return false;
}

// ---- building messages ------------------------------------------------------------------------

// Arguments encoded as the tuple a task of parameters A... expects (TaskSpec::args).
template <class... A>
std::function<void(wire::Value::Builder)> arguments(A... values) {
  return [=](wire::Value::Builder out) { fanout::encode(wire::wrap(out), std::make_tuple(values...)); };
}

// A `tasks` message of batch `batch` holding all of `specs` (task_window.hpp).
inline wire::OutMessage tasks_message(std::uint64_t batch, const std::vector<TaskSpec>& specs) {
  wire::OutMessage out;
  fill_tasks(out.envelope().initTasks(), batch, static_cast<std::uint32_t>(specs.size()), specs);
  return out;
}

inline wire::OutMessage reclaim_message(std::uint32_t count) {
  wire::OutMessage out;
  out.envelope().initReclaim().setCount(count);
  return out;
}

inline wire::OutMessage stop_executor_message(const std::string& executor, const std::string& reason) {
  wire::OutMessage out;
  auto stop = out.envelope().initStopExecutor();
  stop.setExecutorId(executor);
  stop.setReason(reason);
  return out;
}

}  // namespace fanout_test
