#include "ops/http_endpoint.hpp"

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <exception>

#include <httplib.h>

#include <fanout/error.hpp>

#include "ops/metrics_text.hpp"
#include "system/machine.hpp"

namespace fanout::ops {

namespace {

constexpr std::size_t kAnsweringThreads = 2;
constexpr auto kIoTimeout = std::chrono::seconds(5);
constexpr auto kStartPatience = std::chrono::seconds(10);

std::string printable_host(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// Runs a handler: what it throws becomes a 500 naming the reason, never a dead thread.
template <typename Body>
void answer(httplib::Response& response, Body&& body) {
  try {
    body();
  } catch (const std::exception& error) {
    response.status = 500;
    response.set_content(std::string("internal error: ") + error.what() + "\n", "text/plain");
  }
}

void probe(httplib::Response& response, const std::function<Probe()>& check) {
  answer(response, [&] {
    const Probe result = check ? check() : Probe{true, "ok"};
    response.status = result.ok ? 200 : 503;
    response.set_content(result.text + "\n", "text/plain");
  });
}

}  // namespace

HttpAddress parse_http_address(const std::string& text) {
  const auto bad = [&](const std::string& why) {
    return Error("metrics address '" + text + "' " + why + " (expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464)");
  };
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) throw bad("has no host and port");
  HttpAddress address;
  address.host = text.substr(0, colon);
  if (address.host.size() > 2 && address.host.front() == '[' && address.host.back() == ']') {
    address.host = address.host.substr(1, address.host.size() - 2);
  } else if (address.host.find(':') != std::string::npos) {
    throw bad("has an IPv6 host without brackets");
  }
  const std::string port = text.substr(colon + 1);
  unsigned value = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || error != std::errc() || end != port.data() + port.size() || value > 65535) {
    throw bad("has no valid port");
  }
  address.port = static_cast<std::uint16_t>(value);
  return address;
}

void check_http_address_allowed(const HttpAddress& address, bool exposed) {
  if (exposed || sys::is_loopback_host(address.host)) return;
  throw Error("refusing to serve metrics on " + printable_host(address.host) + ":" + std::to_string(address.port) +
              ": the endpoint has no authentication, so it listens on loopback only; pass --expose-metrics "
              "(FANOUT_EXPOSE_METRICS=1) to listen on other addresses of a network you trust");
}

HttpEndpoint::HttpEndpoint(const HttpAddress& address, HttpHandlers handlers)
    : handlers_(std::move(handlers)), server_(std::make_unique<httplib::Server>()) {
  auto& server = *server_;
  server.new_task_queue = [] { return new httplib::ThreadPool(kAnsweringThreads); };
  server.set_keep_alive_max_count(1);
  server.set_read_timeout(kIoTimeout);
  server.set_write_timeout(kIoTimeout);
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    answer(response, [&] { response.set_content(handlers_.metrics ? handlers_.metrics() : "", MetricsText::kContentType); });
  });
  server.Get("/healthz", [this](const httplib::Request&, httplib::Response& response) { probe(response, handlers_.health); });
  server.Get("/readyz", [this](const httplib::Request&, httplib::Response& response) { probe(response, handlers_.ready); });
  for (const HttpPage& page : handlers_.pages) {
    // Paths are fixed strings of ours, but cpp-httplib reads them as regular expressions.
    std::string pattern;
    for (const char c : page.path) pattern += std::isalnum(static_cast<unsigned char>(c)) || c == '/' ? std::string(1, c) : std::string("\\") + c;
    server.Get(pattern, [&page](const httplib::Request&, httplib::Response& response) {
      answer(response, [&] {
        response.set_content(page.body(), page.content_type);
        // Live figures: never from a cache.
        response.set_header("Cache-Control", "no-store");
      });
    });
  }

  const std::string where = printable_host(address.host) + ":" + std::to_string(address.port);
  errno = 0;
  const int port = address.port == 0 ? server.bind_to_any_port(address.host)
                                     : (server.bind_to_port(address.host, address.port) ? address.port : -1);
  if (port <= 0) {
    const int error = errno;
    throw Error("cannot serve metrics on " + where + ": " +
                (error != 0 ? std::string(std::strerror(error)) : std::string("cannot bind there")) +
                " (is another process listening there, or is it not an address of this machine?)");
  }
  port_ = static_cast<std::uint16_t>(port);
  url_ = "http://" + printable_host(address.host) + ":" + std::to_string(port_);
  thread_ = std::thread([&server] { server.listen_after_bind(); });
  // stop() before the server runs would be lost: wait until it does.
  const auto deadline = std::chrono::steady_clock::now() + kStartPatience;
  while (!server.is_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

HttpEndpoint::~HttpEndpoint() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace fanout::ops
