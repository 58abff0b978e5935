// A program that calls one task (example.square(3)) on the broker FANOUT_BROKER names, says how
// that went, and exits: a client program as users write them. The unreachable-broker test runs it
// against a port nobody listens on, the log test against a cluster.
//
// Prints "value N", or "error <type>: <what>" for what run() threw; exits 0 either way.
#include <chrono>
#include <cstdio>
#include <exception>

#include <fanout/fanout.hpp>

namespace {
const fanout::Task square{"example.square", [](int x) { return x * x; }};
}

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  try {
    const auto [value] = fanout::Concurrency::run(square(3));
    std::printf("value %d\n", value);
  } catch (const fanout::TaskError& error) {
    std::printf("error fanout::TaskError: %s\n", error.what());
  } catch (const fanout::Error& error) {
    std::printf("error fanout::Error: %s\n", error.what());
  } catch (const std::exception& error) {
    std::printf("error std::exception: %s\n", error.what());
  }
  std::fflush(stdout);
  return 0;
}
