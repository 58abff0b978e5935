// <fanout/broker/broker.hpp>: the fanout broker as a library. `fanout-broker` is a thin main around
// it, and the process driver runs the same class on a thread of the calling program in local mode.
//
// One ROUTER socket, bound to every endpoint of the configuration, serves clients, worker
// supervisors and executors (docs/protocol.md). All work happens on the thread that calls run();
// stop() may be called from any thread or from a signal handler. How the broker is built inside
// (its loop and the parts it drives) is in broker/README.md.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <zmq.hpp>

namespace fanout::broker {

class Loop;  // the broker's loop and the parts it drives (broker/src/loop.hpp)
struct MetricsSnapshot;  // <fanout/broker/metrics.hpp>

// CurveZMQ keys (docs/security.md). With a secret key, every endpoint of the broker speaks
// CurveZMQ, only peers whose public key is listed in one of the directories may connect, and each
// message is allowed by the roles of the directories its sender's key is listed in: clients submit,
// cancel and defer; workers announce and report; admins ask for the status and manage every
// deferred batch. Without one, every peer has every role (loopback, ipc, inproc, local mode).
struct Trust {
  std::string secret_key;  // the broker's own, Z85 (wire::read_secret_key); empty: no keys
  std::string public_key;  // its public half, Z85
  // Directories of *.pub files (fanout keygen), read at start and again on reload_keys() (SIGHUP).
  // An empty path: no key has that role.
  std::filesystem::path clients;
  std::filesystem::path workers;
  std::filesystem::path admins;

  bool enabled() const noexcept { return !secret_key.empty(); }
};

struct Config {
  // Where to listen: tcp://127.0.0.1:5555, tcp://127.0.0.1:* (the OS picks the port),
  // ipc:///path or ipc://@abstract-name, inproc://name.
  std::vector<std::string> endpoints;
  std::chrono::milliseconds heartbeat{500};  // how often the broker heartbeats every peer
  std::chrono::milliseconds liveness{2000};  // a peer silent this long is dead
  // The largest frame taken from a peer: larger ones are refused with an error (up to twice this
  // size; beyond that ZeroMQ drops the connection before the broker reads a byte). 16 MiB, a few
  // MiB above the largest frame fanout sends (schema/src/limits.hpp).
  std::size_t max_frame_bytes = std::size_t{16} << 20;
  // What one client may have at the broker at once: tasks of its windows not yet settled and the
  // bytes of the windows that hold them; and the same over every client. A window past any of
  // these is refused as busy (docs/limits.md), and nothing of it is kept.
  std::size_t max_client_tasks = std::size_t{1} << 20;
  std::size_t max_client_bytes = std::size_t{256} << 20;
  std::size_t max_total_tasks = std::size_t{4} << 20;
  std::size_t max_total_bytes = std::size_t{1} << 30;
  // Results and output sent to a client that it has not said (in its heartbeats) it read: past
  // this, its tasks wait at the broker until it reads (back-pressure); the same over every client.
  std::size_t max_client_unread_bytes = std::size_t{64} << 20;
  std::size_t max_total_unread_bytes = std::size_t{512} << 20;
  unsigned max_attempts = 3;  // a task that took down its executor this often fails (worker lost)
  // What a task is expected to take until results of its name say otherwise. Executors hold work
  // ahead of the task they run only while it is quick (see dispatch), so the default, as long as
  // a slow task, sends nothing ahead of a task nobody has seen finish yet.
  std::chrono::nanoseconds unknown_task_time = std::chrono::hours(1);
  // Binding anything but loopback, ipc or inproc is refused without keys (`trust`) or this, the
  // operator's explicit and loudly logged opt-out.
  bool insecure = false;
  Trust trust;
  // Deferred batches (Concurrency::defer) are accepted only with a journal: each is appended and
  // fsynced there before it is acknowledged, and survives a broker restart (docs/protocol.md).
  std::filesystem::path journal;  // empty: no journal, deferred batches are refused
  unsigned deferred_attempts = 3;  // a deferred task that fails this often is recorded as dead
  // A failed deferred task waits before its next attempt: this, doubled after each failure up to
  // the most, the second half of each wait random (jitter). Zero: retried at once.
  std::chrono::milliseconds deferred_retry_delay{1000};
  std::chrono::milliseconds deferred_retry_max_delay{std::chrono::minutes(5)};
  // Where the broker logs; spdlog's default logger when empty. An embedded broker gets its own,
  // so that it never writes through (or into the configuration of) the program's logger.
  std::shared_ptr<spdlog::logger> logger;
};

// Counters since start, readable from any thread.
struct Counters {
  std::atomic<std::uint64_t> tasks_received{0};
  std::atomic<std::uint64_t> tasks_dispatched{0};
  std::atomic<std::uint64_t> results_forwarded{0};
  std::atomic<std::uint64_t> dropped_messages{0};   // unreadable, wrong version, wrong sender
  std::atomic<std::uint64_t> duplicate_results{0};  // results for slots no longer in flight
  std::atomic<std::uint64_t> requeued_tasks{0};
  std::atomic<std::uint64_t> handed_back_tasks{0};  // given back unstarted by executors (drain, reclaim)
  std::atomic<std::uint64_t> reclaims{0};           // executors asked to hand back what they had not started
  std::atomic<std::uint64_t> executors_lost{0};
  std::atomic<std::uint64_t> deferred_accepted{0};  // deferred batches acknowledged
  std::atomic<std::uint64_t> deferred_done{0};      // deferred tasks finished since start
};

class Broker {
 public:
  // Binds every endpoint now. Throws fanout::Error for an endpoint that cannot be bound or that
  // is not loopback while `insecure` is false. `context` must outlive the broker.
  Broker(Config config, zmq::context_t& context);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // The endpoints as bound, with OS-chosen ports filled in (tcp://127.0.0.1:41234).
  const std::vector<std::string>& endpoints() const noexcept;

  // Serves until stop() is called.
  void run();

  // Makes run() return soon. Async-signal-safe.
  void stop() noexcept;

  // Makes run() read the key directories again (Config::trust) and log what changed; on a
  // directory or file it cannot read it keeps the keys it has and logs why. Async-signal-safe
  // (fanout-broker calls it on SIGHUP); nothing happens for a broker without keys.
  void reload_keys() noexcept;

  const Counters& counters() const noexcept;

  // ---- for an operations endpoint (fanout-broker --metrics); any thread, never waits on the loop ----
  // What the loop published at its last heartbeat (an empty snapshot before run()).
  std::shared_ptr<const MetricsSnapshot> metrics() const;
  // How long ago the loop last turned (it turns at least every heartbeat); nullopt before run().
  std::optional<std::chrono::steady_clock::duration> since_loop_turned() const noexcept;
  // run() is serving: every endpoint bound and the journal, if any, replayed.
  bool ready() const noexcept;

 private:
  std::unique_ptr<Loop> loop_;
};

// Throws fanout::Error unless `endpoint` is loopback, ipc or inproc, or the broker has keys
// (`secured`), or `insecure`.
void check_endpoint_allowed(const std::string& endpoint, bool insecure, bool secured = false);

// Whether `endpoint` is a tcp endpoint on an address other than loopback.
bool is_exposed_endpoint(const std::string& endpoint);

}  // namespace fanout::broker
