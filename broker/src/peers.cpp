#include "peers.hpp"

#include "printable.hpp"
#include <algorithm>

namespace fanout::broker {

namespace {

// Peer text in a log line: escaped and bounded (printable.hpp).
std::string shown(std::string_view text) { return wire::printable(text, wire::kLogTextLimit); }

zmq::message_t heartbeat_frame() {
  wire::OutMessage beat;
  beat.envelope().initHeartbeat().setSentUnixMs(wire::unix_ms());
  return beat.frame();
}

}  // namespace

Peers::Peers(const Config& config, spdlog::logger& logger, Outbox& outbox, Counters& counters)
    : config_(config), logger_(logger), outbox_(outbox), counters_(counters) {}

std::optional<std::string> Peers::foreign_key(const PeerId& peer, const std::string& key) const {
  if (const auto executor = executors_.find(peer); executor != executors_.end() && executor->second.key != key) {
    return "executor " + shown(peer) + " announced with another key; this connection may not speak for it";
  }
  if (const auto supervisor = supervisors_.find(peer); supervisor != supervisors_.end() && supervisor->second.key != key) {
    return "worker " + shown(supervisor->second.worker_id) + " announced with another key; this connection may not speak for it";
  }
  return std::nullopt;
}

std::optional<std::string> Peers::foreign_announce(const PeerId& peer, const std::string& key,
                                                   wire::Announce::Reader announce) const {
  const std::string worker(text(announce.getWorkerId()));
  if (const auto bound = worker_keys_.find(worker); bound != worker_keys_.end() && bound->second != key) {
    return "worker id " + shown(worker) + " belongs to another key";
  }
  if (announce.getRole() == wire::Announce::Role::EXECUTOR && (peer.size() <= worker.size() + 1 ||
                                                               peer.compare(0, worker.size(), worker) != 0 ||
                                                               peer[worker.size()] != '/')) {
    return "executor id " + shown(peer) + " is not of its worker " + shown(worker) + " (<workerId>/...)";
  }
  return std::nullopt;
}

bool Peers::supervises(const PeerId& supervisor, const PeerId& executor) const {
  const auto s = supervisors_.find(supervisor);
  const auto e = executors_.find(executor);
  return s != supervisors_.end() && e != executors_.end() && e->second.worker == s->second.worker_id &&
         e->second.key == s->second.key;
}

Peers::Announced Peers::on_announce(const PeerId& peer, const std::string& key, wire::Announce::Reader announce,
                                    Clock::time_point now) {
  const auto role = announce.getRole();
  if (role != wire::Announce::Role::SUPERVISOR && role != wire::Announce::Role::EXECUTOR) {
    outbox_.drop(peer, wire::ErrorKind::REFUSED,
                 "announce with an unknown role (" + std::to_string(static_cast<unsigned>(role)) + ")");
    return Announced::refused;
  }
  // Read everything first: a field of the wrong kind throws before anything changed.
  const std::string worker(text(announce.getWorkerId()));
  const std::string executor_id(text(announce.getExecutorId()));
  const std::string host(text(announce.getHost()));
  const std::string version(text(announce.getVersion()));
  std::vector<std::string> names;
  for (const auto name : announce.getTaskNames()) names.emplace_back(text(name));
  const auto refuse = [&](const std::string& why) {
    outbox_.drop(peer, wire::ErrorKind::REFUSED, why);
    return Announced::refused;
  };
  if (worker.empty()) return refuse("announce without a workerId");
  if (clients_.count(peer) != 0) return refuse("a client cannot announce itself as a worker");
  if (role == wire::Announce::Role::SUPERVISOR) {
    if (executors_.count(peer) != 0) return refuse("an executor cannot become a supervisor");
    // One registration per worker: a supervisor that reconnected (a fresh socket after a silence)
    // replaces its old registration, which must not take the worker's executors with it when it
    // would have expired.
    if (auto previous = supervisor_by_worker_.find(worker);
        previous != supervisor_by_worker_.end() && previous->second != peer) {
      if (auto old = supervisors_.find(previous->second); old != supervisors_.end()) {
        logger_.debug("broker: worker {} reconnected; its previous connection is forgotten", shown(worker));
        supervisors_.erase(old);
      }
      // Its executors reconnect too (the supervisor tells them to); until each has announced
      // itself again, its old connection may be dead: no work goes there.
      for (auto& [id, executor] : executors_) {
        if (executor.worker == worker) executor.unconfirmed = true;
      }
    }
    const bool joined = supervisor_by_worker_.count(worker) == 0;
    Supervisor& supervisor = supervisors_[peer];
    const bool was_draining = supervisor.draining;
    supervisor.worker_id = worker;
    supervisor.key = key;
    if (!key.empty()) worker_keys_.try_emplace(worker, key);
    supervisor.host = host;
    supervisor.version = version;
    supervisor.pid = announce.getPid();
    supervisor.processes = announce.getProcesses();
    supervisor.max_processes = std::max(announce.getMaxProcesses(), supervisor.processes);
    supervisor.growing = 0;  // it says how many it runs now, the new ones included
    supervisor.allow_shell = announce.getAllowShell();
    supervisor.draining = announce.getDraining();
    supervisor.last_seen = now;
    supervisor_by_worker_[worker] = peer;
    if (joined) {
      logger_.info("broker: worker {} joined (host {}, pid {}, {} executor(s), version {})", shown(worker), shown(host),
                   supervisor.pid, supervisor.processes, version.empty() ? "unknown" : shown(version));
    }
    if (supervisor.draining && !was_draining) logger_.info("broker: worker {} is draining", shown(worker));
    for (auto& [id, executor] : executors_) {
      if (executor.worker == worker) executor.draining = executor.leaving || supervisor.draining;
    }
    recount_growable();
    // Heard at once: a supervisor that reconnected after a partition learns that it is back (and
    // tells its executors to reconnect) now rather than at the next heartbeat.
    outbox_.send(peer, heartbeat_frame());
    return Announced::supervisor;
  }
  // The broker addresses an executor (tasks, stopExecutor, executorLost) by its executorId, so
  // that must be the routing id of the socket it announced from.
  if (executor_id != peer) {
    return refuse("executor '" + executor_id + "' announced from a socket whose routing id is not its executorId");
  }
  if (supervisors_.count(peer) != 0) return refuse("a supervisor cannot become an executor");
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  Executor& executor = executors_[peer];
  const bool fresh = executor.id.empty();
  executor.id = peer;
  executor.worker = worker;
  executor.key = key;
  if (!key.empty()) worker_keys_.try_emplace(worker, key);
  executor.names = intern(std::move(names));
  executor.slots = std::max<std::uint32_t>(1, announce.getSlots());
  executor.processes = std::max<std::uint32_t>(1, announce.getProcesses());
  executor.last_seen = now;
  executor.leaving = executor.leaving || announce.getDraining();
  executor.extra = announce.getExtra();
  executor.draining = executor.leaving;
  executor.unconfirmed = false;
  if (auto supervisor = supervisor_by_worker_.find(worker); supervisor != supervisor_by_worker_.end()) {
    if (auto s = supervisors_.find(supervisor->second); s != supervisors_.end() && s->second.draining) executor.draining = true;
  }
  if (fresh) {
    logger_.debug("broker: executor {} of worker {} joined ({} slots)", shown(peer), shown(worker),
                  executor.slots);
  }
  return Announced::executor;
}

std::size_t Peers::ask_to_grow(std::size_t wanted, Clock::time_point now) {
  std::size_t asked = 0;
  for (auto& [peer, supervisor] : supervisors_) {
    if (asked >= wanted) break;
    if (supervisor.draining) continue;
    // One request at a time: the next once the last was answered (it announced its new number)
    // or, when it was not, after a pause.
    if (supervisor.growing > 0 && now - supervisor.asked_to_grow < kGrowPatience) continue;
    const std::uint32_t room = supervisor.max_processes > supervisor.processes ? supervisor.max_processes - supervisor.processes : 0;
    const auto more = static_cast<std::uint32_t>(std::min<std::size_t>(room, wanted - asked));
    if (more == 0) continue;
    wire::OutMessage out(16);
    out.envelope().initGrow().setExecutors(more);
    if (!outbox_.send(peer, out.frame())) continue;
    supervisor.growing = more;
    supervisor.asked_to_grow = now;
    asked += more;
    logger_.debug("broker: asked worker {} for {} more executor(s) (tasks wait while its executors run slow ones)",
                  shown(supervisor.worker_id), more);
  }
  return asked;
}

// Counted when supervisors change (announce, removal) rather than on every call: the loop asks
// on every turn, and a broker of many workers turns often.
void Peers::recount_growable() {
  growable_ = static_cast<std::size_t>(std::count_if(supervisors_.begin(), supervisors_.end(), [](const auto& entry) {
    return !entry.second.draining && entry.second.max_processes > entry.second.processes;
  }));
}

Executor* Peers::find_executor(const PeerId& id) {
  const auto found = executors_.find(id);
  return found == executors_.end() ? nullptr : &found->second;
}

std::size_t Peers::executors_coming() const {
  std::unordered_map<std::string_view, std::size_t> connected;
  for (const auto& [id, executor] : executors_) ++connected[executor.worker];
  std::size_t coming = 0;
  for (const auto& [peer, supervisor] : supervisors_) {
    if (supervisor.draining) continue;
    const std::size_t expected = std::size_t{supervisor.processes} + supervisor.growing;
    const auto there = connected.find(supervisor.worker_id);
    const std::size_t have = there == connected.end() ? 0 : there->second;
    coming += expected > have ? expected - have : 0;
  }
  return coming;
}

void Peers::on_heartbeat(const PeerId& peer, Clock::time_point now) {
  if (auto found = executors_.find(peer); found != executors_.end()) {
    found->second.last_seen = now;
  } else if (auto supervisor = supervisors_.find(peer); supervisor != supervisors_.end()) {
    supervisor->second.last_seen = now;
  } else if (auto client = clients_.find(peer); client != clients_.end()) {
    client->second.last_seen = now;
  } else {
    // After a broker restart every peer is unknown: tell it, so that workers re-announce and
    // clients learn that their batches are gone.
    outbox_.unknown_peer(peer);
  }
}

void Peers::heard_from_client(const PeerId& client, Clock::time_point now) { clients_[client].last_seen = now; }

Executor* Peers::heard_from_executor(const PeerId& peer, Clock::time_point now) {
  const auto found = executors_.find(peer);
  if (found == executors_.end()) return nullptr;
  found->second.last_seen = now;
  return &found->second;
}

bool Peers::heard_from_supervisor(const PeerId& peer, Clock::time_point now) {
  const auto found = supervisors_.find(peer);
  if (found == supervisors_.end()) return false;
  found->second.last_seen = now;
  return true;
}

std::optional<Executor> Peers::remove_executor(const PeerId& id, const std::string& how) {
  auto found = executors_.find(id);
  if (found == executors_.end()) return std::nullopt;
  std::optional<Executor> executor(std::move(found->second));
  executors_.erase(found);
  ++counters_.executors_lost;
  if (const auto by_worker = supervisor_by_worker_.find(executor->worker); by_worker != supervisor_by_worker_.end()) {
    if (const auto supervisor = supervisors_.find(by_worker->second); supervisor != supervisors_.end()) {
      ++supervisor->second.executors_lost;
    }
  }
  if (!executor->in_flight.empty()) {
    logger_.info("broker: executor {} lost ({}), requeueing {} task(s)", shown(id), shown(how),
                 executor->in_flight.size());
  }
  return executor;
}

std::vector<PeerId> Peers::remove_supervisor(const PeerId& peer, const std::string& how) {
  auto found = supervisors_.find(peer);
  if (found == supervisors_.end()) return {};
  const std::string worker = found->second.worker_id;
  supervisors_.erase(found);
  recount_growable();
  const auto by_worker = supervisor_by_worker_.find(worker);
  // A registration the worker already replaced (it reconnected) takes nothing with it.
  if (by_worker == supervisor_by_worker_.end() || by_worker->second != peer) return {};
  supervisor_by_worker_.erase(by_worker);
  std::vector<PeerId> its;
  for (const auto& [id, executor] : executors_) {
    if (executor.worker == worker) its.push_back(id);
  }
  logger_.info("broker: worker {} {}; {} executor(s) gone with it", shown(worker), shown(how), its.size());
  return its;
}

bool Peers::remove_client(const PeerId& client) { return clients_.erase(client) != 0; }

std::vector<PeerId> Peers::silent_supervisors(Clock::time_point now) const {
  std::vector<PeerId> silent;
  for (const auto& [id, supervisor] : supervisors_) {
    if (now - supervisor.last_seen > config_.liveness) silent.push_back(id);
  }
  return silent;
}

std::vector<PeerId> Peers::silent_executors(Clock::time_point now) const {
  std::vector<PeerId> silent;
  for (const auto& [id, executor] : executors_) {
    const auto supervisor = supervisor_by_worker_.find(executor.worker);
    if (supervisor != supervisor_by_worker_.end() && supervisors_.count(supervisor->second) != 0) continue;
    if (now - executor.last_seen > config_.liveness) silent.push_back(id);
  }
  return silent;
}

std::vector<PeerId> Peers::silent_clients(Clock::time_point now) const {
  std::vector<PeerId> silent;
  for (const auto& [id, client] : clients_) {
    if (id != kDeferredClient && now - client.last_seen > config_.liveness) silent.push_back(id);
  }
  return silent;
}

void Peers::send_heartbeats() {
  auto frame = heartbeat_frame();
  const auto send_beat = [&](const PeerId& peer) {
    zmq::message_t copy;
    copy.copy(frame);
    outbox_.send(peer, std::move(copy));
  };
  for (const auto& [id, supervisor] : supervisors_) send_beat(id);
  for (const auto& [id, executor] : executors_) send_beat(id);
  for (const auto& [id, client] : clients_) {
    if (id != kDeferredClient) send_beat(id);
  }
}

void Peers::stop_executor(Executor& executor, const std::string& reason) {
  const auto supervisor = supervisor_by_worker_.find(executor.worker);
  if (supervisor == supervisor_by_worker_.end()) return;
  wire::OutMessage out;
  auto stop = out.envelope().initStopExecutor();
  stop.setExecutorId(executor.id);
  stop.setReason(reason);
  if (outbox_.send(supervisor->second, out.frame())) executor.leaving = executor.draining = true;
}

bool Peers::served_anywhere(std::string_view task_name) const {
  return std::any_of(executors_.begin(), executors_.end(), [&](const auto& e) { return e.second.serves(task_name); });
}

std::string Peers::served_names() const {
  std::vector<std::string> all;
  for (const auto& [id, executor] : executors_) all.insert(all.end(), executor.names->begin(), executor.names->end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  std::string list;
  for (const auto& name : all) list += (list.empty() ? "" : ", ") + name;
  return list.empty() ? std::string("nothing") : list;
}

NameSet Peers::intern(std::vector<std::string> names) {
  // A set whose executors have all left is held by this table alone: it goes, so that what peers
  // announced leaves with them (a peer announcing ever new names costs nothing that lasts, and
  // this search stays as short as the sets in use).
  std::erase_if(name_sets_, [](const NameSet& set) { return set.use_count() == 1; });
  for (const auto& known : name_sets_) {
    if (*known == names) return known;
  }
  name_sets_.push_back(std::make_shared<const std::vector<std::string>>(std::move(names)));
  return name_sets_.back();
}

}  // namespace fanout::broker
