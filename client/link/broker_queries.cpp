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

std::string status_report(zmq::context_t& context, const std::string& endpoint, std::chrono::milliseconds timeout) {
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
  std::ostringstream out;
  out << "broker " << endpoint << "\n";
  out << "queued tasks: " << status.getQueued() << ", running: " << status.getRunning()
      << ", dropped messages: " << status.getDroppedMessages() << "\n";
  out << "deferred tasks: " << status.getDeferredPending() << " pending, " << status.getDeferredRunning()
      << " running, " << status.getDeferredDone() << " done, " << status.getDeferredDead() << " dead\n";
  out << "workers: " << status.getWorkers().size() << "\n";
  for (const auto worker : status.getWorkers()) {
    // Worker ids and task names are what workers announced: escaped (printable.hpp).
    out << "  " << wire::printable(text_of(worker.getWorkerId())) << ": " << worker.getProcesses() << " executor(s), "
        << worker.getFreeSlots() << " free slot(s), seen " << worker.getLastSeenMsAgo() << " ms ago, serves";
    for (const auto name : worker.getTaskNames()) out << " " << wire::printable(text_of(name));
    out << "\n";
  }
  return out.str();
}

}  // namespace fanout::link
