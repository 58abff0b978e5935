// keys.hpp: CurveZMQ keys as fanout keeps them in files, and the one way fanout's clients and
// workers connect to a broker (with those keys on tcp endpoints). Shared by every binary: the
// `fanout` tool (keygen, status, run, deferred), the process driver, fanout-worker and
// fanout-broker.
//
// File format (docs/security.md): UTF-8 text, lines starting with '#' are comments, blank lines
// are ignored, and exactly one other line holds the key, 40 characters of Z85 (ZeroMQ's encoding
// of a 32-byte Curve25519 key). NAME.pub holds a public key and may be shown to anyone; NAME.key
// holds the secret key and must be readable by its owner only (mode 0600 or stricter): a secret
// key file that group or others may read is refused, as ssh refuses such a private key.
//
// Promises: every function that reads a file throws fanout::Error naming the file and saying what
// is wrong with it (missing, unreadable, not a key, too open); nothing here logs.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <zmq.hpp>

namespace fanout::wire {

// A Curve25519 key pair, each key 40 characters of Z85.
struct KeyPair {
  std::string public_key;
  std::string secret_key;
};

// What a client (or worker) needs to talk to a broker that has keys: its own pair and the
// broker's public key.
struct ClientKeys {
  KeyPair own;
  std::string broker_public;
};

// Whether this libzmq can do CurveZMQ at all (zmq_has("curve")).
bool curve_available() noexcept;

// A fresh key pair (zmq_curve_keypair). Throws fanout::Error when libzmq has no CURVE.
KeyPair generate_key_pair();

// Writes `base`.key (the secret, mode 0600) and `base`.pub (the public key, mode 0644). Refuses
// to overwrite either (an existing file is an error, and nothing is written). Returns the pair.
KeyPair write_key_files(const std::filesystem::path& base);

// Reads a public key file.
std::string read_public_key(const std::filesystem::path& file);

// Reads a secret key file (refusing one that group or others may read) and derives its public key.
KeyPair read_secret_key(const std::filesystem::path& file);

// The client keys named by the environment: FANOUT_KEY (this peer's secret key file) and
// FANOUT_BROKER_KEY (the broker's public key file). nullopt when neither is set; throws
// fanout::Error when only one is, or a file is bad.
std::optional<ClientKeys> client_keys_from_env();

// Connects `socket` to the broker at `endpoint`. On a tcp endpoint, with client keys in the
// environment (above), the connection is CurveZMQ: encrypted, and authenticated both ways. Other
// transports (ipc, inproc: local mode, on one machine) never use keys. Throws fanout::Error for
// bad keys, and zmq::error_t, as connect() does, for an endpoint ZeroMQ cannot parse (callers
// tell a usage error from an unreachable broker by that).
void connect_to_broker(zmq::socket_t& socket, const std::string& endpoint);

// Sets `keys` on `socket` as a CurveZMQ client (before it connects).
void apply_client_keys(zmq::socket_t& socket, const ClientKeys& keys);

// What a client says when a broker at `endpoint` never answered, after "no answer within N ms; ":
// on tcp, the broker may also have refused its key or its lack of one (CurveZMQ gives a refused
// peer no answer at all).
std::string no_answer_hint(const std::string& endpoint);

}  // namespace fanout::wire
