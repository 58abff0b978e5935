// status.cpp
#include "status.hpp"

#include <sstream>

#include <fanout/error.hpp>

#include "transport.hpp"

namespace fanout::broker {

std::optional<StatusCounts> query_counts(zmq::context_t& context, const std::string& endpoint,
                                        std::chrono::milliseconds timeout) {
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  wire::configure_socket(socket);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(endpoint);
  wire::OutMessage request;
  request.envelope().setStatusRequest();
  socket.send(request.frame(), zmq::send_flags::dontwait);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, left);
    zmq::message_t frame;
    if (!socket.recv(frame, zmq::recv_flags::dontwait)) continue;
    auto message = wire::InMessage::parse(std::move(frame));
    if (!message || !message->envelope().isStatus()) continue;
    const auto status = message->envelope().getStatus();
    StatusCounts counts;
    counts.queued = status.getQueued();
    counts.running = status.getRunning();
    counts.deferred_pending = status.getDeferredPending();
    counts.deferred_running = status.getDeferredRunning();
    counts.deferred_done = status.getDeferredDone();
    counts.deferred_dead = status.getDeferredDead();
    counts.workers = status.getWorkers().size();
    return counts;
  }
}

std::string status_report(zmq::context_t& context, const std::string& endpoint, std::chrono::milliseconds timeout) {
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  wire::configure_socket(socket);
  socket.connect(endpoint);
  wire::OutMessage request;
  request.envelope().setStatusRequest();
  socket.send(request.frame(), zmq::send_flags::none);

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      throw Error("no answer from a broker at " + endpoint + " within " + std::to_string(timeout.count()) + " ms");
    }
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, left);
    if (!(item.revents & ZMQ_POLLIN)) continue;
    zmq::message_t frame;
    (void)socket.recv(frame, zmq::recv_flags::none);
    std::string why;
    auto message = wire::InMessage::parse(std::move(frame), &why);
    if (!message) throw Error("unreadable answer from " + endpoint + ": " + why);
    const auto envelope = message->envelope();
    if (!envelope.isStatus()) continue;  // e.g. a heartbeat
    const auto status = envelope.getStatus();
    std::ostringstream out;
    out << "broker " << endpoint << "\n";
    out << "queued tasks: " << status.getQueued() << ", running: " << status.getRunning()
        << ", dropped messages: " << status.getDroppedMessages() << "\n";
    out << "deferred tasks: " << status.getDeferredPending() << " pending, " << status.getDeferredRunning()
        << " running, " << status.getDeferredDone() << " done, " << status.getDeferredDead() << " dead\n";
    out << "workers: " << status.getWorkers().size() << "\n";
    for (const auto worker : status.getWorkers()) {
      out << "  " << worker.getWorkerId().cStr() << ": " << worker.getProcesses() << " executor(s), "
          << worker.getFreeSlots() << " free slot(s), seen " << worker.getLastSeenMsAgo() << " ms ago, serves";
      for (const auto name : worker.getTaskNames()) out << " " << name.cStr();
      out << "\n";
    }
    return out.str();
  }
}

}  // namespace fanout::broker
