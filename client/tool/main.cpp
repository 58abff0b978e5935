// fanout: the command-line tool. `fanout status` asks a broker what it serves (status_command.hpp); `fanout run` runs
// a command for each argument, N at a time, here or on remote workers (GNU parallel compatible:
// its command line in run_options.hpp, its loop in run_loop.cpp); `fanout deferred` lists,
// retries or drops dead deferred tasks (deferred_command.hpp).
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <zmq.hpp>

#include <fanout/error.hpp>

#include "deferred_command.hpp"
#include "key_options.hpp"
#include "run_command.hpp"
#include "run_options.hpp"
#include "status_command.hpp"
#include <fanout/version.hpp>

namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 2;

// `fanout run ...`: its own parser (GNU parallel's command line, run_options.hpp), then run().
// Returns the exit status: 255 for a usage error, as GNU parallel.
int run_command(const std::vector<std::string>& words) {
  using fanout::tool::kRunExitError;
  const auto environment = [](const char* name) {
    const char* value = std::getenv(name);
    return value != nullptr ? std::string(value) : std::string();
  };
  try {
    const auto parsed = fanout::tool::parse_run_command_line(words, environment("FANOUT_JOBS"), environment("FANOUT_BROKER"));
    switch (parsed.action) {
      case fanout::tool::ParsedRun::Action::help:
        std::cout << fanout::tool::run_help();
        return kExitOk;
      case fanout::tool::ParsedRun::Action::version:
        std::cout << "fanout " << fanout::kVersion << "\n";
        return kExitOk;
      case fanout::tool::ParsedRun::Action::run:
        break;
    }
    if (!fanout::tool::use_key_options({parsed.options.key, parsed.options.broker_key}, "fanout run", std::cerr)) {
      return kRunExitError;
    }
    return fanout::tool::run(parsed.options);
  } catch (const fanout::tool::UsageError& error) {
    std::cerr << "fanout run: " << error.what() << "\nRun `fanout run --help` for the options.\n";
  } catch (const std::exception& error) {
    std::cerr << "fanout run: " << error.what() << "\n";
  }
  return kRunExitError;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fanout: run batches of jobs in parallel, here or on a cluster"};
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  fanout status --broker tcp://127.0.0.1:5555\n"
      "  FANOUT_BROKER=tcp://127.0.0.1:5555 fanout status\n"
      "  fanout run -j 2 'echo {}' ::: a b c\n"
      "  fanout deferred list --broker tcp://127.0.0.1:5555\n"
      "  fanout keygen alice                                # alice.key (secret, 0600) and alice.pub\n"
      "  fanout status --broker tcp://10.0.0.5:5555 --key admin.key --broker-key broker.pub\n"
      "\n"
      "A broker with keys (docs/security.md) needs this client's secret key and the broker's public\n"
      "key: --key/--broker-key or FANOUT_KEY/FANOUT_BROKER_KEY, on every command.\n"
      "\n"
      "Exit codes: 0 success, 1 keygen could not write, 2 bad usage (a bad or too open key file\n"
      "included), 4 no broker answered (or it refused the key); `fanout run --help` and\n"
      "`fanout deferred --help` for theirs.");

  fanout::tool::StatusOptions status_options;
  auto* status = fanout::tool::add_status_command(app, status_options);
  fanout::tool::KeyOptions status_keys;
  fanout::tool::add_key_options(*status, status_keys);

  std::string keygen_name;
  auto* keygen = app.add_subcommand("keygen", "Make a CurveZMQ key pair: NAME.key (secret, mode 0600) and NAME.pub");
  keygen->add_option("NAME", keygen_name, "Path and name of the pair, without extension")->required();

  // `fanout run` has a parser of its own (GNU parallel's command line); it is listed here for
  // --help, and taken over below before CLI11 sees its words.
  app.add_subcommand("run", "Run a command for each argument, N at a time (GNU parallel compatible; run --help)")
      ->prefix_command();
  app.set_version_flag("-V,--version", std::string("fanout ") + fanout::kVersion);

  fanout::tool::DeferredOptions deferred_options;
  auto* deferred = fanout::tool::add_deferred_command(app, deferred_options);

  if (argc > 1 && std::strcmp(argv[1], "run") == 0) return run_command(std::vector<std::string>(argv + 2, argv + argc));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? kExitOk : kExitUsage;
  }

  if (deferred->parsed()) return fanout::tool::run_deferred(deferred_options, std::cout, std::cerr);
  if (keygen->parsed()) return fanout::tool::keygen(keygen_name, std::cout, std::cerr);
  if (!fanout::tool::use_key_options(status_keys, "fanout status", std::cerr)) return kExitUsage;

  if (status->parsed()) return fanout::tool::run_status(status_options, std::cout, std::cerr);
  return kExitUsage;
}
