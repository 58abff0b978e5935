// roles.hpp: who may say what to the broker, by the key a peer authenticated with (CurveZMQ,
// docs/security.md).
//
// A broker with keys (Config::trust) lists public keys in directories, one directory per role:
// clients submit, cancel and defer batches; workers announce, take tasks and report results,
// output and executor loss; admins ask for the status and manage every deferred batch. A key
// listed in several directories has each of their roles. ZAP (authenticator.hpp) lets only listed
// keys connect; every message is then checked again here, by the key it came with (ZeroMQ's
// "User-Id" property, which the authenticator sets to the key's Z85 text), so that a key removed
// on SIGHUP loses its roles at once, even on a connection made before.
//
// Owns: KeyRing (keys and their roles, immutable once built; shared with the ZAP thread through a
// shared_ptr) and RefusalLog (which refusals were logged already). Threads: KeyRing is read from
// any thread; load_key_ring and RefusalLog on the loop's thread.
//
// Promises: a broker without keys gives every peer every role (loopback, ipc, inproc: today's
// behaviour, local mode). A key file that cannot be read makes load_key_ring throw, naming it:
// the broker never runs with fewer keys than the operator listed without saying so.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include <fanout/broker/broker.hpp>

#include "refusal.hpp"
#include "wire.hpp"

namespace fanout::broker {

enum Role : std::uint8_t {
  kClientRole = 1,
  kWorkerRole = 2,
  kAdminRole = 4,
};
using Roles = std::uint8_t;
inline constexpr Roles kEveryRole = kClientRole | kWorkerRole | kAdminRole;

// The name of a message kind as the protocol says it ("tasks", "announce"...), for log lines.
std::string_view message_name(wire::Envelope::Which which);

// "client", "worker+admin"...; "none" for no role.
std::string describe_roles(Roles roles);

class KeyRing {
 public:
  // The roles of `key` (Z85 text); 0 when it is not listed.
  Roles roles_of(std::string_view key) const;
  bool contains(std::string_view key) const { return roles_of(key) != 0; }
  std::size_t size() const noexcept { return keys_.size(); }
  const std::map<std::string, std::pair<Roles, std::string>, std::less<>>& keys() const noexcept { return keys_; }

  // Adds `key` with `role`, remembering the file it came from (for log lines).
  void add(const std::string& key, Role role, const std::string& file);

 private:
  std::map<std::string, std::pair<Roles, std::string>, std::less<>> keys_;  // key -> roles, first file
};

// Reads every *.pub file of the trust directories (an empty path: no key has that role). Throws
// fanout::Error naming a directory or file that cannot be read or holds no key.
std::shared_ptr<const KeyRing> load_key_ring(const Trust& trust);

// One line per change between two rings: keys added, removed, or whose roles changed ("" when
// nothing did). Keys are shown by the file they came from and their first 8 characters.
std::string describe_changes(const KeyRing& before, const KeyRing& after);

// Why a message of kind `which` is refused from a peer with `roles`; nullopt when it is allowed.
struct RoleRefusal {
  Refusal reason;
  std::string message;
};
std::optional<RoleRefusal> check_role(wire::Envelope::Which which, Roles roles);

}  // namespace fanout::broker
