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
const Counters& Broker::counters() const noexcept { return loop_->counters(); }
std::shared_ptr<const MetricsSnapshot> Broker::metrics() const { return loop_->metrics().snapshot(); }
std::optional<std::chrono::steady_clock::duration> Broker::since_loop_turned() const noexcept {
  return loop_->metrics().pulse().since_last();
}
bool Broker::ready() const noexcept { return loop_->metrics().ready(); }

void check_endpoint_allowed(const std::string& endpoint, bool insecure) {
  const auto scheme_end = endpoint.find("://");
  if (scheme_end == std::string::npos) {
    throw Error("broker: '" + endpoint + "' is not an endpoint (tcp://host:port, ipc://path, inproc://name)");
  }
  if (insecure) return;
  const std::string scheme = endpoint.substr(0, scheme_end);
  if (scheme == "ipc" || scheme == "inproc") return;
  if (scheme == "tcp") {
    std::string host = endpoint.substr(scheme_end + 3);
    const auto colon = host.rfind(':');
    if (colon != std::string::npos) host.resize(colon);
    if (sys::is_loopback_host(host)) return;
  }
  throw Error("broker: refusing to listen on " + endpoint +
              ": fanout has no authentication yet, so it binds loopback, ipc or inproc only; pass --insecure "
              "(FANOUT_INSECURE=1) to listen on other addresses of a network you trust");
}

}  // namespace fanout::broker
