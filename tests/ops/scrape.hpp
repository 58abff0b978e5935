// scrape.hpp: what the operations tests ask of an HTTP endpoint, over real HTTP (cpp-httplib's
// client): one GET with a deadline, a sample of a Prometheus text, and the endpoint's address as
// a process logged it.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace fanout_test {

struct HttpAnswer {
  int status = 0;
  std::string body;
};

// GET `url` + `path` (url: http://HOST:PORT); nullopt when no answer came within `limit`.
std::optional<HttpAnswer> http_get(const std::string& url, const std::string& path,
                                   std::chrono::milliseconds limit = std::chrono::seconds(5));

// The value of the sample `series` (its name and labels exactly as the text writes them, e.g.
// `fanout_broker_tasks_completed_total{outcome="success"}`) in a Prometheus text; nullopt when
// the text has no such sample.
std::optional<double> sample(const std::string& text, const std::string& series);

// The value of `series` scraped from `url` now; nullopt when the endpoint did not answer 200 or
// has no such sample.
std::optional<double> scrape(const std::string& url, const std::string& series);

// The URL after `marker` in `log`, up to the next space, "/metrics" or end of line
// ("serving metrics on http://127.0.0.1:4242/metrics" gives http://127.0.0.1:4242).
std::optional<std::string> url_after(const std::string& log, const std::string& marker);

}  // namespace fanout_test
