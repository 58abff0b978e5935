// peers.hpp: who is connected to the broker (clients, worker supervisors, executors), what each
// announced, when each was last heard, and which of them are gone (docs/protocol.md, "Liveness").
//
// Owns the client, supervisor and executor tables: only Peers adds or erases their entries. An
// executor's record also holds the tasks in flight there; Dispatch appends to that list and
// Batches takes from it (results, endings), through executors().
//
// Peers knows nothing of batches. When a peer goes (bye, silence, a reported death), Peers
// forgets it and hands back what it was, and the loop gives its work to Batches (lose_executor,
// drop_supervisor and drop_client in loop.cpp). The order of the liveness checks matters, so the
// loop runs them one by one: supervisors first (an executor lives as long as its supervisor),
// then executors without a supervisor, then clients.
//
// Threads: the loop's thread only.
//
// Promises: an announce is read whole before anything changes (a field of the wrong kind throws
// kj::Exception with the tables untouched); a refused announce is answered through the outbox. The
// broker's own deferred client (records.hpp) is listed as a client once it has work, so that no
// peer can announce itself under its name, and is never judged by silence nor sent heartbeats.
// Does not: send tasks, decide where work goes, or requeue anything.
#pragma once

#include <cstdint>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <spdlog/logger.h>

#include <fanout/broker/broker.hpp>

#include "outbox.hpp"
#include "records.hpp"

namespace fanout::broker {

class Peers {
 public:
  Peers(const Config& config, spdlog::logger& logger, Outbox& outbox, Counters& counters);

  // ---- what peers say ----

  enum class Announced { refused, supervisor, executor };
  // Registers (or updates) a supervisor or an executor. `refused`: the announce made no sense from
  // that peer and its sender was told why. Throws kj::Exception for a field of the wrong kind.
  // `key` is the sender's (empty without keys): the executor or worker id is bound to it.
  Announced on_announce(const PeerId& peer, const std::string& key, wire::Announce::Reader announce, Clock::time_point now);

  // ---- keys (a broker with keys only; docs/security.md) ----
  // Why a message from `peer` with `key` is not its to send: `peer` is an executor or supervisor
  // that announced with another key (its connection was taken over under its routing id).
  std::optional<std::string> foreign_key(const PeerId& peer, const std::string& key) const;
  // Why an announce from `peer` with `key` would take what another key holds: a worker id bound to
  // another key (by the first supervisor or executor that announced it), an executor id outside
  // its worker's ("<workerId>/..."). Throws kj::Exception for a field of the wrong kind.
  std::optional<std::string> foreign_announce(const PeerId& peer, const std::string& key,
                                              wire::Announce::Reader announce) const;
  // Whether `executor` is of the worker that the supervisor at `supervisor` runs.
  bool supervises(const PeerId& supervisor, const PeerId& executor) const;

  // Notes that `peer` is alive; a peer the broker does not know is told so (it may have restarted).
  void on_heartbeat(const PeerId& peer, Clock::time_point now);

  // A client was heard from (a window taken in, a cancel): it is listed from then on.
  void heard_from_client(const PeerId& client, Clock::time_point now);
  // The executor or supervisor at `peer` was heard from; nullptr / false when it is not known.
  Executor* heard_from_executor(const PeerId& peer, Clock::time_point now);
  bool heard_from_supervisor(const PeerId& peer, Clock::time_point now);

  // Lists the broker's own deferred client (see above). Idempotent.
  void list_deferred_client() { clients_.try_emplace(kDeferredClient); }

  bool is_worker(const PeerId& peer) const { return is_executor(peer) || is_supervisor(peer); }
  // The executor announced as `id`; nullptr when there is none (any more).
  Executor* find_executor(const PeerId& id);
  bool is_executor(const PeerId& peer) const { return executors_.count(peer) != 0; }
  bool is_supervisor(const PeerId& peer) const { return supervisors_.count(peer) != 0; }

  // ---- who is gone ----

  // Forgets an executor and returns its record, in-flight tasks included (nullopt when unknown).
  // Counts it (Counters::executors_lost) and logs the loss when it had work.
  std::optional<Executor> remove_executor(const PeerId& id, const std::string& how);
  // Forgets a supervisor and returns the executors of its worker, which go with it (the caller
  // removes them). Empty when `peer` is no supervisor.
  std::vector<PeerId> remove_supervisor(const PeerId& peer, const std::string& how);
  // Forgets a client; false when it was not listed.
  bool remove_client(const PeerId& client);

  // Peers silent for longer than the liveness period. An executor's liveness is its supervisor's
  // (which heartbeats for it: a single-threaded executor running a long task says nothing
  // meanwhile), so silent_executors() lists only executors without a known supervisor.
  std::vector<PeerId> silent_supervisors(Clock::time_point now) const;
  std::vector<PeerId> silent_executors(Clock::time_point now) const;
  std::vector<PeerId> silent_clients(Clock::time_point now) const;

  // ---- what the broker tells them ----

  // One heartbeat to every supervisor, executor and client (one encoded frame, shared).
  void send_heartbeats();

  // Asks the executor's supervisor to kill and replace it. From then on it gets no new work: what
  // it would get would only be requeued when its death is reported.
  void stop_executor(Executor& executor, const std::string& reason);

  // Asks supervisors that may grow (maxProcesses above what they run) for up to `wanted` more
  // executors in all; returns how many were asked for. A supervisor asked once is asked again only
  // after it announced its new number, or kGrowPatience later.
  std::size_t ask_to_grow(std::size_t wanted, Clock::time_point now);
  // Whether any supervisor may grow at all (kept counted: no walk over the workers).
  bool may_grow() const noexcept { return growable_ > 0; }
  // Executors that supervisors run (or were asked for) and that have not announced themselves yet.
  std::size_t executors_coming() const;
  static constexpr auto kGrowPatience = std::chrono::seconds(1);

  // ---- what they serve ----

  bool any_executor() const noexcept { return !executors_.empty(); }
  bool served_anywhere(std::string_view task_name) const;
  // Every task name some executor serves, sorted, comma-separated ("nothing" when none).
  std::string served_names() const;

  // The records, for the parts that read or update them in place; the tables themselves (which
  // peers exist) change only here.
  auto executors() { return std::views::values(executors_); }
  auto executors() const { return std::views::values(executors_); }
  auto supervisors() const { return std::views::values(supervisors_); }
  std::size_t supervisor_count() const noexcept { return supervisors_.size(); }
  // Clients listed (peers that sent a window or a cancel and are not gone), the broker's own
  // deferred client left out.
  std::size_t client_count() const noexcept { return clients_.size() - clients_.count(kDeferredClient); }

 private:
  void recount_growable();
  NameSet intern(std::vector<std::string> names);

  const Config& config_;
  spdlog::logger& logger_;
  Outbox& outbox_;
  Counters& counters_;

  std::unordered_map<PeerId, Client> clients_;
  std::unordered_map<PeerId, Executor> executors_;
  std::unordered_map<PeerId, Supervisor> supervisors_;
  std::size_t growable_ = 0;  // supervisors that may grow (recount_growable)
  std::unordered_map<std::string, PeerId> supervisor_by_worker_;
  // Worker id -> the key that first announced it (with keys only). Kept after the worker goes, so
  // that nobody can take its id while it reconnects; one short entry per worker id ever seen.
  std::unordered_map<std::string, std::string> worker_keys_;
  std::vector<NameSet> name_sets_;  // executors of one program share one list of task names
};

}  // namespace fanout::broker
