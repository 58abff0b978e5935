#include "loop.hpp"


#include <algorithm>
#include <cerrno>
#include <iterator>

#include <spdlog/spdlog.h>

#include <fanout/error.hpp>

#include <zmq_addon.hpp>

#include "printable.hpp"
#include "status_reply.hpp"
#include "system/signals.hpp"

namespace fanout::broker {

Loop::Loop(Config config, zmq::context_t& context)
    : config_(std::move(config)),
      logger_(config_.logger ? config_.logger : spdlog::default_logger()),
      router_(context, zmq::socket_type::router),
      admission_(config_),
      outbox_(router_, counters_, metrics_, *logger_),
      peers_(config_, *logger_, outbox_, counters_),
      ledger_(config_, logger_, outbox_, counters_),
      batches_(config_, *logger_, outbox_, counters_, metrics_, peers_, ledger_, admission_),
      dispatch_(outbox_, counters_, metrics_, peers_, batches_),
      deferred_(config_, *logger_, outbox_, ledger_, batches_) {
  // The transport's own limit is the hard stop; parse() enforces the configured one, so that an
  // oversized frame is counted and answered rather than silently cutting the connection.
  wire::configure_socket(router_, config_.max_frame_bytes * 2);
  router_.set(zmq::sockopt::router_mandatory, 1);
  // A peer that reconnects from a fresh socket under the same routing id (an executor after a
  // partition, its old connection not yet known to be dead) takes the name over at once.
  router_.set(zmq::sockopt::router_handover, 1);
  // Every endpoint is checked before any is bound: a refused one must not leave others listening.
  const bool secured = config_.trust.enabled();
  for (const auto& endpoint : config_.endpoints) check_endpoint_allowed(endpoint, config_.insecure, secured);
  if (secured) {
    // Keys first, then the ZAP handler, then the CurveZMQ options, then the binds: no handshake
    // can happen before there is someone to judge it.
    keys_ = load_key_ring(config_.trust);
    authenticator_ = std::make_unique<Authenticator>(context, keys_, *logger_);
    router_.set(zmq::sockopt::zap_domain, "fanout");
    router_.set(zmq::sockopt::curve_server, 1);
    router_.set(zmq::sockopt::curve_secretkey, config_.trust.secret_key);
    std::size_t counts[3] = {0, 0, 0};
    for (const auto& [key, entry] : keys_->keys()) {
      counts[0] += (entry.first & kClientRole) != 0;
      counts[1] += (entry.first & kWorkerRole) != 0;
      counts[2] += (entry.first & kAdminRole) != 0;
    }
    logger_->info("broker: CurveZMQ on (public key {}): {} client, {} worker and {} admin key(s)", config_.trust.public_key,
                  counts[0], counts[1], counts[2]);
  } else if (config_.insecure) {
    for (const auto& endpoint : config_.endpoints) {
      if (is_exposed_endpoint(endpoint)) {
        logger_->warn("broker: INSECURE: listening on {} without keys (--insecure): anyone who reaches it can submit "
                      "work, run shell commands on --allow-shell workers, pose as a worker and read other clients' "
                      "tasks; give the broker keys instead (docs/security.md)",
                      endpoint);
      }
    }
  }
  // The journal (and its lock) before any endpoint: binding an ipc path replaces the socket file
  // that is there, so a second broker of one journal must fail before it can take the first one's
  // path over (two copies of a program starting its local service at once do exactly that).
  if (!config_.journal.empty()) deferred_.recover();
  for (const auto& endpoint : config_.endpoints) {
    try {
      router_.bind(endpoint);
    } catch (const zmq::error_t& error) {
      throw Error("broker: cannot bind " + endpoint + ": " + error.what());
    }
    endpoints_.push_back(router_.get(zmq::sockopt::last_endpoint));
  }
  if (endpoints_.empty()) throw Error("broker: no endpoint to bind");
}

Loop::~Loop() = default;

void Loop::run() {
  next_heartbeat_ = Clock::now();
  // Sockets are bound and the journal replayed (the constructor did both): ready from here on.
  metrics_.publish(peers_, batches_, ledger_, counters_);
  metrics_.pulse().beat();
  metrics_.set_ready();
  std::vector<zmq::message_t> parts;
  while (true) {
    metrics_.pulse().beat();
    const bool journal = ledger_.enabled();
    zmq::pollitem_t items[] = {{router_.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, stop_.fd(), ZMQ_POLLIN, 0},
                               {nullptr, reload_.fd(), ZMQ_POLLIN, 0},
                               {nullptr, journal ? ledger_.ready_fd() : -1, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, journal ? 4 : 3, until_next_timer());
    } catch (const zmq::error_t& error) {
      // A signal (the SIGTERM that is about to call stop(), say) interrupted the wait: look again.
      if (error.num() != EINTR) throw;
      continue;
    }
    if (items[1].revents & ZMQ_POLLIN) return;
    if (items[2].revents & ZMQ_POLLIN) {
      reload_.clear();
      apply_reload();
    }
    if (journal && (items[3].revents & ZMQ_POLLIN)) deferred_.on_journal_ready();
    // Drain what is there (bounded, so timers still run under a flood), then act on it once.
    // Only when the poll saw input: a look at an empty socket costs two system calls inside
    // libzmq (a getpid(2) and a poll(2)), over 1 µs each on a virtual machine.
    const bool input = (items[0].revents & ZMQ_POLLIN) != 0;
    for (int received = 0; input && received < 4096; ++received) {
      parts.clear();
      const auto got = zmq::recv_multipart(router_, std::back_inserter(parts), zmq::recv_flags::dontwait);
      if (!got) break;
      handle(parts);
    }
    dispatch_.run();
    dispatch_.grow(Clock::now());
    for (const PeerId& id : dispatch_.take_unreachable()) {
      lose_executor(id, std::nullopt, Batches::Blame::stopped_task, "unreachable");
    }
    run_timers();
    batches_.sweep_finished();
  }
}

void Loop::stop() noexcept { stop_.notify(); }  // a write(2): async-signal-safe

// ---- input ------------------------------------------------------------------------------------

void Loop::handle(std::vector<zmq::message_t>& parts) {
  if (parts.size() != 2) {  // a DEALER peer sends exactly one frame per message
    if (parts.empty()) return;
    return outbox_.drop(parts[0].to_string(), wire::ErrorKind::BAD_MESSAGE,
                        "expected one frame per message, got " + std::to_string(parts.size() - 1));
  }
  PeerId peer = parts[0].to_string();
  // With keys, the key the peer authenticated with (the authenticator made it the User-Id) and
  // the roles it has now; without, every peer has every role.
  std::string key;
  Roles roles = kEveryRole;
  if (keys_) {
    if (const char* user = zmq_msg_gets(parts[1].handle(), "User-Id")) key = user;
    roles = keys_->roles_of(key);
  }
  std::string why;
  auto fault = wire::InMessage::Fault::unreadable;
  auto message = wire::InMessage::parse(std::move(parts[1]), &why, config_.max_frame_bytes,
                                        wire::InMessage::Check::whole_except_results,
                                        &fault);
  if (!message) {
    if (fault == wire::InMessage::Fault::over_limit) {
      return outbox_.drop(peer, wire::ErrorKind::BAD_MESSAGE, why, Refusal::over_limit);
    }
    return outbox_.drop(peer, wire::ErrorKind::BAD_MESSAGE, why);
  }
  try {
    handle(peer, key, roles, std::move(*message));
  } catch (const kj::Exception& exception) {
    // A field of the wrong kind (parse() has checked bounds, not kinds). Every handler reads
    // what it needs before it changes anything, so nothing is half done; and copies of what is
    // accepted (tasks in dispatch) cannot fail, since they do not look at kinds.
    outbox_.drop(peer, wire::ErrorKind::BAD_MESSAGE, std::string("unreadable message: ") + exception.getDescription().cStr());
  }
}

// Who may send what: first by the roles of the sender's key (roles.hpp; every role without keys),
// then by what the peer is: tasks, cancel and deferred requests come from clients, results and
// output from executors that announced with this key, executorLost from supervisors that announced
// with this key, about their own executors.
void Loop::handle(const PeerId& peer, const std::string& key, Roles roles, wire::InMessage message) {
  const auto envelope = message.envelope();
  const auto now = Clock::now();
  if (keys_) {
    if (auto refusal = check_role(envelope.which(), roles)) return refuse(peer, message, refusal->reason, refusal->message);
    if (auto foreign = peers_.foreign_key(peer, key)) return refuse(peer, message, Refusal::foreign_executor, *foreign);
  }
  switch (envelope.which()) {
    case wire::Envelope::TASKS:
      if (peers_.is_worker(peer)) return outbox_.drop(peer, wire::ErrorKind::REFUSED, "workers do not submit tasks");
      return on_tasks(peer, key, std::move(message), now);
    case wire::Envelope::RESULTS: {
      Executor* executor = peers_.heard_from_executor(peer, now);
      if (executor == nullptr) return outbox_.unknown_peer(peer);
      return batches_.on_results(*executor, std::move(message));
    }
    case wire::Envelope::HAND_BACK: {
      Executor* executor = peers_.heard_from_executor(peer, now);
      if (executor == nullptr) return outbox_.unknown_peer(peer);
      return batches_.on_hand_back(*executor, envelope.getHandBack());
    }
    case wire::Envelope::OUTPUT: {
      const Executor* executor = peers_.heard_from_executor(peer, now);
      if (executor == nullptr) return outbox_.unknown_peer(peer);
      return batches_.on_output(*executor, std::move(message));
    }
    case wire::Envelope::ANNOUNCE:
      if (keys_) {
        if (auto foreign = peers_.foreign_announce(peer, key, envelope.getAnnounce())) {
          return refuse(peer, message, Refusal::foreign_executor, *foreign);
        }
      }
      // Queued tasks that nobody could serve may have found their executor, or still have none.
      if (peers_.on_announce(peer, key, envelope.getAnnounce(), now) == Peers::Announced::executor) {
        // From a fresh connection: what was sent to its old one may never have arrived. It runs
        // again elsewhere (at least once); a result that does come is then a duplicate.
        if (envelope.getAnnounce().getFresh()) {
          if (Executor* executor = peers_.heard_from_executor(peer, now)) batches_.requeue_in_flight(*executor);
        }
        batches_.fail_unserved_everywhere();
      }
      return;
    case wire::Envelope::HEARTBEAT:
      if (!peers_.is_worker(peer)) batches_.client_read(peer, envelope.getHeartbeat().getResultBytes());
      return peers_.on_heartbeat(peer, now);
    case wire::Envelope::CANCEL:
      if (peers_.is_worker(peer)) return outbox_.drop(peer, wire::ErrorKind::REFUSED, "workers do not cancel batches");
      peers_.heard_from_client(peer, now);
      return batches_.cancel(peer, envelope.getCancel().getBatchId());
    case wire::Envelope::BYE:
      return on_bye(peer);
    case wire::Envelope::STATUS_REQUEST:
      // Only admins get here when the broker has keys (check_role).
      outbox_.send(peer, status_reply(peers_, batches_, ledger_.state(), counters_, *metrics_.snapshot()));
      return;
    case wire::Envelope::DEFERRED_REQUEST:
      if (peers_.is_worker(peer)) {
        return outbox_.drop(peer, wire::ErrorKind::REFUSED, "workers do not manage deferred tasks");
      }
      // The asker counts as a client for a liveness period: a local service started to answer it
      // does not stop as idle before it has (local_service.cpp).
      peers_.heard_from_client(peer, now);
      // A client that is no admin sees and manages its own deferred batches only.
      return deferred_.on_request(peer, envelope.getDeferredRequest(),
                                  keys_ && (roles & kAdminRole) == 0 ? std::optional<std::string>(key) : std::nullopt);
    case wire::Envelope::EXECUTOR_LOST:
      if (!peers_.heard_from_supervisor(peer, now)) return outbox_.unknown_peer(peer);
      return on_executor_lost(peer, envelope.getExecutorLost());
    default:
      return outbox_.drop(peer, wire::ErrorKind::REFUSED, "the broker does not accept this message");
  }
}

// A window was taken in (not refused on sight): its client counts as heard from.
void Loop::on_tasks(const PeerId& client, const std::string& key, wire::InMessage message, Clock::time_point now) {
  const bool taken = message.envelope().getTasks().getDeferred() ? deferred_.on_window(client, key, std::move(message))
                                                                  : batches_.on_window(client, std::move(message), now);
  if (taken) peers_.heard_from_client(client, now);
}

void Loop::on_bye(const PeerId& peer) {
  if (peers_.is_supervisor(peer)) return drop_supervisor(peer, "said goodbye");
  // An executor leaves on its own only when it had nothing to do: what reached it meanwhile goes
  // back to the queues, nobody to blame.
  if (peers_.is_executor(peer)) return lose_executor(peer, std::nullopt, Batches::Blame::nobody, "said goodbye");
  drop_client(peer, "said goodbye");
}

void Loop::on_executor_lost(const PeerId& supervisor, wire::ExecutorLost::Reader lost) {
  const PeerId id(text(lost.getExecutorId()));
  if (!peers_.is_executor(id)) return;
  // A supervisor speaks for its own worker's executors only: a report about another worker's
  // would fail that worker's healthy work.
  if (!peers_.supervises(supervisor, id)) {
    const bool first = outbox_.first_refusal(supervisor, Refusal::foreign_executor);
    outbox_.refuse_message(supervisor, Refusal::foreign_executor, "a report of a lost executor not of its worker", false);
    if (first) {
      logger_->warn("broker: refused a report of a lost executor from {}: executor {} is not of its worker",
                    wire::printable(supervisor, wire::kLogTextLimit), wire::printable(id, wire::kLogTextLimit));
    }
    return;
  }
  std::optional<std::pair<std::uint64_t, std::uint32_t>> running;
  if (lost.getRunning()) running.emplace(lost.getBatchId(), lost.getIndex());
  const std::string how = lost.getSignal() != 0 ? "killed by " + sys::describe_signal(lost.getSignal())
                                                : "exited with code " + std::to_string(lost.getExitCode());
  const auto blame = lost.getDrained()           ? Batches::Blame::nobody
                     : lost.getStoppedByBroker() ? Batches::Blame::stopped_task
                                                 : Batches::Blame::running_task;
  lose_executor(id, running, blame, lost.getDrained() ? how + " at the end of its worker's drain" : how);
}

// ---- refusals and keys -------------------------------------------------------------------------

void Loop::refuse(const PeerId& peer, const wire::InMessage& message, Refusal reason, const std::string& why) {
  const bool first = outbox_.first_refusal(peer, reason);
  if (first) {
    logger_->warn("broker: refused '{}' from {}: {}", message_name(message.envelope().which()),
                  wire::printable(peer, wire::kLogTextLimit), why);
  }
  const auto envelope = message.envelope();
  if (envelope.isTasks()) {
    // A client waits for the answer to a window: always give it, so its batch fails with the reason.
    const auto window = envelope.getTasks();
    outbox_.refuse_window(peer, window.getBatchId(), window.getTasks().size(), why, wire::ErrorKind::REFUSED, reason);
  } else {
    outbox_.refuse_message(peer, reason, why, first);
  }
}

void Loop::apply_reload() {
  if (!keys_) {
    logger_->info("broker: SIGHUP: this broker has no keys (--key), nothing to reload");
    return;
  }
  std::shared_ptr<const KeyRing> fresh;
  try {
    fresh = load_key_ring(config_.trust);
  } catch (const std::exception& error) {
    logger_->error("broker: keys not reloaded, the {} key(s) in force stay: {}", keys_->size(), error.what());
    return;
  }
  const std::string changes = describe_changes(*keys_, *fresh);
  keys_ = fresh;
  authenticator_->set_keys(fresh);
  logger_->info("broker: keys reloaded: {} ({} key(s) in force)", changes.empty() ? "no change" : changes, keys_->size());
}

// ---- peers that go ----------------------------------------------------------------------------

void Loop::lose_executor(const PeerId& id, std::optional<std::pair<std::uint64_t, std::uint32_t>> running,
                         Batches::Blame blame, const std::string& how) {
  if (const auto executor = peers_.remove_executor(id, how)) batches_.take_back(*executor, running, blame, how);
}

void Loop::drop_supervisor(const PeerId& peer, const std::string& how) {
  for (const PeerId& id : peers_.remove_supervisor(peer, how)) {
    lose_executor(id, std::nullopt, Batches::Blame::running_task, "its worker " + how);
  }
}

void Loop::drop_client(const PeerId& peer, const std::string& how) {
  if (peers_.remove_client(peer)) batches_.drop_client(peer, how);
}

// ---- timers -----------------------------------------------------------------------------------

std::chrono::milliseconds Loop::until_next_timer() const {
  const auto next = std::min(batches_.next_deadline(next_heartbeat_), dispatch_.next_check());
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now());
  return std::clamp(left, std::chrono::milliseconds(0), config_.heartbeat);
}

void Loop::run_timers() {
  const auto now = Clock::now();
  if (batches_.expire(now)) dispatch_.run();  // deferred tasks back from their backoff
  if (now < next_heartbeat_) return;
  next_heartbeat_ = now + config_.heartbeat;
  // Supervisors first: a silent one takes its executors with it, and executors are judged by
  // their supervisor's silence, not their own.
  for (const PeerId& id : peers_.silent_supervisors(now)) drop_supervisor(id, "went silent");
  for (const PeerId& id : peers_.silent_executors(now)) {
    lose_executor(id, std::nullopt, Batches::Blame::running_task, "went silent");
  }
  // A client program that ended says nothing more: only what it left behind is worth a line at
  // info (Batches::drop_client logs each batch it drops).
  for (const PeerId& id : peers_.silent_clients(now)) {
    logger_->debug("broker: a client went silent");
    drop_client(id, "went silent");
  }
  peers_.send_heartbeats();
  metrics_.publish(peers_, batches_, ledger_, counters_);
}

}  // namespace fanout::broker
