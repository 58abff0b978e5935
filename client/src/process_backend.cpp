// process_backend.cpp: the "process" driver. Batches travel as Cap'n Proto windows over ZeroMQ to
// a broker, which spreads them over worker executors; results come back by (batch, index) and are
// decoded in place into the caller's storage (docs/protocol.md, "Client rules").
//
// Remote mode: FANOUT_BROKER=tcp://host:port. Local mode (no configuration): the first batch
// starts an embedded broker on a thread of this program and a worker pool made by re-executing
// the program itself (local_pool.hpp).
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fanout/init.hpp>

#include <capnp/serialize.h>
#include <kj/exception.h>
#include <spdlog/spdlog.h>

#include "backends.hpp"
#include "batch_id.hpp"
#include "deferred_endpoint.hpp"
#include "local_pool.hpp"
#include "transport.hpp"
#include "wire_kinds.hpp"

namespace fanout::detail {

namespace {

using Clock = std::chrono::steady_clock;

// Tasks in flight per batch: enough to keep every executor's credit full on a large pool, and the
// bound on client and broker memory for a batch of any size.
constexpr std::size_t kWindowTasks = 16384;
// Tasks per frame for large batches. Small batches go in one frame, which the broker splits over
// idle executors.
constexpr std::size_t kFrameTasks = 1024;
constexpr std::size_t kSingleFrameBatch = 256;
// Arguments per frame, in bytes: large arguments travel in several frames, so that the broker and
// the executors start on the first ones while later ones are still being encoded.
constexpr std::size_t kFrameBytes = std::size_t{4} << 20;
constexpr auto kHeartbeat = std::chrono::milliseconds(500);
// No word from the broker for this long (it heartbeats every 500 ms) means it is gone.
constexpr auto kBrokerSilence = std::chrono::milliseconds(4000);
// How long defer waits for the broker's receipt when the driver sets no timeout.
constexpr auto kDeferAckTimeout = std::chrono::seconds(30);

// Writes slots [first, first + count) of `batch` as one `tasks` window of batch `id`.
void encode_window(wire::TaskBatch::Builder window, const Batch& batch, std::uint64_t id, const RunOptions& options,
                   std::size_t first, std::size_t count) {
  const auto timeout_ms = static_cast<std::uint32_t>(options.timeout.count());
  window.setBatchId(id);
  window.setTotal(static_cast<std::uint32_t>(batch.size()));
  window.setTimeoutMs(timeout_ms);
  auto tasks = window.initTasks(static_cast<unsigned>(count));
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t index = first + i;
    const Job job = batch.job(index);
    auto task = tasks[static_cast<unsigned>(i)];
    task.setBatchId(id);
    task.setIndex(static_cast<std::uint32_t>(index));
    task.setName(capnp::Text::Reader(job.task.data(), job.task.size()));
    if (job.key != nullptr) {
      task.setKey(*job.key);
      task.setHasKey(true);
    }
    task.setTimeoutMs(timeout_ms);
    if (job.args != nullptr) job.args->read([&](ValueReader args) { task.setArgs(wire::unwrap(args)); });
  }
}

// ZeroMQ sockets are single-threaded; batches run from several threads each lease their own.
class SocketPool {
 public:
  SocketPool(zmq::context_t& context, std::string endpoint) : context_(context), endpoint_(std::move(endpoint)) {}

  class Lease {
   public:
    Lease(SocketPool& pool, std::unique_ptr<zmq::socket_t> socket) : pool_(pool), socket_(std::move(socket)) {}
    ~Lease() {
      if (socket_) pool_.give_back(std::move(socket_));
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    zmq::socket_t& operator*() const noexcept { return *socket_; }
    // Closes the socket instead of giving it back, dropping whatever it has not sent yet (linger
    // 0): a message that timed out must not reach the broker later through another batch's socket.
    void discard() noexcept { socket_.reset(); }

   private:
    SocketPool& pool_;
    std::unique_ptr<zmq::socket_t> socket_;
  };

