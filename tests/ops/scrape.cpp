#include "scrape.hpp"

#include <charconv>
#include <sstream>

#include <httplib.h>

namespace fanout_test {

std::optional<HttpAnswer> http_get(const std::string& url, const std::string& path, std::chrono::milliseconds limit) {
  httplib::Client client(url);
  client.set_connection_timeout(limit);
  client.set_read_timeout(limit);
  client.set_write_timeout(limit);
  const auto answer = client.Get(path);
  if (!answer) return std::nullopt;
  return HttpAnswer{answer->status, answer->body};
}

std::optional<double> sample(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() <= series.size() || line.compare(0, series.size(), series) != 0 || line[series.size()] != ' ') {
      continue;
    }
    return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

std::optional<double> scrape(const std::string& url, const std::string& series) {
  const auto answer = http_get(url, "/metrics");
  if (!answer || answer->status != 200) return std::nullopt;
  return sample(answer->body, series);
}

std::optional<std::string> url_after(const std::string& log, const std::string& marker) {
  const auto at = log.find(marker);
  if (at == std::string::npos) return std::nullopt;
  std::string url = log.substr(at + marker.size());
  url = url.substr(0, url.find_first_of(" \n"));
  if (const auto path = url.find("/metrics"); path != std::string::npos) url.resize(path);
  return url;
}

}  // namespace fanout_test
