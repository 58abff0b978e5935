#include "key_options.hpp"

#include <cstdlib>
#include <ostream>

#include <fanout/error.hpp>

#include "keys.hpp"

namespace fanout::tool {

void add_key_options(CLI::App& command, KeyOptions& options) {
  command.add_option("--key", options.key, "This client's secret key file, for a broker with keys (env FANOUT_KEY)");
  command.add_option("--broker-key", options.broker_key, "The broker's public key file (env FANOUT_BROKER_KEY)");
}

bool use_key_options(const KeyOptions& options, const std::string& name, std::ostream& err) {
  if (!options.key.empty()) ::setenv("FANOUT_KEY", options.key.c_str(), 1);
  if (!options.broker_key.empty()) ::setenv("FANOUT_BROKER_KEY", options.broker_key.c_str(), 1);
  try {
    (void)wire::client_keys_from_env();
  } catch (const Error& error) {
    err << name << ": " << error.what() << "\n";
    return false;
  }
  return true;
}

int keygen(const std::string& name, std::ostream& out, std::ostream& err) {
  try {
    const auto pair = wire::write_key_files(name);
    out << "secret key: " << name << ".key (mode 0600: keep it on the machine that uses it)\n"
        << "public key: " << name << ".pub " << pair.public_key << "\n";
    return 0;
  } catch (const Error& error) {
    err << "fanout keygen: " << error.what() << "\n";
    return 1;
  }
}

}  // namespace fanout::tool