  Lease lease() {
    {
      const std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        auto socket = std::move(idle_.back());
        idle_.pop_back();
        return Lease(*this, std::move(socket));
      }
    }
    auto socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
    wire::configure_socket(*socket);
    socket->connect(endpoint_);
    return Lease(*this, std::move(socket));
  }

  const std::string& endpoint() const noexcept { return endpoint_; }

 private:
  void give_back(std::unique_ptr<zmq::socket_t> socket) {
    const std::lock_guard lock(mutex_);
    idle_.push_back(std::move(socket));
  }

  zmq::context_t& context_;
  std::string endpoint_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<zmq::socket_t>> idle_;
};

// One batch on the wire: sends windows as results free room, settles slots as results arrive.
class BatchRun {
 public:
  // `health` says why the workers behind the broker cannot run anything (local mode), if so.
  using Health = std::function<std::optional<std::string>()>;

  BatchRun(Batch& batch, Results& results, const RunOptions& options, zmq::socket_t& socket, const std::string& where,
           Health health)
      : batch_(batch),
        results_(results),
        options_(options),
        socket_(socket),
        where_(where),
        health_(std::move(health)),
        id_(random_batch_id()) {}

  void go() {
    const std::size_t total = batch_.size();
    const auto started = Clock::now();
    last_heard_ = started;
    last_beat_ = started;
    // A broker that stops answering must not hang the caller past the batch's own limit.
    std::optional<Clock::time_point> give_up;
    if (options_.timeout.count() > 0) give_up = started + options_.timeout + std::chrono::seconds(2);

    try {
      while (results_.settled_count() < total) {
        while (next_ < total && next_ - results_.settled_count() < kWindowTasks) {
          const std::size_t room = kWindowTasks - (next_ - results_.settled_count());
          const std::size_t frame = total <= kSingleFrameBatch ? total : kFrameTasks;
          send_window(fitting(std::min({frame, total - next_, room})));
        }
        if (results_.settled_count() >= total) break;

        zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
        // With a cancellation token, wake up now and then to look at it.
        zmq::poll(&item, 1, options_.cancelled ? std::chrono::milliseconds(50) : kHeartbeat);
        drain();
        if (results_.cancelled()) {
          cancel();  // the broker drops what is queued and stops what runs
          fail_open(ErrorKind::cancelled, "the batch was cancelled");
          break;
        }

        const auto now = Clock::now();
        if (now - last_beat_ >= kHeartbeat) {
          send_simple([](wire::Envelope::Builder envelope) { envelope.initHeartbeat().setSentUnixMs(wire::unix_ms()); });
          last_beat_ = now;
        }
        if (now - last_heard_ > kBrokerSilence) {
          fail_open(ErrorKind::worker_lost, "no word from the broker at " + where_ + " for " +
                                                std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(kBrokerSilence).count()) +
                                                " ms");
        } else if (const auto broken = health_ ? health_() : std::nullopt) {
          fail_open(ErrorKind::worker_lost, *broken);
        } else if (give_up && now > *give_up) {
          fail_open(ErrorKind::timeout, "exceeded its time limit of " + std::to_string(options_.timeout.count()) +
                                            " ms (the broker did not report in time)");
        }
      }
    } catch (...) {
      // The caller's progress callback threw, or the transport failed: the broker must not keep
      // running what nobody waits for.
      cancel();
      throw;
    }
    if (results_.first_failure()) cancel();  // stop what may still run for a batch that failed early
  }

