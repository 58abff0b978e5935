#include "keys.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <zmq.h>

#include <fanout/error.hpp>

namespace fanout::wire {

namespace {

constexpr std::size_t kZ85KeyLength = 40;

std::string quoted(const std::filesystem::path& file) { return "'" + file.string() + "'"; }

// The one key line of a key file, checked to be Z85 of 32 bytes.
std::string read_key_line(const std::filesystem::path& file, const char* what) {
  std::ifstream in(file);
  if (!in) throw Error("cannot read " + std::string(what) + " " + quoted(file) + ": " + std::strerror(errno));
  std::string line;
  std::string key;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    if (!key.empty()) throw Error(quoted(file) + " is not a fanout key file: more than one key line");
    key = line.substr(start);
  }
  std::array<std::uint8_t, 32> decoded{};
  if (key.size() != kZ85KeyLength || zmq_z85_decode(decoded.data(), key.c_str()) == nullptr) {
    throw Error(quoted(file) + " is not a fanout key file: expected one line of 40 Z85 characters (made by `fanout keygen`)");
  }
  return key;
}

// Creates `file` with `mode`, failing if it exists; writes `text` whole.
void create_exclusive(const std::filesystem::path& file, mode_t mode, const std::string& text) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    const int error = errno;
    if (error == EEXIST) throw Error("refusing to overwrite " + quoted(file) + ": it exists (remove it first)");
    throw Error("cannot create " + quoted(file) + ": " + std::strerror(error));
  }
  // The umask may have taken bits away, never added them; fchmod makes the mode exactly `mode`.
  bool ok = ::fchmod(fd, mode) == 0;
  std::size_t done = 0;
  while (ok && done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ok = false;
    else done += static_cast<std::size_t>(n);
  }
  const int error = errno;
  if (::close(fd) != 0) ok = false;
  if (!ok) {
    std::filesystem::remove(file);
    throw Error("cannot write " + quoted(file) + ": " + std::strerror(error));
  }
}

}  // namespace

bool curve_available() noexcept { return zmq_has("curve") != 0; }

KeyPair generate_key_pair() {
  if (!curve_available()) throw Error("this libzmq was built without CURVE: fanout cannot make or use keys");
  std::array<char, kZ85KeyLength + 1> public_key{};
  std::array<char, kZ85KeyLength + 1> secret_key{};
  if (zmq_curve_keypair(public_key.data(), secret_key.data()) != 0) {
    throw Error(std::string("cannot make a key pair: ") + zmq_strerror(zmq_errno()));
  }
  return KeyPair{public_key.data(), secret_key.data()};
}

KeyPair write_key_files(const std::filesystem::path& base) {
  const std::filesystem::path secret_file = base.string() + ".key";
  const std::filesystem::path public_file = base.string() + ".pub";
  // Both checked first, so that a refusal writes nothing at all.
  for (const auto& file : {secret_file, public_file}) {
    std::error_code error;
    if (std::filesystem::symlink_status(file, error).type() != std::filesystem::file_type::not_found) {
      throw Error("refusing to overwrite " + quoted(file) + ": it exists (remove it first)");
    }
  }
  const KeyPair pair = generate_key_pair();
  const std::string name = base.filename().string();
  create_exclusive(secret_file, 0600,
                   "# fanout secret key '" + name + "' (CurveZMQ, Z85). Keep it private: mode 0600, never copied\n"
                   "# off the machine that uses it. Its public half is " + name + ".pub.\n" + pair.secret_key + "\n");
  try {
    create_exclusive(public_file, 0644,
                     "# fanout public key '" + name + "' (CurveZMQ, Z85). Give it to the broker's operator\n"
                     "# (--clients, --workers or --admins DIR) or, for a broker, to its clients and workers.\n" +
                         pair.public_key + "\n");
  } catch (...) {
    std::filesystem::remove(secret_file);
    throw;
  }
  return pair;
}

std::string read_public_key(const std::filesystem::path& file) { return read_key_line(file, "public key"); }

KeyPair read_secret_key(const std::filesystem::path& file) {
  struct stat info {};
  if (::stat(file.c_str(), &info) != 0) {
    throw Error("cannot read secret key " + quoted(file) + ": " + std::strerror(errno));
  }
  if ((info.st_mode & 077) != 0) {
    std::ostringstream mode;
    mode << std::oct << (info.st_mode & 0777);
    throw Error("refusing secret key " + quoted(file) + ": its mode is 0" + mode.str() +
                ", so others may read it; it must be readable by its owner only (chmod 600 " + file.string() + ")");
  }
  KeyPair pair;
  pair.secret_key = read_key_line(file, "secret key");
  std::array<char, kZ85KeyLength + 1> public_key{};
  if (zmq_curve_public(public_key.data(), pair.secret_key.c_str()) != 0) {
    throw Error("cannot use secret key " + quoted(file) + ": " + zmq_strerror(zmq_errno()));
  }
  pair.public_key = public_key.data();
  return pair;
}

std::optional<ClientKeys> client_keys_from_env() {
  const char* own = std::getenv("FANOUT_KEY");
  const char* broker = std::getenv("FANOUT_BROKER_KEY");
  const bool has_own = own != nullptr && *own != '\0';
  const bool has_broker = broker != nullptr && *broker != '\0';
  if (!has_own && !has_broker) return std::nullopt;
  if (!has_own) throw Error("FANOUT_BROKER_KEY (--broker-key) is set but FANOUT_KEY (--key) is not: a peer needs both");
  if (!has_broker) throw Error("FANOUT_KEY (--key) is set but FANOUT_BROKER_KEY (--broker-key) is not: a peer needs both");
  return ClientKeys{read_secret_key(own), read_public_key(broker)};
}

void apply_client_keys(zmq::socket_t& socket, const ClientKeys& keys) {
  socket.set(zmq::sockopt::curve_serverkey, keys.broker_public);
  socket.set(zmq::sockopt::curve_publickey, keys.own.public_key);
  socket.set(zmq::sockopt::curve_secretkey, keys.own.secret_key);
}

void connect_to_broker(zmq::socket_t& socket, const std::string& endpoint) {
  if (endpoint.rfind("tcp://", 0) == 0) {
    if (const auto keys = client_keys_from_env()) apply_client_keys(socket, *keys);
  }
  socket.connect(endpoint);
}

std::string no_answer_hint(const std::string& endpoint) {
  if (endpoint.rfind("tcp://", 0) != 0) return "is a fanout-broker listening there? (FANOUT_BROKER)";
  const char* own = std::getenv("FANOUT_KEY");
  if (own != nullptr && *own != '\0') {
    return "the broker did not answer or refused this peer's key: is a fanout-broker listening there (FANOUT_BROKER), "
           "is this key's .pub in its --clients (or --workers, --admins) directory (FANOUT_KEY), and is "
           "FANOUT_BROKER_KEY its public key?";
  }
  return "is a fanout-broker listening there? (FANOUT_BROKER; a broker with keys answers only peers with a listed "
         "key: FANOUT_KEY, FANOUT_BROKER_KEY)";
}

}  // namespace fanout::wire
