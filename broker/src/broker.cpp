// broker.cpp: the Broker facade over its loop (loop.hpp), and the rule for where it may listen.
#include <fanout/broker/broker.hpp>

#include <fanout/error.hpp>

#include "loop.hpp"
#include "system/machine.hpp"

namespace fanout::broker {

Broker::Broker(Config config, zmq::context_t& context) : loop_(std::make_unique<Loop>(std::move(config), context)) {}
Broker::~Broker() = default;
const std::vector<std::string>& Broker::endpoints() const noexcept { return loop_->endpoints(); }
void Broker::run() { loop_->run(); }
void Broker::stop() noexcept { loop_->stop(); }
void Broker::reload_keys() noexcept { loop_->reload_keys(); }
const Counters& Broker::counters() const noexcept { return loop_->counters(); }
std::shared_ptr<const MetricsSnapshot> Broker::metrics() const { return loop_->metrics().snapshot(); }
std::optional<std::chrono::steady_clock::duration> Broker::since_loop_turned() const noexcept {
  return loop_->metrics().pulse().since_last();
}
bool Broker::ready() const noexcept { return loop_->metrics().ready(); }

bool is_exposed_endpoint(const std::string& endpoint) {
  const auto scheme_end = endpoint.find("://");
  if (scheme_end == std::string::npos) return true;
  const std::string scheme = endpoint.substr(0, scheme_end);
  if (scheme == "ipc" || scheme == "inproc") return false;
  if (scheme == "tcp") {
    std::string host = endpoint.substr(scheme_end + 3);
    const auto colon = host.rfind(':');
    if (colon != std::string::npos) host.resize(colon);
    return !sys::is_loopback_host(host);
  }
  return true;
}

void check_endpoint_allowed(const std::string& endpoint, bool insecure, bool secured) {
  const auto scheme_end = endpoint.find("://");
  if (scheme_end == std::string::npos) {
    throw Error("broker: '" + endpoint + "' is not an endpoint (tcp://host:port, ipc://path, inproc://name)");
  }
  const std::string scheme = endpoint.substr(0, scheme_end);
  if (scheme != "tcp" && scheme != "ipc" && scheme != "inproc") {
    if (insecure) return;  // as before: the operator's call, and ZeroMQ's to refuse
    throw Error("broker: refusing to listen on " + endpoint + ": not a tcp, ipc or inproc endpoint");
  }
  if (insecure || secured || !is_exposed_endpoint(endpoint)) return;
  throw Error("broker: refusing to listen on " + endpoint +
              ": another host could connect and run anything, and this broker has no keys; give it keys "
              "(--key broker.key --clients DIR --workers DIR, see docs/security.md) or, on a network you trust, "
              "pass --insecure (FANOUT_INSECURE=1)");
}

}  // namespace fanout::broker
