// loop.hpp: the broker's loop (what Broker runs): its socket, the reading and checking of every
// message, the timers, and the wiring of the parts that do the rest.
//
// Owns the ROUTER socket (bound to every configured endpoint), the stop eventfd, the counters,
// the heartbeat timer, and the parts, built here in dependency order and each handed the ones
// below it:
//
//   Admission        what each client may hold at the broker, and all of them (admission.hpp)
//   Outbox           everything sent (outbox.hpp)
//   Peers            clients, supervisors, executors: announce, liveness, loss (peers.hpp)
//   DeferredLedger   the journal side of deferred batches (deferred_ledger.hpp)
//   Batches          windows in, results out, cancel, timeouts, endings (batches.hpp)
//   Dispatch         queued work to executors' credit (dispatch.hpp)
//   DeferredBatches  deferred windows, recovery, `fanout deferred` (deferred_batches.hpp)
//   status_reply     the `status` answer (status_reply.hpp)
//
// One turn of the loop: wait for the socket, the journal or the next timer; acknowledge what the
// journal made durable; read up to 4,096 messages, each parsed and checked (frame count, size,
// protocol version, kinds of fields, who may send it) before the part it is for acts on it;
// dispatch once; take back the work of executors that became unreachable; run the timers
// (deadlines; every heartbeat period: liveness, then heartbeats out); forget finished batches.
//
// The loop also joins Peers and Batches when a peer goes: Peers forgets it and hands back what it
// was, Batches takes back its work (lose_executor, drop_supervisor, drop_client below).
//
// Threads: run() and everything it calls on one thread; stop() from any thread or a signal
// handler; endpoints() and counters() from any thread (the counters are atomics), and metrics()'s
// any-thread side (the published snapshot, the pulse every turn beats, readiness).
//
// Promises: a message that does not parse, or makes no sense from its sender, is dropped and
// counted, its sender told why when it can be; nothing a peer sends stops the broker serving the
// others. Does not: own any batch, peer or deferred state itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/logger.h>
#include <zmq.hpp>

#include <fanout/broker/broker.hpp>

#include "authenticator.hpp"
#include "admission.hpp"
#include "batches.hpp"
#include "deferred_batches.hpp"
#include "deferred_ledger.hpp"
#include "dispatch.hpp"
#include "metrics.hpp"
#include "outbox.hpp"
#include "peers.hpp"
#include "records.hpp"
#include "roles.hpp"
#include "system/event_fd.hpp"

namespace fanout::broker {

class Loop {
 public:
  // Binds every endpoint, then opens the journal (when configured) and queues what it recovered.
  // Throws as Broker's constructor does.
  Loop(Config config, zmq::context_t& context);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  void run();
  void stop() noexcept;
  void reload_keys() noexcept { reload_.notify(); }

  const std::vector<std::string>& endpoints() const noexcept { return endpoints_; }
  const Counters& counters() const noexcept { return counters_; }
  const Metrics& metrics() const noexcept { return metrics_; }

 private:
  void handle(std::vector<zmq::message_t>& parts);
  void handle(const PeerId& peer, const std::string& key, Roles roles, wire::InMessage message);
  // A message outside its sender's roles (roles.hpp): counted by reason, logged once per peer and
  // reason, and answered (a window with a refusing `ack`, anything else with an `error` the first
  // time), so that a peer that keeps trying costs a lookup each time.
  void refuse(const PeerId& peer, const wire::InMessage& message, Refusal reason, const std::string& why);
  // SIGHUP: the key directories read again, the change logged, the new ring in force.
  void apply_reload();
  void on_tasks(const PeerId& client, const std::string& key, wire::InMessage message, Clock::time_point now);
  void on_bye(const PeerId& peer);
  void on_executor_lost(const PeerId& supervisor, wire::ExecutorLost::Reader lost);

  // A peer is gone: Peers forgets it, Batches takes back its work. `running` is the task the
  // executor was running when it died, when its supervisor said so.
  void lose_executor(const PeerId& id, std::optional<std::pair<std::uint64_t, std::uint32_t>> running,
                     Batches::Blame blame, const std::string& how);
  void drop_supervisor(const PeerId& peer, const std::string& how);
  void drop_client(const PeerId& peer, const std::string& how);

  std::chrono::milliseconds until_next_timer() const;
  void run_timers();

  Config config_;
  std::shared_ptr<spdlog::logger> logger_;
  // With keys only (Config::trust): the ring every message is checked against, and the ZAP
  // handler that lets only its keys connect. Declared before the socket, so that the handler
  // outlives it.
  std::shared_ptr<const KeyRing> keys_;
  std::unique_ptr<Authenticator> authenticator_;
  zmq::socket_t router_;
  sys::EventFd stop_;  // stop() from any thread or a signal handler
  sys::EventFd reload_;  // reload_keys() from any thread or a signal handler
  std::vector<std::string> endpoints_;
  Counters counters_;
  Metrics metrics_;
  Clock::time_point next_heartbeat_;

  Admission admission_;  // before the parts that hold frames: their Holds are released into it
  Outbox outbox_;
  Peers peers_;
  DeferredLedger ledger_;
  Batches batches_;
  Dispatch dispatch_;
  DeferredBatches deferred_;
};

}  // namespace fanout::broker