 private:
  // How many of the next `count` tasks fit in one frame by the size of their arguments (one at
  // least, however large).
  std::size_t fitting(std::size_t count) const {
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const Job job = batch_.job(next_ + i);
      bytes += job.args != nullptr ? job.args->encoded_size() : 0;
      if (bytes > kFrameBytes) return std::max<std::size_t>(i, 1);
    }
    return count;
  }

  void send_window(std::size_t count) {
    wire::OutMessage out(static_cast<unsigned>(64 + count * 16));
    encode_window(out.envelope().initTasks(), batch_, id_, options_, next_, count);
    next_ += count;
    socket_.send(out.frame(), zmq::send_flags::none);
  }

  template <class Fill>
  void send_simple(Fill fill) {
    wire::OutMessage out(16);
    fill(out.envelope());
    socket_.send(out.frame(), zmq::send_flags::dontwait);
  }

  void drain() {
    zmq::message_t frame;
    while (socket_.recv(frame, zmq::recv_flags::dontwait)) {
      last_heard_ = Clock::now();
      std::string why;
      auto message = wire::InMessage::parse(std::move(frame), &why);
      if (!message) continue;  // unreadable: the broker never sends those; nothing to settle
      handle(message->envelope());
    }
  }

  void handle(wire::Envelope::Reader envelope) {
    switch (envelope.which()) {
      case wire::Envelope::RESULTS:
        for (const auto result : envelope.getResults()) {
          // Results of an earlier batch on this socket (late answers after it ended) are ignored.
          if (result.getBatchId() != id_ || result.getIndex() >= batch_.size()) continue;
          const std::string_view ran_on(result.getRanOn().cStr(), result.getRanOn().size());
          if (result.isValue()) {
            results_.value(result.getIndex(), wire::wrap(result.getValue()), ran_on);
          } else {
            const auto error = result.getError();
            results_.failure(result.getIndex(), FailureInfo{from_wire(error.getKind()), error.getRemoteType(),
                                                            error.getMessage(), error.getRanOn()});
          }
        }
        return;
      case wire::Envelope::ACK:
        if (envelope.getAck().getBatchId() == id_ && envelope.getAck().hasRefused()) {
          const auto refused = envelope.getAck().getRefused();
          fail_open(from_wire(refused.getKind()), std::string("the broker refused the batch: ") + refused.getMessage().cStr());
        }
        return;
      case wire::Envelope::ERROR: {
        // The broker does not know us: it restarted and the batch is gone with it.
        const auto error = envelope.getError();
        fail_open(ErrorKind::worker_lost,
                  std::string("the broker at ") + where_ + " lost the batch: " + error.getMessage().cStr());
        return;
      }
      default:
        return;  // heartbeats: last_heard_ is enough
    }
  }

  void fail_open(ErrorKind kind, const std::string& message) {
    results_.fail_unsettled(kind, message, "broker " + where_);
  }

  void cancel() noexcept {
    try {
      send_simple([&](wire::Envelope::Builder envelope) { envelope.initCancel().setBatchId(id_); });
    } catch (...) {
    }
  }

  Batch& batch_;
  Results& results_;
  const RunOptions& options_;
  zmq::socket_t& socket_;
  const std::string& where_;
  Health health_;
  const std::uint64_t id_;
  std::size_t next_ = 0;
  Clock::time_point last_heard_;
  Clock::time_point last_beat_;
};

Error too_large_to_defer(std::size_t tasks, std::size_t bytes, bool at_least) {
  return Error("the deferred batch of " + std::to_string(tasks) + " tasks takes " + (at_least ? "at least " : "") +
               std::to_string(bytes) + " bytes, more than the " + std::to_string(wire::kDefaultMaxFrameBytes >> 20) +
               " MiB a broker accepts in one message (a deferred batch travels whole); defer it in smaller batches");
}

