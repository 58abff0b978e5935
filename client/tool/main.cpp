// fanout: the command-line tool. `fanout status` asks a broker what it serves; `fanout run`
// (GNU-parallel-like) follows with process pools.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <zmq.hpp>

#include <fanout/error.hpp>

#include "status.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 2;
constexpr int kExitNoBroker = 4;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fanout: run batches of jobs in parallel, here or on a cluster"};
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  fanout status --broker tcp://127.0.0.1:5555\n"
      "  FANOUT_BROKER=tcp://127.0.0.1:5555 fanout status\n"
      "\n"
      "Exit codes: 0 success, 2 bad usage, 4 no broker answered.");

  std::string broker;
  int timeout_ms = 3000;
  auto* status = app.add_subcommand("status", "Workers, their executors and free slots, and the queue depth");
  status->add_option("--broker", broker, "Broker endpoint")->envname("FANOUT_BROKER")->required();
  status->add_option("--timeout-ms", timeout_ms, "How long to wait for an answer")->check(CLI::Range(1, 600000));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? kExitOk : kExitUsage;
  }

  zmq::context_t context;
  try {
    std::cout << fanout::broker::status_report(context, broker, std::chrono::milliseconds(timeout_ms));
  } catch (const fanout::Error& error) {
    std::cerr << "fanout status: " << error.what() << "\n";
    return kExitNoBroker;
  }
  return kExitOk;
}
