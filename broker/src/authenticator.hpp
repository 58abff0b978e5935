// authenticator.hpp: the broker's ZAP handler (ZeroMQ RFC 27), which decides who may connect to a
// broker that has keys (docs/security.md).
//
// Owns a REP socket bound to inproc://zeromq.zap.01 in the broker's ZeroMQ context, a thread that
// answers it, and the KeyRing it answers from. libzmq asks it about every CurveZMQ handshake on
// any socket of that context; it accepts a key listed in the ring (with "User-Id" set to the
// key's Z85 text, which the loop reads back from every message to apply roles, roles.hpp) and
// refuses everything else: another mechanism, an unlisted key, a malformed request.
//
// Threads: its own thread answers requests; set_keys() and keys() from any thread (a mutex
// around a shared_ptr swap). The constructor binds before it returns, so a broker that builds it
// before binding its endpoints never takes a handshake that nobody judged (libzmq accepts every
// peer of a context without a ZAP handler): fail closed.
//
// Promises: a refused key is logged once (bounded), never as raw peer text. Does not: know
// anything of roles beyond "listed or not", count messages, or read key files.
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/logger.h>
#include <zmq.hpp>

#include "roles.hpp"
#include "system/event_fd.hpp"

namespace fanout::broker {

class Authenticator {
 public:
  // Binds the ZAP endpoint and starts answering. Throws fanout::Error when another handler is
  // bound in `context` already (one broker with keys per context).
  Authenticator(zmq::context_t& context, std::shared_ptr<const KeyRing> keys, spdlog::logger& logger);
  ~Authenticator();
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // The ring later handshakes are judged by (connections made before keep going; the loop's
  // per-message check takes their roles away when their key is gone).
  void set_keys(std::shared_ptr<const KeyRing> keys);
  std::shared_ptr<const KeyRing> keys() const;

 private:
  void serve();
  void answer(std::vector<zmq::message_t>& request);

  spdlog::logger& logger_;
  zmq::socket_t socket_;
  sys::EventFd stop_;
  mutable std::mutex mutex_;  // guards keys_
  std::shared_ptr<const KeyRing> keys_;
  std::set<std::string> logged_;  // refused keys already logged (the thread's own)
  std::thread thread_;
};

}  // namespace fanout::broker