// Sends `batch` whole, as one deferred `tasks` window, over a socket of `sockets`, and waits for
// the broker's ack: its receipt, or its refusal thrown as fanout::Error. Waits at most the
// driver's timeout (kDeferAckTimeout without one) and then throws, since the batch may or may not
// have been taken. Sends no heartbeats: the broker knows this client only once it has accepted.
Receipt submit_deferred(const Batch& batch, const RunOptions& options, SocketPool& sockets) {
  const std::size_t total = batch.size();
  const std::string& where = sockets.endpoint();
  if (total > UINT32_MAX) throw Error("a deferred batch holds at most " + std::to_string(UINT32_MAX) + " tasks");
  // What the arguments, names and keys alone take: refuses most oversized batches before encoding.
  std::size_t payload = 0;
  for (std::size_t i = 0; i < total; ++i) {
    const Job job = batch.job(i);
    payload += job.task.size() + (job.key != nullptr ? job.key->size() : 0) +
               (job.args != nullptr ? job.args->encoded_size() : 0);
  }
  if (payload > wire::kDefaultMaxFrameBytes) throw too_large_to_defer(total, payload, true);

  const std::uint64_t id = random_batch_id();
  const std::size_t hint_words = std::min<std::size_t>(64 + total * 16 + payload / sizeof(capnp::word), 1u << 22);
  wire::OutMessage out(static_cast<unsigned>(hint_words));
  auto window = out.envelope().initTasks();
  encode_window(window, batch, id, options, 0, total);
  window.setDeferred(true);
  const std::size_t bytes = capnp::computeSerializedSizeInWords(out.builder()) * sizeof(capnp::word);
  if (bytes > wire::kDefaultMaxFrameBytes) throw too_large_to_defer(total, bytes, false);

  const auto limit = options.timeout.count() > 0 ? options.timeout : std::chrono::milliseconds(kDeferAckTimeout);
  auto socket = sockets.lease();
  (*socket).send(out.frame(), zmq::send_flags::none);
  const auto deadline = Clock::now() + limit;
  for (;;) {
    zmq::message_t frame;
    while ((*socket).recv(frame, zmq::recv_flags::dontwait)) {
      auto message = wire::InMessage::parse(std::move(frame));
      if (!message) continue;  // unreadable: the broker never sends those
      try {
        const auto envelope = message->envelope();
        switch (envelope.which()) {
          case wire::Envelope::ACK: {
            const auto ack = envelope.getAck();
            if (ack.getBatchId() != id) break;
            if (ack.hasRefused()) {
              throw Error("the broker at " + where + " refused the deferred batch: " + ack.getRefused().getMessage().cStr());
            }
            // An ack without a receipt is not the one that says the batch is durable: wait on.
            if (ack.getReceipt().size() > 0) return Receipt(ack.getReceipt().cStr(), "process", total);
            break;
          }
          case wire::Envelope::RESULTS:
            for (const auto result : envelope.getResults()) {
              if (result.getBatchId() != id) continue;
              // A broker that knows nothing of deferred batches runs it as an ordinary one.
              wire::OutMessage cancel(16);
              cancel.envelope().initCancel().setBatchId(id);
              (*socket).send(cancel.frame(), zmq::send_flags::dontwait);
              throw Error("the broker at " + where +
                          " ran the deferred batch as an ordinary one (it does not support deferred batches; "
                          "upgrade it); the batch was cancelled");
            }
            break;
          case wire::Envelope::ERROR:
            // The broker could not read the message (a frame above its own size limit...). Other
            // complaints (an unknown peer's heartbeat) concern earlier use of this socket.
            if (envelope.getError().getKind() == wire::ErrorKind::BAD_MESSAGE) {
              throw Error("the broker at " + where + " could not take the deferred batch: " +
                          envelope.getError().getMessage().cStr());
            }
            break;
          default:
            break;  // heartbeats, late answers for earlier batches on this socket
        }
      } catch (const kj::Exception& unreadable) {
        throw Error("unreadable answer from the broker at " + where + " to a deferred batch: " +
                    unreadable.getDescription().cStr());
      }
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      socket.discard();  // the batch must not reach the broker later from an idle socket
      throw Error("the broker at " + where + " did not acknowledge the deferred batch of " + std::to_string(total) +
                  " tasks within " + std::to_string(limit.count()) +
                  " ms; it may or may not have been accepted (a broker that took it runs it)");
    }
    zmq::pollitem_t item{(*socket).handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::min(std::chrono::ceil<std::chrono::milliseconds>(deadline - now), std::chrono::milliseconds(kHeartbeat)));
  }
}

