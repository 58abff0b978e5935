#include "authenticator.hpp"

#include <array>
#include <cerrno>
#include <iterator>

#include <zmq_addon.hpp>

#include <fanout/error.hpp>

#include "printable.hpp"

namespace fanout::broker {

namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr std::size_t kLoggedLimit = 1024;

}  // namespace

Authenticator::Authenticator(zmq::context_t& context, std::shared_ptr<const KeyRing> keys, spdlog::logger& logger)
    : logger_(logger), socket_(context, zmq::socket_type::rep), keys_(std::move(keys)) {
  socket_.set(zmq::sockopt::linger, 0);
  try {
    socket_.bind(kZapEndpoint);
  } catch (const zmq::error_t& error) {
    throw Error(std::string("broker: cannot serve ZAP (authentication) at ") + kZapEndpoint + ": " + error.what() +
                " (one broker with keys per ZeroMQ context)");
  }
  // The socket moves to the thread here and is used by it alone from now on.
  thread_ = std::thread([this] { serve(); });
}

Authenticator::~Authenticator() {
  stop_.notify();
  thread_.join();
}

void Authenticator::set_keys(std::shared_ptr<const KeyRing> keys) {
  const std::lock_guard lock(mutex_);
  keys_.swap(keys);
  // The old ring is released outside the lock, with `keys`.
}

std::shared_ptr<const KeyRing> Authenticator::keys() const {
  const std::lock_guard lock(mutex_);
  return keys_;
}

void Authenticator::serve() {
  std::vector<zmq::message_t> request;
  while (true) {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, stop_.fd(), ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(-1));
    } catch (const zmq::error_t& error) {
      if (error.num() == EINTR) continue;
      if (error.num() == ETERM) return;
      logger_.error("broker: the authenticator stopped: {}", error.what());
      return;
    }
    if (items[1].revents & ZMQ_POLLIN) return;
    if ((items[0].revents & ZMQ_POLLIN) == 0) continue;
    request.clear();
    try {
      if (!zmq::recv_multipart(socket_, std::back_inserter(request), zmq::recv_flags::dontwait)) continue;
      answer(request);
    } catch (const zmq::error_t& error) {
      if (error.num() == ETERM) return;
      logger_.error("broker: the authenticator could not answer a request: {}", error.what());
    }
  }
}

// RFC 27: [version, request id, domain, address, routing id, mechanism, credentials...] in;
// [version, request id, status code, status text, user id, metadata] out.
void Authenticator::answer(std::vector<zmq::message_t>& request) {
  std::string request_id;
  if (request.size() >= 2) request_id = request[1].to_string();
  const auto reply = [&](const char* code, const std::string& text, const std::string& user) {
    std::array<zmq::const_buffer, 6> parts{zmq::str_buffer("1.0"), zmq::buffer(request_id), zmq::buffer(std::string_view(code)),
                                           zmq::buffer(text), zmq::buffer(user), zmq::const_buffer()};
    zmq::send_multipart(socket_, parts);
  };
  if (request.size() < 6 || request[0].to_string_view() != "1.0") return reply("400", "malformed ZAP request", "");
  const std::string address = request[3].to_string();
  if (request[5].to_string_view() != "CURVE" || request.size() != 7 || request[6].size() != 32) {
    return reply("400", "this broker accepts CurveZMQ clients with listed keys only", "");
  }
  std::array<char, 41> key{};
  zmq_z85_encode(key.data(), static_cast<const std::uint8_t*>(request[6].data()), 32);
  const std::string z85(key.data());
  const auto ring = keys();
  if (ring && ring->contains(z85)) return reply("200", "OK", z85);
  if (logged_.size() >= kLoggedLimit) logged_.clear();
  if (logged_.insert(z85).second) {
    logger_.warn("broker: refused a connection from {}: its key {} is not listed in --clients, --workers or --admins",
                 wire::printable(address, wire::kLogTextLimit), z85);
  }
  reply("400", "key not listed", "");
}

}  // namespace fanout::broker
