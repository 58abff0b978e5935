#include "intruder.hpp"

#include <algorithm>

namespace security_test {

Intruder::Intruder(zmq::context_t& context, const std::string& endpoint, std::optional<wire::ClientKeys> keys,
                   const std::string& routing_id)
    : socket_(context, zmq::socket_type::dealer) {
  wire::configure_socket(socket_);
  if (!routing_id.empty()) socket_.set(zmq::sockopt::routing_id, routing_id);
  if (keys) wire::apply_client_keys(socket_, *keys);
  socket_.connect(endpoint);
}

void Intruder::send(zmq::message_t frame) { socket_.send(frame, zmq::send_flags::dontwait); }

std::optional<wire::InMessage> Intruder::receive(std::chrono::milliseconds limit) {
  zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, limit);
  zmq::message_t frame;
  if (!socket_.recv(frame, zmq::recv_flags::dontwait)) return std::nullopt;
  auto message = wire::InMessage::parse(std::move(frame), nullptr, wire::kDefaultMaxFrameBytes, wire::InMessage::Check::whole);
  if (!message) return std::nullopt;
  kinds_.push_back(message->envelope().which());
  if (message->envelope().isError()) errors_.emplace_back(message->envelope().getError().getMessage().cStr());
  return message;
}

std::optional<wire::InMessage> Intruder::wait_for(Kind which, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto message = receive(left);
    if (message && message->envelope().which() == which) return message;
  }
}

void Intruder::listen(std::chrono::milliseconds period) {
  const auto deadline = std::chrono::steady_clock::now() + period;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;
    (void)receive(left);
  }
}

std::size_t Intruder::count(Kind which) const { return static_cast<std::size_t>(std::count(kinds_.begin(), kinds_.end(), which)); }

std::string Intruder::errors() const {
  std::string all;
  for (const auto& error : errors_) all += error + "\n";
  return all;
}

}  // namespace security_test
