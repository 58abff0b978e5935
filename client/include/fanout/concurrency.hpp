// fanout/concurrency.hpp: the facade, after Laravel's Concurrency.
//
//   auto [a, b] = fanout::Concurrency::run(square(3), square(4));
//   auto [x, y] = fanout::Concurrency::driver("fork").run([&] { return f(); }, [&] { return g(); });
//   fanout::Receipt receipt = fanout::Concurrency::defer(square(5), square(6));  // once it is safe
//
// The default driver comes from the FANOUT_DRIVER environment variable, else "process".
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fanout/driver.hpp>

namespace fanout {

class Concurrency {
 public:
  // The driver named `name` ("process", "fork" or "sync"). Throws fanout::Error listing the valid
  // names for any other. Getting the process driver in local mode (after fanout::init, without
  // FANOUT_BROKER) starts its pool of worker processes in the background, so that the program's
  // own work hides the start; the other drivers start nothing until a batch.
  static Driver driver(std::string_view name);
  // The default driver: FANOUT_DRIVER, else "process".
  static Driver driver();
  // The valid driver names.
  static std::vector<std::string> drivers();

  // Every batch form of Driver::run / Driver::settle, on the default driver.
  template <class... A>
  static auto run(const A&... batch) -> decltype(std::declval<Driver>().run(batch...)) {
    return driver().run(batch...);
  }

  // Every batch form of Driver::defer, on the default driver.
  template <class... A>
  static auto defer(const A&... batch) -> decltype(std::declval<Driver>().defer(batch...)) {
    return driver().defer(batch...);
  }

  template <class... A>
  static auto settle(const A&... batch) -> decltype(std::declval<Driver>().settle(batch...)) {
    return driver().settle(batch...);
  }
};

}  // namespace fanout
