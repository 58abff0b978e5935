// intruder.hpp: a peer the security tests drive by hand, to play an attacker (or a client that
// speaks the wire itself): one DEALER on a real socket, with or without CurveZMQ keys, a routing
// id of its choosing, and a deadline on every wait. Single-threaded: the test calls it.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "keys.hpp"
#include "transport.hpp"

namespace security_test {

namespace wire = fanout::wire;
using Kind = wire::Envelope::Which;

class Intruder {
 public:
  // Connects to `endpoint` with `keys` (none: a peer without keys) under `routing_id` (empty:
  // ZeroMQ picks one).
  Intruder(zmq::context_t& context, const std::string& endpoint, std::optional<wire::ClientKeys> keys,
           const std::string& routing_id = {});

  void send(zmq::message_t frame);

  // The first message of kind `which` to arrive within `limit` (messages of other kinds are kept
  // and counted); nullopt when none came.
  std::optional<wire::InMessage> wait_for(Kind which, std::chrono::milliseconds limit);
  // Reads what arrives for `period`: to show that something never comes.
  void listen(std::chrono::milliseconds period);
  // How many messages of kind `which` arrived so far (waited for or not).
  std::size_t count(Kind which) const;
  // The text of every `error` received so far, joined by newlines.
  std::string errors() const;

 private:
  std::optional<wire::InMessage> receive(std::chrono::milliseconds limit);

  zmq::socket_t socket_;
  std::vector<Kind> kinds_;
  std::vector<std::string> errors_;
};

}  // namespace security_test