class ProcessBackend final : public Backend {
 public:
  std::string_view name() const noexcept override { return "process"; }
  bool runs_plain_callables() const noexcept override { return false; }

  ~ProcessBackend() override { shut_down(); }

  // Sockets before the pool (whose broker they talk to) and the pool before the context.
  void shut_down() {
    const std::lock_guard lock(mutex_);
    sockets_.reset();
    deferred_sockets_.clear();
    pool_.reset();
  }

  Receipt defer(Batch& batch, const RunOptions& options) override {
    refuse_recursive_start();
    return submit_deferred(batch, options, deferred_sockets());
  }

  void execute(Batch& batch, Results& results, const RunOptions& options) override {
    SocketPool& sockets = connect();
    const auto socket = sockets.lease();
    BatchRun::Health health;
    if (pool_) health = [pool = pool_.get()] { return pool->broken(); };
    BatchRun(batch, results, options, *socket, sockets.endpoint(), std::move(health)).go();
  }

 private:
  // Starts what the first batch needs: nothing in remote mode but a socket; the embedded broker
  // and the local worker pool in local mode.
  SocketPool& connect() {
    const std::lock_guard lock(mutex_);
    if (sockets_) return *sockets_;
    refuse_recursive_start();
    const char* remote = std::getenv("FANOUT_BROKER");
    if (remote != nullptr && *remote != '\0') {
      sockets_ = std::make_unique<SocketPool>(context_, remote);
    } else {
      if (!initialized()) {
        throw Error(
            "the 'process' driver starts its local workers by re-executing this program, which needs "
            "fanout::init(argc, argv) as the first line of main(); add it (or set FANOUT_BROKER to use "
            "a standalone broker, or pick the fork or sync driver)");
      }
      // The pool's threads log through spdlog, whose registry is a static destroyed at exit.
      // Making sure the registry exists first, then registering the pool's shutdown with
      // atexit, stops the pool before the registry goes (exit runs both in reverse order).
      (void)spdlog::default_logger_raw();
      pool_ = std::make_unique<LocalPool>(context_);
      sockets_ = std::make_unique<SocketPool>(context_, pool_->client_endpoint());
      static ProcessBackend* self = nullptr;
      self = this;
      std::atexit([] {
        if (self != nullptr) self->shut_down();
      });
    }
    return *sockets_;
  }

  // Where deferred batches go: the remote broker in remote mode; in local mode not the embedded
  // broker, which dies with this program, but the per-user service of deferred_endpoint().
  SocketPool& deferred_sockets() {
    const char* remote = std::getenv("FANOUT_BROKER");
    const std::string endpoint = remote != nullptr && *remote != '\0' ? std::string(remote) : deferred_endpoint();
    const std::lock_guard lock(mutex_);
    auto& sockets = deferred_sockets_[endpoint];  // never erased while the backend lives: leases refer to it
    if (!sockets) sockets = std::make_unique<SocketPool>(context_, endpoint);
    return *sockets;
  }

  // A local worker is this program re-executed; fanout::init diverts it into the worker before
  // main() goes on. Reaching a batch in such a process means main() never called fanout::init:
  // stop here, loudly, rather than spawn workers of workers.
  static void refuse_recursive_start() {
    if (std::getenv(kWorkerRoleVariable) == nullptr) return;
    std::fprintf(stderr,
                 "fanout: this process was started as a local fanout worker, but main() never called "
                 "fanout::init(argc, argv); add it as the first line of main()\n");
    std::fflush(stderr);
    std::_Exit(kForgotInitExitCode);
  }

  zmq::context_t context_;
  std::mutex mutex_;
  std::unique_ptr<LocalPool> pool_;
  std::unique_ptr<SocketPool> sockets_;
  std::map<std::string, std::unique_ptr<SocketPool>> deferred_sockets_;  // by endpoint
};

}  // namespace

std::shared_ptr<Backend> make_process_backend() { return std::make_shared<ProcessBackend>(); }

}  // namespace fanout::detail
