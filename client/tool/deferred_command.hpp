// deferred_command.hpp: `fanout deferred list|retry|drop`, the dead deferred tasks of a broker
// with a journal (or of a program's local service): what failed and why, and putting them back or
// forgetting them.
#pragma once

#include "key_options.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace fanout::tool {

// Exit statuses of `fanout deferred`.
inline constexpr int kDeferredExitOk = 0;          // listed (even none), or retried/dropped at least one task
inline constexpr int kDeferredExitNothing = 1;     // retry/drop: no dead task matched
inline constexpr int kDeferredExitUsage = 2;       // bad usage
inline constexpr int kDeferredExitRefused = 3;     // the broker cannot serve it: no journal, unknown receipt
inline constexpr int kDeferredExitNoBroker = 4;    // no broker answered (or the local service did not start)

enum class DeferredAction { list, retry, drop };

struct DeferredOptions {
  DeferredAction action = DeferredAction::list;
  std::string broker;          // --broker; FANOUT_BROKER is read by run_deferred when neither is given
  std::string program;         // --program: that program's local service instead of a broker
  bool all = false;            // retry/drop: every dead task
  std::string receipt;         // only this batch
  std::optional<std::uint32_t> index;  // only this task of `receipt`
  bool json = false;
  std::chrono::milliseconds timeout{3000};
  KeyOptions keys;             // --key, --broker-key
};

// Adds `deferred` and its subcommands `list`, `retry`, `drop` to `app`, their flags bound to
// `options` (the action is set by whichever subcommand is parsed). Returns the `deferred` command.
CLI::App* add_deferred_command(CLI::App& app, DeferredOptions& options);

// Sends the request and prints the answer (a table or JSON on `out`, complaints on `err`).
// Returns one of the exit statuses above; never throws.
int run_deferred(const DeferredOptions& options, std::ostream& out, std::ostream& err);

// The footer of `fanout deferred --help`.
extern const char* const kDeferredFooter;

}  // namespace fanout::tool
