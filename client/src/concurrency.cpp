// concurrency.cpp: driver names and the default driver.
#include <fanout/concurrency.hpp>

#include <cstdlib>
#include <mutex>

#include "backends.hpp"

namespace fanout {

namespace {

struct NamedBackend {
  std::string_view name;
  std::shared_ptr<detail::Backend> (*make)();
};

constexpr NamedBackend kBackends[] = {
    {"process", &detail::make_process_backend},
    {"fork", &detail::make_fork_backend},
    {"sync", &detail::make_sync_backend},
};

std::string valid_names() {
  std::string names;
  for (const auto& backend : kBackends) {
    if (!names.empty()) names += ", ";
    names += backend.name;
  }
  return names;
}

// One engine per name for the life of the program: the process driver's pool is reused by every
// batch, and the stateless ones cost nothing to share.
std::shared_ptr<detail::Backend> backend_named(std::string_view name, const char* origin) {
  static std::mutex mutex;
  static std::shared_ptr<detail::Backend> made[std::size(kBackends)];
  for (std::size_t i = 0; i < std::size(kBackends); ++i) {
    if (kBackends[i].name != name) continue;
    const std::lock_guard lock(mutex);
    if (!made[i]) made[i] = kBackends[i].make();
    return made[i];
  }
  throw Error("unknown driver '" + std::string(name) + "'" + origin + "; valid drivers: " + valid_names());
}

}  // namespace

Driver Concurrency::driver(std::string_view name) { return Driver(backend_named(name, "")); }

Driver Concurrency::driver() {
  const char* configured = std::getenv("FANOUT_DRIVER");
  if (configured != nullptr && *configured != '\0') {
    return Driver(backend_named(configured, " (from FANOUT_DRIVER)"));
  }
  return Driver(backend_named("process", ""));
}

std::vector<std::string> Concurrency::drivers() {
  std::vector<std::string> names;
  for (const auto& backend : kBackends) names.emplace_back(backend.name);
  return names;
}

}  // namespace fanout
