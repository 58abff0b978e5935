// broker_queries.cpp
#include "broker_queries.hpp"

#include <sstream>

#include <fanout/error.hpp>

#include "printable.hpp"
#include "keys.hpp"
#include "transport.hpp"

namespace fanout::link {

std::optional<wire::InMessage> ask_broker(zmq::context_t& context, const std::string& endpoint,
                                          zmq::message_t&& request, wire::Envelope::Which reply,
                                          std::chrono::milliseconds timeout) {
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  wire::configure_socket(socket);
  socket.set(zmq::sockopt::linger, 0);
  wire::connect_to_broker(socket, endpoint);
  socket.send(request, zmq::send_flags::dontwait);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, left);
    zmq::message_t frame;
    if (!socket.recv(frame, zmq::recv_flags::dontwait)) continue;
    std::string why;
    auto message = wire::InMessage::parse(std::move(frame), &why, wire::max_frame_bytes(), wire::InMessage::Check::whole);
    if (!message) throw Error("unreadable answer from " + endpoint + ": " + why);
    const auto kind = message->envelope().which();
    if (kind == reply || kind == wire::Envelope::ERROR) return message;
  }
}

namespace {

std::string_view text_of(capnp::Text::Reader text) { return {text.cStr(), text.size()}; }

}  // namespace

BrokerStatus query_status(zmq::context_t& context, const std::string& endpoint, std::chrono::milliseconds timeout) {
  wire::OutMessage request;
  request.envelope().setStatusRequest();
  const auto message = ask_broker(context, endpoint, request.frame(), wire::Envelope::STATUS, timeout);
  if (!message) {
    throw Error("no answer from a broker at " + endpoint + " within " + std::to_string(timeout.count()) + " ms; " +
                wire::no_answer_hint(endpoint));
  }
  const auto envelope = message->envelope();
  if (envelope.isError()) {
    const std::string why = wire::printable(text_of(envelope.getError().getMessage()));
    throw Error("the broker at " + endpoint + " refused: " + why);
  }
  const auto status = envelope.getStatus();
  BrokerStatus out;
  out.endpoint = endpoint;
  out.version = text_of(status.getVersion());
  out.queued = status.getQueued();
  out.running = status.getRunning();
  out.clients = status.getClients();
  out.deferred_pending = status.getDeferredPending();
  out.deferred_running = status.getDeferredRunning();
  out.deferred_done = status.getDeferredDone();
  out.deferred_dead = status.getDeferredDead();
  out.dropped_messages = status.getDroppedMessages();
  for (const auto count : status.getRefused()) out.refused.emplace_back(text_of(count.getLabel()), count.getCount());
  for (const auto worker : status.getWorkers()) {
    WorkerState state;
    state.id = text_of(worker.getWorkerId());
    state.host = text_of(worker.getHost());
    state.version = text_of(worker.getVersion());
    state.executors = worker.getProcesses();
    state.busy = worker.getBusy();
    state.running = worker.getRunning();
    state.credit = worker.getCredit();
    state.free_slots = worker.getFreeSlots();
    state.restarts = worker.getRestarts();
    state.last_seen_ms = worker.getLastSeenMsAgo();
    for (const auto name : worker.getTaskNames()) state.task_names.emplace_back(text_of(name));
    out.workers.push_back(std::move(state));
  }
  return out;
}

std::string status_text(const BrokerStatus& status) {
  const auto version = [](const std::string& v) { return v.empty() ? std::string("unknown") : wire::printable(v, 64); };
  std::ostringstream out;
  out << "broker " << status.endpoint << " (version " << version(status.version) << ")\n";
  out << "queued tasks: " << status.queued << ", running: " << status.running << ", clients: " << status.clients << "\n";
  out << "deferred tasks: " << status.deferred_pending << " pending, " << status.deferred_running << " running, "
      << status.deferred_done << " done, " << status.deferred_dead << " dead\n";
  // Each reason that happened, as "refused messages: 3 (2 bad_message, 1 not_an_admin)".
  out << "refused messages: " << status.dropped_messages;
  std::string reasons;
  for (const auto& [reason, count] : status.refused) {
    if (count == 0) continue;
    reasons += (reasons.empty() ? "" : ", ") + std::to_string(count) + " " + wire::printable(reason, 64);
  }
  if (!reasons.empty()) out << " (" << reasons << ")";
  out << "\n";
  std::uint64_t executors = 0;
  for (const auto& worker : status.workers) executors += worker.executors;
  out << "workers: " << status.workers.size() << ", executors: " << executors << "\n";
  for (const auto& worker : status.workers) {
    // Worker ids, hosts and task names are what workers announced: escaped (printable.hpp).
    out << "  " << wire::printable(worker.id, wire::kLogTextLimit) << " (version " << version(worker.version) << "): "
        << worker.executors << " executor(s), " << worker.busy << " busy; credit " << worker.running << " of "
        << worker.credit << " used; " << worker.restarts << " restart(s); seen " << worker.last_seen_ms
        << " ms ago; serves";
    for (const auto& name : worker.task_names) out << " " << wire::printable(name, wire::kLogTextLimit);
    out << "\n";
  }
  return out.str();
}

std::string status_report(zmq::context_t& context, const std::string& endpoint, std::chrono::milliseconds timeout) {
  return status_text(query_status(context, endpoint, timeout));
}

// The counts of the full status: one way to read the broker's answer.
std::optional<StatusCounts> query_counts(zmq::context_t& context, const std::string& endpoint,
                                        std::chrono::milliseconds timeout) {
  BrokerStatus status;
  try {
    status = query_status(context, endpoint, timeout);
  } catch (const Error&) {
    return std::nullopt;  // no answer, a refusal, or not a broker that speaks our protocol: as good as none
  }
  StatusCounts counts;
  counts.queued = status.queued;
  counts.running = status.running;
  counts.deferred_pending = status.deferred_pending;
  counts.deferred_running = status.deferred_running;
  counts.deferred_done = status.deferred_done;
  counts.deferred_dead = status.deferred_dead;
  counts.workers = status.workers.size();
  counts.clients = status.clients;
  for (const auto& worker : status.workers) counts.executors += worker.executors;
  return counts;
}

}  // namespace fanout::link
