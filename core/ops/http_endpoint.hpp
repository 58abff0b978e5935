// http_endpoint.hpp: the operations endpoint of fanout-broker and fanout-worker (`--metrics
// ADDR`): a small HTTP server, cpp-httplib's, serving /metrics (Prometheus text), /healthz (the
// process's loop turns) and /readyz (the process does its job: a broker serves, a worker is
// registered with its broker), and whatever pages its owner adds (the broker's status page).
//
// Owns the listening socket, the thread that accepts on it and a pool of two threads that answer.
// The handlers run on those threads: they must read only what the process's loop publishes for
// them (atomics, a snapshot behind a mutex held for a copy), never the loop's own structures, so
// that a scrape never waits on the loop and the loop never waits on a scrape.
//
// Promises: binds in the constructor, so a bad or busy address is an error before the process
// starts work; each connection serves one request (no keep-alive that could hold the small pool);
// a handler that throws answers 500 with the reason. Does not: authenticate anyone, hence
// loopback only unless the operator says otherwise (parse_http_address).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace httplib {
class Server;
}

namespace fanout::ops {

struct HttpAddress {
  std::string host;  // as given: 127.0.0.1, ::1 (given as [::1]), localhost, 0.0.0.0...
  std::uint16_t port = 0;  // 0: the OS picks one (HttpEndpoint::port() says which)
};

// Parses "HOST:PORT" ("[::1]:PORT" for IPv6). Throws fanout::Error naming `text` when it is not
// of that form.
HttpAddress parse_http_address(const std::string& text);

// Throws fanout::Error when `address` is not loopback (127.0.0.0/8, ::1, localhost) and the
// operator did not say `exposed` (--expose-metrics, or --insecure): the endpoint has no
// authentication.
void check_http_address_allowed(const HttpAddress& address, bool exposed);

// A probe's answer: 200 with `text` when `ok`, else 503 with it.
struct Probe {
  bool ok = false;
  std::string text;
};

// A further page (the broker's status page and its JSON): GET `path` answers 200 with what
// `body` returns, as `content_type`.
struct HttpPage {
  std::string path;
  std::string content_type;
  std::function<std::string()> body;
};

struct HttpHandlers {
  std::function<std::string()> metrics;  // the Prometheus text of /metrics
  std::function<Probe()> health;         // /healthz
  std::function<Probe()> ready;          // /readyz
  std::vector<HttpPage> pages;           // anything else served
};

class HttpEndpoint {
 public:
  // Binds `address` and starts serving. Throws fanout::Error naming the address when it cannot
  // listen there (in use, not an address of this machine), with the system's reason.
  HttpEndpoint(const HttpAddress& address, HttpHandlers handlers);
  // Stops accepting, waits for the answers in progress and joins the threads.
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  // http://HOST:PORT, with the port the OS picked.
  const std::string& url() const noexcept { return url_; }

 private:
  HttpHandlers handlers_;
  std::unique_ptr<httplib::Server> server_;
  std::uint16_t port_ = 0;
  std::string url_;
  std::thread thread_;
};

}  // namespace fanout::ops
