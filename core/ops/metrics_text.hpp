// metrics_text.hpp: the Prometheus text format of one scrape, built from values the caller has at
// hand (a snapshot its loop published), with prometheus-cpp's metric types and text serializer.
//
// One MetricsText per scrape: add every family's values, then text(). Names follow Prometheus's
// conventions (base units, `_total` for counters); prometheus-cpp refuses an invalid name or
// label by throwing std::invalid_argument, which is a bug of the caller, not of the input.
//
// Threads: one at a time (an HTTP handler's). Owns its registry; shares nothing.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "ops/histogram.hpp"

namespace prometheus {
class Registry;
}

namespace fanout::ops {

class MetricsText {
 public:
  using Labels = std::map<std::string, std::string>;

  // Starts with fanout_build_info{version="<FANOUT_VERSION>"} 1.
  MetricsText();
  ~MetricsText();
  MetricsText(const MetricsText&) = delete;
  MetricsText& operator=(const MetricsText&) = delete;

  // One value of family `name` (created with `help` on first use) under `labels`.
  void gauge(const std::string& name, const std::string& help, double value, const Labels& labels = {});
  void counter(const std::string& name, const std::string& help, double value, const Labels& labels = {});
  void histogram(const std::string& name, const std::string& help, const Histogram& histogram,
                 const Labels& labels = {});

  // The exposition text (text/plain; version=0.0.4).
  std::string text() const;

  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct Families;
  std::unique_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
};

}  // namespace fanout::ops
