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

std::optional<StatusCounts> query_counts(zmq::context_t& context, const std::string& endpoint,
                                        std::chrono::milliseconds timeout) {
  wire::OutMessage request;
  request.envelope().setStatusRequest();
  std::optional<wire::InMessage> message;
  try {
    message = ask_broker(context, endpoint, request.frame(), wire::Envelope::STATUS, timeout);
  } catch (const Error&) {
    return std::nullopt;  // not a broker that speaks our protocol: as good as none
  }
  if (!message || !message->envelope().isStatus()) return std::nullopt;
  const auto status = message->envelope().getStatus();
  StatusCounts counts;
  counts.queued = status.getQueued();
  counts.running = status.getRunning();
  counts.deferred_pending = status.getDeferredPending();
  counts.deferred_running = status.getDeferredRunning();
  counts.deferred_done = status.getDeferredDone();
  counts.deferred_dead = status.getDeferredDead();
  counts.workers = status.getWorkers().size();
  for (const auto worker : status.getWorkers()) counts.executors += worker.getProcesses();
  return counts;
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
  out.queued = status.getQueued();
  out.running = status.getRunning();
  out.deferred_pending = status.getDeferredPending();
  out.deferred_running = status.getDeferredRunning();
  out.deferred_done = status.getDeferredDone();
  out.deferred_dead = status.getDeferredDead();
  out.refused_messages = status.getDroppedMessages();
  for (const auto worker : status.getWorkers()) {
    WorkerState state;
    state.id = text_of(worker.getWorkerId());
    state.executors = worker.getProcesses();
    state.free_credit = worker.getFreeSlots();
    state.last_seen_ms = worker.getLastSeenMsAgo();
    for (const auto name : worker.getTaskNames()) state.task_names.emplace_back(text_of(name));
    out.workers.push_back(std::move(state));
  }
  return out;
}

std::string status_text(const BrokerStatus& status) {
  std::ostringstream out;
  out << "broker " << status.endpoint << "\n";
  out << "queued tasks: " << status.queued << ", running: " << status.running
      << ", refused messages: " << status.refused_messages << " (by reason: /metrics)\n";
  out << "deferred tasks: " << status.deferred_pending << " pending, " << status.deferred_running << " running, "
      << status.deferred_done << " done, " << status.deferred_dead << " dead\n";
  std::uint64_t executors = 0;
  for (const auto& worker : status.workers) executors += worker.executors;
  out << "workers: " << status.workers.size() << ", executors: " << executors << "\n";
  for (const auto& worker : status.workers) {
    // Worker ids and task names are what workers announced: escaped (printable.hpp). Credit (how
    // many tasks the broker may send ahead) is not a count of executors: it is shown apart.
    out << "  " << wire::printable(worker.id, wire::kLogTextLimit) << ": " << worker.executors
        << " executor(s); free credit " << worker.free_credit << "; seen " << worker.last_seen_ms << " ms ago; serves";
    for (const auto& name : worker.task_names) out << " " << wire::printable(name, wire::kLogTextLimit);
    out << "\n";
  }
  return out.str();
}

std::string status_report(zmq::context_t& context, const std::string& endpoint, std::chrono::milliseconds timeout) {
  return status_text(query_status(context, endpoint, timeout));
}

}  // namespace fanout::link
