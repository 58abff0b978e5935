#include "ops/metrics_text.hpp"

#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <fanout/version.hpp>

namespace fanout::ops {

// Families by name: prometheus-cpp merges a family registered twice only when its help matches,
// so each is built once and looked up after.
struct MetricsText::Families {
  std::map<std::string, prometheus::Family<prometheus::Gauge>*> gauges;
  std::map<std::string, prometheus::Family<prometheus::Counter>*> counters;
  std::map<std::string, prometheus::Family<prometheus::Histogram>*> histograms;
};

MetricsText::MetricsText()
    : registry_(std::make_unique<prometheus::Registry>()), families_(std::make_unique<Families>()) {
  gauge("fanout_build_info", "The version of fanout this process runs (the value is always 1)", 1,
        {{"version", FANOUT_VERSION}});
}

MetricsText::~MetricsText() = default;

void MetricsText::gauge(const std::string& name, const std::string& help, double value, const Labels& labels) {
  auto& family = families_->gauges[name];
  if (family == nullptr) family = &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_);
  family->Add(labels).Set(value);
}

void MetricsText::counter(const std::string& name, const std::string& help, double value, const Labels& labels) {
  auto& family = families_->counters[name];
  if (family == nullptr) family = &prometheus::BuildCounter().Name(name).Help(help).Register(*registry_);
  family->Add(labels).Increment(value);
}

void MetricsText::histogram(const std::string& name, const std::string& help, const Histogram& histogram,
                            const Labels& labels) {
  auto& family = families_->histograms[name];
  if (family == nullptr) family = &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_);
  const auto bounds = histogram.bounds();
  const auto counts = histogram.counts();
  auto& metric = family->Add(labels, prometheus::Histogram::BucketBoundaries(bounds.begin(), bounds.end()));
  metric.ObserveMultiple(std::vector<double>(counts.begin(), counts.end()), histogram.sum());
}

std::string MetricsText::text() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

}  // namespace fanout::ops
