// key_options.hpp: --key / --broker-key for every command of the `fanout` tool, and `fanout keygen`.
//
// The flags are the command-line form of FANOUT_KEY and FANOUT_BROKER_KEY: given, they set those
// variables for this process, so that every connection the command makes (wire::connect_to_broker)
// uses them, as it would use the environment's. Checked before anything connects: a bad or too
// open key file is a usage error, said once.
#pragma once

#include <iosfwd>
#include <string>

#include <CLI/CLI.hpp>

namespace fanout::tool {

struct KeyOptions {
  std::string key;         // --key: this peer's secret key file
  std::string broker_key;  // --broker-key: the broker's public key file
};

// Adds --key and --broker-key to `command`, bound to `options`.
void add_key_options(CLI::App& command, KeyOptions& options);

// Puts the flags given into the environment and reads the keys once. Returns false, having
// written why on `err` (prefixed with `name`), when they cannot be used.
bool use_key_options(const KeyOptions& options, const std::string& name, std::ostream& err);

// `fanout keygen NAME`: writes NAME.key and NAME.pub, says where on `out`. Returns the exit status
// (0, or 1 having written why on `err`: a file exists, a directory cannot be written).
int keygen(const std::string& name, std::ostream& out, std::ostream& err);

}  // namespace fanout::tool
