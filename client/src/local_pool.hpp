// local_pool.hpp: local mode of the process driver. An embedded broker on a thread of this
// program, and a worker pool made by re-executing the program itself (Laravel's hidden Artisan
// command, in C++): fanout::init() in the new process sees kWorkerRoleVariable (program.hpp) and
// becomes a worker supervisor with one executor per core. Everything goes away with the program,
// even when it is killed with SIGKILL (the worker dies with its parent, executors with the worker).
//
// Threads: the broker's, and a watcher that owns the worker process: it starts it, restarts it
// when it dies (unless it keeps dying young), and stops it when the pool is destroyed.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "system/event_fd.hpp"

namespace fanout::broker {
class Broker;
}

namespace fanout::detail {

// What differs for the local service (local_service.hpp), which keeps a journal and listens on a
// name other programs find, from a program's own pool.
struct LocalPoolOptions {
  std::string worker_endpoint;  // empty: a fresh socket file in the user's private directory
  std::filesystem::path journal;  // empty: none
};

class LocalPool {
 public:
  // Starts the broker and spawns the worker. Throws fanout::Error when either cannot start.
  explicit LocalPool(zmq::context_t& context, const LocalPoolOptions& options = {});
  // Stops the worker (a drain, then SIGKILL after 3 s) and the broker.
  ~LocalPool();
  LocalPool(const LocalPool&) = delete;
  LocalPool& operator=(const LocalPool&) = delete;

  // Where clients of this program connect (inproc).
  const std::string& client_endpoint() const noexcept { return client_endpoint_; }
  // Where the workers (and, for the local service, other programs) connect.
  const std::string& worker_endpoint() const noexcept { return worker_endpoint_; }

  // Why the pool cannot run tasks (its worker exited and could not be restarted), if it cannot.
  std::optional<std::string> broken() const;

  // Stops the worker and the broker now (the destructor's work, but the broker keeps its journal
  // open until destruction). Idempotent.
  void stop();
  // Deferred batches the broker has acknowledged since it started.
  std::uint64_t deferred_accepted() const;

 private:
  void watch_worker();  // runs on watcher_: starts, restarts and finally stops the worker
  void set_broken(std::string why);

  std::unique_ptr<broker::Broker> broker_;
  std::thread broker_thread_;
  std::string client_endpoint_;
  std::string worker_endpoint_;
  std::string socket_file_;  // of worker_endpoint_, when this pool chose it: removed at the end
  sys::EventFd stop_requested_;  // the destructor's word to the watcher
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::optional<std::string> broken_;
  std::thread watcher_;  // last: starts once everything it uses exists
};

}  // namespace fanout::detail
