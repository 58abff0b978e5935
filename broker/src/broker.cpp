// broker.cpp: routing, fairness, liveness and timeouts of the fanout broker (docs/protocol.md).
#include <fanout/broker/broker.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <spdlog/spdlog.h>

#include <fanout/error.hpp>

#include <zmq_addon.hpp>

#include "journal.hpp"
#include "records.hpp"
#include "system/signals.hpp"
#include "transport.hpp"

namespace fanout::broker {

class Broker::State {
 public:
  State(Config config, zmq::context_t& context)
      : config_(std::move(config)),
        logger_(config_.logger ? config_.logger : spdlog::default_logger()),
        router_(context, zmq::socket_type::router),
        stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (stop_fd_ < 0) throw Error("broker: eventfd failed");
    // The transport's own limit is the hard stop; parse() enforces the configured one, so that an
    // oversized frame is counted and answered rather than silently cutting the connection.
    wire::configure_socket(router_, config_.max_frame_bytes * 2);
    router_.set(zmq::sockopt::router_mandatory, 1);
    // Every endpoint is checked before any is bound: a refused one must not leave others listening.
    for (const auto& endpoint : config_.endpoints) check_endpoint_allowed(endpoint, config_.insecure);
    for (const auto& endpoint : config_.endpoints) {
      try {
        router_.bind(endpoint);
      } catch (const zmq::error_t& error) {
        throw Error("broker: cannot bind " + endpoint + ": " + error.what());
      }
      endpoints_.push_back(router_.get(zmq::sockopt::last_endpoint));
    }
    if (endpoints_.empty()) throw Error("broker: no endpoint to bind");
    if (!config_.journal.empty()) {
      journal_ = std::make_unique<Journal>(JournalOptions{.directory = config_.journal, .logger = logger_});
      recover_deferred();
    }
  }

  ~State() { ::close(stop_fd_); }

  void run() {
    next_heartbeat_ = Clock::now();
    std::vector<zmq::message_t> parts;
    while (true) {
      zmq::pollitem_t items[] = {{router_.handle(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, stop_fd_, ZMQ_POLLIN, 0},
                                 {nullptr, journal_ ? journal_->ready_fd() : -1, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, journal_ ? 3 : 2, until_next_timer());
      } catch (const zmq::error_t& error) {
        // A signal (the SIGTERM that is about to call stop(), say) interrupted the wait: look again.
        if (error.num() != EINTR) throw;
        continue;
      }
      if (items[1].revents & ZMQ_POLLIN) return;
      if (journal_ && (items[2].revents & ZMQ_POLLIN)) on_journal_durable();
      // Drain what is there (bounded, so timers still run under a flood), then act on it once.
      for (int received = 0; received < 4096; ++received) {
        parts.clear();
        const auto got = zmq::recv_multipart(router_, std::back_inserter(parts), zmq::recv_flags::dontwait);
        if (!got) break;
        handle(parts);
      }
      dispatch();
      for (const PeerId& id : std::exchange(unreachable_, {})) lose_executor(id, std::nullopt, true, "unreachable");
      run_timers();
      sweep_finished();
    }
  }

  void stop() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(stop_fd_, &one, sizeof(one));
  }

  const std::vector<std::string>& endpoints() const noexcept { return endpoints_; }
  const Counters& counters() const noexcept { return counters_; }

 private:
  // ---- input ----------------------------------------------------------------------------------

  void handle(std::vector<zmq::message_t>& parts) {
    if (parts.size() != 2) {  // a DEALER peer sends exactly one frame per message
      if (parts.empty()) return;
      return drop(parts[0].to_string(), wire::ErrorKind::BAD_MESSAGE,
                  "expected one frame per message, got " + std::to_string(parts.size() - 1));
    }
    PeerId peer = parts[0].to_string();
    std::string why;
    auto message = wire::InMessage::parse(std::move(parts[1]), &why, config_.max_frame_bytes, wire::InMessage::Check::whole);
    if (!message) {
      logger_->debug("broker: dropped a message from a peer: {}", why);
      return drop(peer, wire::ErrorKind::BAD_MESSAGE, why);
    }
    try {
      handle(peer, std::move(*message));
    } catch (const kj::Exception& exception) {
      // A field of the wrong kind (parse() has checked bounds, not kinds). Every handler reads
      // what it needs before it changes anything, so nothing is half done; and copies of what is
      // accepted (tasks in dispatch) cannot fail, since they do not look at kinds.
      drop(peer, wire::ErrorKind::BAD_MESSAGE, std::string("unreadable message: ") + exception.getDescription().cStr());
    }
  }

  void handle(const PeerId& peer, wire::InMessage message) {
    const auto envelope = message.envelope();
    const auto now = Clock::now();
    switch (envelope.which()) {
      case wire::Envelope::TASKS:
        if (is_worker_peer(peer)) return drop(peer, wire::ErrorKind::REFUSED, "workers do not submit tasks");
        return on_tasks(peer, std::move(message), now);
      case wire::Envelope::RESULTS: {
        const auto found = executors_.find(peer);
        if (found == executors_.end()) return unknown_peer(peer);
        found->second.last_seen = now;
        return on_results(found->second, std::move(message));
      }
      case wire::Envelope::OUTPUT: {
        const auto found = executors_.find(peer);
        if (found == executors_.end()) return unknown_peer(peer);
        found->second.last_seen = now;
        return on_output(found->second, std::move(message));
      }
      case wire::Envelope::ANNOUNCE:
        return on_announce(peer, envelope.getAnnounce(), now);
      case wire::Envelope::HEARTBEAT:
        return on_heartbeat(peer, now);
      case wire::Envelope::CANCEL:
        if (is_worker_peer(peer)) return drop(peer, wire::ErrorKind::REFUSED, "workers do not cancel batches");
        touch_client(peer, now);
        return on_cancel(peer, envelope.getCancel().getBatchId());
      case wire::Envelope::BYE:
        return on_bye(peer);
      case wire::Envelope::STATUS_REQUEST:
        return send_status(peer);
      case wire::Envelope::DEFERRED_REQUEST:
        if (is_worker_peer(peer)) return drop(peer, wire::ErrorKind::REFUSED, "workers do not manage deferred tasks");
        return on_deferred_request(peer, envelope.getDeferredRequest());
      case wire::Envelope::EXECUTOR_LOST: {
        const auto found = supervisors_.find(peer);
        if (found == supervisors_.end()) return unknown_peer(peer);
        found->second.last_seen = now;
        return on_executor_lost(envelope.getExecutorLost());
      }
      default:
        return drop(peer, wire::ErrorKind::REFUSED, "the broker does not accept this message");
    }
  }

  bool is_worker_peer(const PeerId& peer) const {
    return executors_.count(peer) != 0 || supervisors_.count(peer) != 0;
  }

  void touch_client(const PeerId& peer, Clock::time_point now) { clients_[peer].last_seen = now; }

  void on_heartbeat(const PeerId& peer, Clock::time_point now) {
    if (auto found = executors_.find(peer); found != executors_.end()) {
      found->second.last_seen = now;
    } else if (auto supervisor = supervisors_.find(peer); supervisor != supervisors_.end()) {
      supervisor->second.last_seen = now;
    } else if (auto client = clients_.find(peer); client != clients_.end()) {
      client->second.last_seen = now;
    } else {
      // After a broker restart every peer is unknown: tell it, so that workers re-announce and
      // clients learn that their batches are gone.
      unknown_peer(peer);
    }
  }

  // Everything about the window is checked, and its task names read, before anything changes: a
  // refused window leaves no trace but its ack.
  void on_tasks(const PeerId& client, wire::InMessage message, Clock::time_point now) {
    const auto window = message.envelope().getTasks();
    if (window.getDeferred()) return on_deferred_tasks(client, std::move(message), now);
    const std::uint64_t id = window.getBatchId();
    const auto tasks = window.getTasks();
    const std::uint32_t count = tasks.size();
    const auto known = batches_.find(id);
    if (known != batches_.end() && known->second.client != client) {
      return refuse_window(client, id, count, "batch id " + std::to_string(id) + " belongs to another client");
    }
    const std::uint32_t total = known != batches_.end() ? known->second.total : window.getTotal();
    const std::uint32_t received = known != batches_.end() ? known->second.received : 0;
    for (const auto task : tasks) {
      if (task.getIndex() >= total) {
        return refuse_window(client, id, count,
                             "task index " + std::to_string(task.getIndex()) + " is outside the batch of " + std::to_string(total));
      }
      if (task.getBatchId() != id) {
        return refuse_window(client, id, count,
                             "a task of batch " + std::to_string(task.getBatchId()) + " in a window of batch " + std::to_string(id));
      }
    }
    if (std::uint64_t{received} + count > total) {
      return refuse_window(client, id, count, "the batch's windows hold more tasks than its total");
    }
    FramePtr frame = count == 0 ? nullptr : std::make_shared<Frame>(std::move(message));

    touch_client(client, now);
    auto [where, created] = batches_.try_emplace(id);
    Batch& batch = where->second;
    if (created) {
      batch.id = id;
      batch.client = client;
      batch.total = total;
      batch.timeout_ms = window.getTimeoutMs();
      batch.max_running = window.getMaxRunning();
      if (batch.timeout_ms > 0) {
        batch.deadline = now + std::chrono::milliseconds(batch.timeout_ms);
        ++deadlines_;
      }
      clients_[client].batches.push_back(id);
      if (std::find(client_ring_.begin(), client_ring_.end(), client) == client_ring_.end()) client_ring_.push_back(client);
    }
    counters_.tasks_received += count;
    batch.received += count;
    sweep_candidates_.push_back(id);  // an empty batch is finished at once
    if (!frame) return;
    if (batch.ended) {  // windows that arrive after the batch timed out or was cancelled
      fail_range(batch, *frame, 0, frame->size(), batch.ended->first, batch.ended->second);
      return;
    }
    for (const Frame::Run& run : frame->runs) batch.queue.push_back(Pending{frame, run.begin, run.end, run.name, -1});
    batch.queued += frame->size();
    fail_unserved(batch);
  }

  void on_results(Executor& executor, wire::InMessage message) {
    const auto results = message.envelope().getResults();
    if (results.size() == 0) return;
    std::vector<bool> matched(results.size(), false);
    std::size_t matches = 0;
    for (unsigned i = 0; i < results.size(); ++i) {
      const auto result = results[i];
      // Executors answer in order, so the match is almost always at the front.
      const auto found = std::find_if(executor.in_flight.begin(), executor.in_flight.end(), [&](const InFlight& f) {
        return f.batch == result.getBatchId() && f.index == result.getIndex();
      });
      if (found == executor.in_flight.end()) {
        ++counters_.duplicate_results;
        continue;
      }
      const InFlight entry = *found;
      executor.in_flight.erase(found);
      auto batch = batches_.find(result.getBatchId());
      if (batch != batches_.end()) --batch->second.in_flight;
      if (batch != batches_.end() && batch->second.receipt != 0) {
        on_deferred_result(batch->second, entry.index, result);  // the broker's own: not forwarded
        continue;
      }
      matched[i] = true;
      ++matches;
    }
    if (matches == 0) return;
    const std::uint64_t first_batch = results[0].getBatchId();
    bool one_batch = true;
    for (const auto result : results) one_batch = one_batch && result.getBatchId() == first_batch;
    if (one_batch && matches == results.size()) {
      // The common case: the frame goes to the client as it came, not even re-encoded.
      return deliver(first_batch, matches, std::move(message.frame()));
    }
    // Rare: duplicates to filter out, or results of several batches in one message.
    std::vector<std::uint64_t> batch_ids;
    for (unsigned i = 0; i < results.size(); ++i) {
      if (matched[i] && std::find(batch_ids.begin(), batch_ids.end(), results[i].getBatchId()) == batch_ids.end()) {
        batch_ids.push_back(results[i].getBatchId());
      }
    }
    for (const std::uint64_t id : batch_ids) {
      std::vector<unsigned> chosen;
      for (unsigned i = 0; i < results.size(); ++i) {
        if (matched[i] && results[i].getBatchId() == id) chosen.push_back(i);
      }
      wire::OutMessage out;
      auto list = out.envelope().initResults(static_cast<unsigned>(chosen.size()));
      for (unsigned j = 0; j < chosen.size(); ++j) list.setWithCaveats(j, results[chosen[j]]);
      deliver(id, static_cast<std::uint32_t>(chosen.size()), out.frame());
    }
  }

  // Live output of a shell command: passed on as it came to the client of the batch, while the
  // command is in flight at that executor (output of a task it no longer runs is dropped).
  void on_output(const Executor& executor, wire::InMessage message) {
    const auto chunk = message.envelope().getOutput();
    const std::uint64_t id = chunk.getBatchId();
    const std::uint32_t index = chunk.getIndex();
    const bool running = std::any_of(executor.in_flight.begin(), executor.in_flight.end(),
                                     [&](const InFlight& f) { return f.batch == id && f.index == index; });
    if (!running) return;
    const auto batch = batches_.find(id);
    if (batch == batches_.end() || batch->second.ended) return;
    wire::send_to(router_, batch->second.client, std::move(message.frame()));
  }

  // Sends `count` outcomes of batch `id` (already encoded in `frame`) to its client.
  void deliver(std::uint64_t id, std::uint32_t count, zmq::message_t&& frame) {
    auto found = batches_.find(id);
    if (found == batches_.end()) return;  // the client left or the batch ended: nobody to tell
    Batch& batch = found->second;
    batch.settled += count;
    sweep_candidates_.push_back(id);
    counters_.results_forwarded += count;
    if (!batch.ended) wire::send_to(router_, batch.client, std::move(frame));
  }

  void on_announce(const PeerId& peer, wire::Announce::Reader announce, Clock::time_point now) {
    const auto role = announce.getRole();
    if (role != wire::Announce::Role::SUPERVISOR && role != wire::Announce::Role::EXECUTOR) {
      return drop(peer, wire::ErrorKind::REFUSED,
                  "announce with an unknown role (" + std::to_string(static_cast<unsigned>(role)) + ")");
    }
    // Read everything first: a field of the wrong kind throws before anything changed.
    const std::string worker(text(announce.getWorkerId()));
    const std::string executor_id(text(announce.getExecutorId()));
    const std::string host(text(announce.getHost()));
    std::vector<std::string> names;
    for (const auto name : announce.getTaskNames()) names.emplace_back(text(name));
    if (worker.empty()) return drop(peer, wire::ErrorKind::REFUSED, "announce without a workerId");
    if (clients_.count(peer) != 0) return drop(peer, wire::ErrorKind::REFUSED, "a client cannot announce itself as a worker");
    if (role == wire::Announce::Role::SUPERVISOR) {
      if (executors_.count(peer) != 0) return drop(peer, wire::ErrorKind::REFUSED, "an executor cannot become a supervisor");
      Supervisor& supervisor = supervisors_[peer];
      const bool was_draining = supervisor.draining;
      supervisor.worker_id = worker;
      supervisor.host = host;
      supervisor.pid = announce.getPid();
      supervisor.processes = announce.getProcesses();
      supervisor.allow_shell = announce.getAllowShell();
      supervisor.draining = announce.getDraining();
      supervisor.last_seen = now;
      supervisor_by_worker_[worker] = peer;
      if (supervisor.draining && !was_draining) logger_->info("broker: worker {} is draining", worker);
      for (auto& [id, executor] : executors_) {
        if (executor.worker == worker) executor.draining = supervisor.draining;
      }
      return;
    }
    // The broker addresses an executor (tasks, stopExecutor, executorLost) by its executorId, so
    // that must be the routing id of the socket it announced from.
    if (executor_id != peer) {
      return drop(peer, wire::ErrorKind::REFUSED,
                  "executor '" + executor_id + "' announced from a socket whose routing id is not its executorId");
    }
    if (supervisors_.count(peer) != 0) return drop(peer, wire::ErrorKind::REFUSED, "a supervisor cannot become an executor");
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    Executor& executor = executors_[peer];
    const bool fresh = executor.id.empty();
    executor.id = peer;
    executor.worker = worker;
    executor.names = intern(std::move(names));
    executor.slots = std::max<std::uint32_t>(1, announce.getSlots());
    executor.processes = std::max<std::uint32_t>(1, announce.getProcesses());
    executor.last_seen = now;
    executor.draining = announce.getDraining();
    if (auto supervisor = supervisor_by_worker_.find(worker); supervisor != supervisor_by_worker_.end()) {
      if (auto s = supervisors_.find(supervisor->second); s != supervisors_.end() && s->second.draining) executor.draining = true;
    }
    if (fresh) logger_->debug("broker: executor {} of worker {} joined ({} slots)", peer, worker, executor.slots);
    // Queued tasks that nobody could serve may have found their executor, or still have none.
    for (auto& [id, batch] : batches_) fail_unserved(batch);  // never erases: sweep_finished() does
  }

  void on_cancel(const PeerId& client, std::uint64_t id) {
    auto found = batches_.find(id);
    if (found == batches_.end() || found->second.client != client) return;
    end_batch(found->second, wire::ErrorKind::CANCELLED, "the batch was cancelled");
  }

  void on_bye(const PeerId& peer) {
    if (supervisors_.count(peer) != 0) return drop_supervisor(peer, "said goodbye");
    if (executors_.count(peer) != 0) return lose_executor(peer, std::nullopt, false, "said goodbye");
    drop_client(peer);
  }

  void on_executor_lost(wire::ExecutorLost::Reader lost) {
    const PeerId id(text(lost.getExecutorId()));
    if (executors_.count(id) == 0) return;
    std::optional<std::pair<std::uint64_t, std::uint32_t>> running;
    if (lost.getRunning()) running.emplace(lost.getBatchId(), lost.getIndex());
    const std::string how = lost.getSignal() != 0 ? "killed by " + sys::describe_signal(lost.getSignal())
                                                  : "exited with code " + std::to_string(lost.getExitCode());
    lose_executor(id, running, lost.getStoppedByBroker(), how);
  }

  // ---- deferred batches -----------------------------------------------------------------------

  // A deferred batch arrives whole in one window, tasks listed by index from 0. It is journaled
  // and acknowledged (with its receipt) once durable; from then on it is the broker's own.
  void on_deferred_tasks(const PeerId& client, wire::InMessage message, Clock::time_point now) {
    const auto window = message.envelope().getTasks();
    const std::uint64_t id = window.getBatchId();
    const auto tasks = window.getTasks();
    const std::uint32_t count = tasks.size();
    if (!journal_) {
      return refuse_window(client, id, count,
                           "this broker keeps no journal, so it cannot accept deferred batches: start it with "
                           "--journal DIR",
                           wire::ErrorKind::REFUSED);
    }
    if (!journal_failure_.empty()) {
      return refuse_window(client, id, count, "the broker's journal failed (" + journal_failure_ + ")",
                           wire::ErrorKind::REFUSED);
    }
    if (count == 0 || count != window.getTotal()) {
      return refuse_window(client, id, count,
                           "a deferred batch must arrive whole in one window (" + std::to_string(count) + " of " +
                               std::to_string(window.getTotal()) + " tasks came)");
    }
    for (std::uint32_t position = 0; position < count; ++position) {
      if (tasks[position].getIndex() != position || tasks[position].getBatchId() != id) {
        return refuse_window(client, id, count, "a deferred window lists its tasks by index from 0, in its own batch");
      }
    }
    const bool in_use = batches_.count(id) != 0 || std::any_of(awaiting_.begin(), awaiting_.end(), [&](const AwaitingAck& a) {
                          return a.batch_id == id;
                        });
    if (in_use) return refuse_window(client, id, count, "batch id " + std::to_string(id) + " is in use");
    auto frame = std::make_shared<Frame>(std::move(message));  // reads every name: may throw, before any change
    touch_client(client, now);
    const std::uint64_t receipt = next_receipt_++;
    const auto& bytes = frame->message.frame();
    try {
      const Token token = journal_->submit(
          BatchAccepted{receipt, count, std::string(static_cast<const char*>(bytes.data()), bytes.size())});
      awaiting_.push_back(AwaitingAck{token, client, id, receipt, std::move(frame)});
    } catch (const Error& error) {
      journal_failed(error.what());
      refuse_window(client, id, count, "the broker's journal failed (" + journal_failure_ + ")", wire::ErrorKind::REFUSED);
    }
  }

  // The journal made records durable: acknowledge the batches among them and queue their tasks.
  void on_journal_durable() {
    Token through = 0;
    std::optional<std::string> failure;
    try {
      through = journal_->collect_durable();
    } catch (const Error& error) {
      failure = error.what();
      // Tokens reported durable before the failure stay durable: acknowledge those first.
      through = journal_->stats().durable;
    }
    while (!awaiting_.empty() && awaiting_.front().token <= through) {
      AwaitingAck ready = std::move(awaiting_.front());
      awaiting_.pop_front();
      const std::uint32_t count = ready.frame->size();
      deferred_.accept_at(ready.receipt, count, 0, 0);
      queue_deferred(ready.receipt, std::move(ready.frame), nullptr);
      ++counters_.deferred_accepted;
      wire::OutMessage out;
      auto ack = out.envelope().initAck();
      ack.setBatchId(ready.batch_id);
      ack.setAccepted(count);
      ack.setReceipt(std::to_string(ready.receipt));
      wire::send_to(router_, ready.client, out.frame());
    }
    if (failure) journal_failed(*failure);
  }

  void journal_failed(const std::string& why) {
    if (journal_failure_.empty()) logger_->error("broker: the journal failed: {}; deferred batches are refused", why);
    journal_failure_ = why;
    for (const AwaitingAck& waiting : awaiting_) {
      refuse_window(waiting.client, waiting.batch_id, waiting.frame->size(),
                    "the broker's journal failed before the batch was durable (" + why + ")", wire::ErrorKind::REFUSED);
    }
    awaiting_.clear();
  }

  // Appends `record` to the journal and applies it to the mirror. A journal that fails stops
  // durability, not the broker: the state here goes on, and the failure is logged and reported.
  void record(JournalRecord entry) {
    if (!journal_) return;
    if (auto batch = batch_by_receipt_.find(receipt_of(entry)); batch != batch_by_receipt_.end()) {
      sweep_candidates_.push_back(batch->second);  // the record may settle the batch's last task
    }
    deferred_.apply(entry);
    if (!journal_failure_.empty()) return;
    try {
      journal_->submit(std::move(entry));
    } catch (const Error& error) {
      journal_failed(error.what());
    }
  }

  // After a restart: every batch the journal holds goes back to the queues, its pending tasks
  // only (finished ones never run again; dead ones wait for `fanout deferred retry`).
  void recover_deferred() {
    DeferredState recovered = journal_->take_recovered();
    next_receipt_ = std::max<std::uint64_t>(1, recovered.next_receipt());
    std::size_t pending = 0;
    for (const auto& [receipt, batch] : recovered.batches()) {
      zmq::message_t bytes(batch.payload.data(), batch.payload.size());
      std::string why;
      auto message = wire::InMessage::parse(std::move(bytes), &why, config_.max_frame_bytes, wire::InMessage::Check::whole);
      if (!message || !message->envelope().isTasks() || message->envelope().getTasks().getTasks().size() != batch.task_count) {
        logger_->error("broker: deferred batch {} in the journal is unreadable ({}); skipped", receipt, why);
        continue;
      }
      try {
        queue_deferred(receipt, std::make_shared<Frame>(std::move(*message)), &batch);
      } catch (const kj::Exception& error) {
        logger_->error("broker: deferred batch {} in the journal is unreadable ({}); skipped", receipt,
                       error.getDescription().cStr());
        continue;
      }
      for (const auto& task : batch.tasks) pending += task.status == TaskStatus::pending ? 1 : 0;
    }
    deferred_ = std::move(recovered);
    const auto& report = journal_->recovery();
    logger_->info("broker: journal {}: {} deferred batch(es) with {} pending task(s) recovered{}", config_.journal.string(),
                  deferred_.batches().size(), pending,
                  report.dropped_bytes > 0 ? " (a damaged tail of " + std::to_string(report.dropped_bytes) +
                                                 " bytes was dropped: " + report.dropped_reason + ")"
                                           : std::string());
  }

  // Makes a broker batch of a deferred one: its pending tasks queued (all of them when `state` is
  // null), under the deferred client.
  // The batch keeps the id its client gave it: the tasks in the frame carry it to the executors
  // and back. (Accepting refuses an id in use, so ids of live deferred batches are distinct.)
  void queue_deferred(std::uint64_t receipt, FramePtr frame, const DeferredBatch* state) {
    const std::uint64_t id = frame->message.envelope().getTasks().getBatchId();
    if (batches_.count(id) != 0) {
      logger_->error("broker: deferred batch {} has the id of a live batch ({}); it waits for a restart", receipt, id);
      return;
    }
    Batch& batch = batches_[id];
    batch.id = id;
    batch.client = kDeferredClient;
    batch.total = frame->size();
    batch.received = batch.total;
    batch.receipt = receipt;
    batch.deferred_frame = frame;
    for (std::uint32_t position = 0; position < frame->size(); ++position) {
      if (state != nullptr && state->tasks[position].status != TaskStatus::pending) continue;
      requeue_deferred(batch, position);
    }
    batch_by_receipt_[receipt] = id;
    clients_[kDeferredClient].batches.push_back(id);
    if (std::find(client_ring_.begin(), client_ring_.end(), kDeferredClient) == client_ring_.end()) {
      client_ring_.push_back(kDeferredClient);
    }
  }

  // Queues task `index` of a deferred batch at the back (joining the previous run when it can).
  void requeue_deferred(Batch& batch, std::uint32_t index) {
    const FramePtr& frame = batch.deferred_frame;
    const std::uint32_t name = frame->name_at(index);
    if (!batch.queue.empty()) {
      Pending& last = batch.queue.back();
      if (last.frame == frame && last.end == index && last.name == name && last.attempt < 0) {
        ++last.end;
        ++batch.queued;
        return;
      }
    }
    batch.queue.push_back(Pending{frame, index, index + 1, name, -1});
    ++batch.queued;
  }

  void on_deferred_result(Batch& batch, std::uint32_t index, wire::Result::Reader result) {
    if (result.isValue()) {
      record(TaskFinished{batch.receipt, index});
      ++counters_.deferred_done;
      return;
    }
    const auto error = result.getError();
    deferred_failure(batch, index, error.getKind(), std::string(text(error.getMessage())));
  }

  // A failed attempt: retried (at the back of the queue) until the attempts run out, then dead.
  void deferred_failure(Batch& batch, std::uint32_t index, wire::ErrorKind kind, const std::string& message) {
    const DeferredBatch* state = deferred_.find(batch.receipt);
    if (state == nullptr || index >= state->tasks.size() || state->tasks[index].status != TaskStatus::pending) return;
    const std::uint32_t attempts = state->tasks[index].attempts + 1;
    if (attempts >= config_.deferred_attempts) {
      logger_->warn("broker: deferred task {} of receipt {} is dead after {} attempt(s): {}", index, batch.receipt,
                    attempts, message);
      record(TaskFailedAttempt{batch.receipt, index, attempts, message});  // the count includes this one
      record(TaskDead{batch.receipt, index, static_cast<std::uint16_t>(kind), message});
      return;
    }
    record(TaskFailedAttempt{batch.receipt, index, attempts, message});
    requeue_deferred(batch, index);
  }

  // `fanout deferred`: list, retry or drop dead tasks.
  void on_deferred_request(const PeerId& peer, wire::DeferredRequest::Reader request) {
    const auto action = request.getAction();
    const std::string receipt_text(text(request.getReceipt()));
    const bool has_index = request.getHasIndex();
    const std::uint32_t wanted_index = request.getIndex();
    wire::OutMessage out;
    auto report = out.envelope().initDeferredReport();
    if (!journal_) {
      report.setError("this broker keeps no journal (start it with --journal DIR), so it holds no deferred tasks");
      wire::send_to(router_, peer, out.frame());
      return;
    }
    std::optional<std::uint64_t> receipt;
    if (!receipt_text.empty()) {
      char* end = nullptr;
      const unsigned long long value = std::strtoull(receipt_text.c_str(), &end, 10);
      if (end == receipt_text.c_str() || *end != '\0' || deferred_.find(value) == nullptr) {
        report.setError("no deferred batch with receipt '" + receipt_text + "' is live here");
        wire::send_to(router_, peer, out.frame());
        return;
      }
      receipt = value;
    }
    std::vector<std::pair<std::uint64_t, std::uint32_t>> dead;
    for (const auto& [r, batch] : deferred_.batches()) {
      if (receipt && r != *receipt) continue;
      for (std::uint32_t index = 0; index < batch.tasks.size(); ++index) {
        if (has_index && index != wanted_index) continue;
        if (batch.tasks[index].status == TaskStatus::dead) dead.emplace_back(r, index);
      }
    }
    switch (action) {
      case wire::DeferredRequest::Action::LIST: {
        auto list = report.initDead(static_cast<unsigned>(dead.size()));
        for (unsigned i = 0; i < dead.size(); ++i) {
          const auto [r, index] = dead[i];
          const TaskState& state = deferred_.find(r)->tasks[index];
          auto entry = list[i];
          entry.setReceipt(std::to_string(r));
          entry.setIndex(index);
          if (auto id = batch_by_receipt_.find(r); id != batch_by_receipt_.end()) {
            const auto task = batches_.at(id->second).deferred_frame->tasks[index];
            entry.setName(task.getName());
            if (task.getHasKey()) entry.setKey(task.getKey());
          }
          entry.setAttempts(state.attempts);
          entry.setKind(static_cast<wire::ErrorKind>(state.error_kind));
          entry.setMessage(state.error);
        }
        break;
      }
      case wire::DeferredRequest::Action::RETRY:
        for (const auto& [r, index] : dead) {
          record(DeadTaskRetried{r, index});
          if (auto id = batch_by_receipt_.find(r); id != batch_by_receipt_.end()) requeue_deferred(batches_.at(id->second), index);
        }
        report.setAffected(static_cast<std::uint32_t>(dead.size()));
        break;
      case wire::DeferredRequest::Action::DROP:
        for (const auto& [r, index] : dead) record(DeadTaskDropped{r, index});
        report.setAffected(static_cast<std::uint32_t>(dead.size()));
        break;
      default:
        report.setError("unknown deferred request");
    }
    wire::send_to(router_, peer, out.frame());
  }

  // ---- dispatch -------------------------------------------------------------------------------

  void dispatch() {
    if (batches_.empty()) return;
    std::vector<Executor*> ready;
    std::size_t live = 0;
    for (auto& [id, executor] : executors_) {
      if (executor.draining) continue;
      ++live;
      if (executor.free() > 0) ready.push_back(&executor);
    }
    if (ready.empty()) return;
    // Idle executors first, so that a small batch lands on executors that start it at once.
    std::stable_partition(ready.begin(), ready.end(), [](const Executor* e) { return e->in_flight.empty(); });
    // A batch is shared over every executor that can take part: the ready ones, the busy ones
    // that will free up, and the ones a supervisor announced that have not connected yet (a pool
    // starting up must not hand a whole batch to its first executor).
    // Executors also say how many their worker runs: they may be heard before their supervisor.
    std::size_t expected = 0;
    std::unordered_map<std::string_view, std::size_t> per_worker;
    for (const auto& [id, supervisor] : supervisors_) {
      if (!supervisor.draining) per_worker[supervisor.worker_id] = supervisor.processes;
    }
    for (const auto& [id, executor] : executors_) {
      if (!executor.draining) per_worker[executor.worker] = std::max<std::size_t>(per_worker[executor.worker], executor.processes);
    }
    for (const auto& [worker, processes] : per_worker) expected += processes;
    const std::size_t capacity = std::max({ready.size(), live, expected, std::size_t{1}});
    // Each pass gives every ready executor at most one message, and never a second message of a
    // short batch (no more tasks queued than executors) within one call: what is left waits for
    // the next call (the next message in), when other executors may be free or connected.
    std::vector<std::pair<const Executor*, std::uint64_t>> given;
    bool moved = true;
    while (moved) {
      moved = false;
      for (Executor* executor : ready) {
        if (!executor->draining && executor->free() > 0 && assign_one(*executor, capacity, given)) moved = true;
      }
    }
  }

  // Gives `executor` one message of work from the next client in round-robin order.
  bool assign_one(Executor& executor, std::size_t capacity,
                  std::vector<std::pair<const Executor*, std::uint64_t>>& given) {
    const std::size_t candidates = client_ring_.size();
    for (std::size_t turn = 0; turn < candidates; ++turn) {
      const PeerId client = client_ring_.front();
      client_ring_.pop_front();
      client_ring_.push_back(client);  // whatever happens, the next call starts with the next client
      auto found = clients_.find(client);
      if (found == clients_.end()) continue;
      auto& order = found->second.batches;
      for (std::size_t b = 0; b < order.size(); ++b) {
        const std::uint64_t id = order.front();
        order.pop_front();
        order.push_back(id);
        auto batch = batches_.find(id);
        if (batch == batches_.end() || batch->second.queue.empty() || batch->second.ended) continue;
        // A second message of a short batch for the same executor waits (see dispatch()); a deep
        // queue keeps every executor's credit full.
        if (batch->second.queued <= capacity &&
            std::find(given.begin(), given.end(), std::make_pair<const Executor*>(&executor, id)) != given.end()) {
          continue;
        }
        Batch& chosen = batch->second;
        if (chosen.max_running > 0 && chosen.in_flight >= chosen.max_running) continue;
        const auto first = first_served(executor, chosen);
        if (first == chosen.queue.end()) continue;
        const bool shell = first->name_text() == kShellTask;
        if (shell && !executor.in_flight.empty()) continue;
        given.emplace_back(&executor, id);
        std::size_t share = shell ? 1 : (chosen.queued + capacity - 1) / capacity;
        if (chosen.max_running > 0) share = std::min<std::size_t>(share, chosen.max_running - chosen.in_flight);
        send_work(executor, chosen, first, static_cast<std::uint32_t>(std::min<std::size_t>(executor.free(), share)));
        return true;
      }
    }
    return false;
  }

  // The first queue entry of `batch` that `executor` serves (almost always the front).
  static std::deque<Pending>::iterator first_served(const Executor& executor, Batch& batch) {
    return std::find_if(batch.queue.begin(), batch.queue.end(),
                        [&](const Pending& pending) { return executor.serves(pending.name_text()); });
  }

  // Sends up to `limit` (>= 1) queued tasks of `batch` that `executor` serves, starting at `first`.
  void send_work(Executor& executor, Batch& batch, std::deque<Pending>::iterator first, std::uint32_t limit) {
    limit = std::max<std::uint32_t>(limit, 1);
    if (first->whole_fresh_frame() && first->frame->size() <= limit) {
      // Forward the client's frame as it came: ZeroMQ shares the bytes, nothing is copied.
      zmq::message_t copy;
      copy.copy(first->frame->message.frame());
      const FramePtr frame = first->frame;
      batch.queue.erase(first);
      batch.queued -= frame->size();
      for (std::uint32_t position = 0; position < frame->size(); ++position) {
        const auto task = frame->tasks[position];
        executor.in_flight.push_back(InFlight{frame, position, batch.id, task.getIndex(), task.getAttempt()});
      }
      batch.in_flight += frame->size();
      counters_.tasks_dispatched += frame->size();
      return send_to_executor(executor, std::move(copy));
    }
    // Otherwise a new message with a subset: runs of queue entries in queue order (requeued tasks
    // first), skipping names this executor does not serve.
    struct Chosen {
      const Frame* frame;
      std::uint32_t position;
      int attempt;
    };
    std::vector<Chosen> chosen;
    chosen.reserve(limit);
    for (auto pending = first; pending != batch.queue.end() && chosen.size() < limit;) {
      if (!executor.serves(pending->name_text())) {
        ++pending;
        continue;
      }
      while (pending->begin < pending->end && chosen.size() < limit) {
        const std::uint32_t position = pending->begin++;
        const auto task = pending->frame->tasks[position];
        const auto attempt = pending->attempt >= 0 ? static_cast<std::uint16_t>(pending->attempt) : task.getAttempt();
        chosen.push_back(Chosen{pending->frame.get(), position, pending->attempt});
        executor.in_flight.push_back(InFlight{pending->frame, position, batch.id, task.getIndex(), attempt});
      }
      pending = pending->begin == pending->end ? batch.queue.erase(pending) : std::next(pending);
    }
    batch.queued -= chosen.size();
    wire::OutMessage out(static_cast<unsigned>(64 + chosen.size() * 24));
    auto window = out.envelope().initTasks();
    window.setBatchId(batch.id);
    window.setTotal(batch.total);
    window.setTimeoutMs(batch.timeout_ms);
    auto tasks = window.initTasks(static_cast<unsigned>(chosen.size()));
    for (unsigned i = 0; i < chosen.size(); ++i) {
      tasks.setWithCaveats(i, chosen[i].frame->tasks[chosen[i].position]);
      if (chosen[i].attempt >= 0) tasks[i].setAttempt(static_cast<std::uint16_t>(chosen[i].attempt));
    }
    batch.in_flight += static_cast<std::uint32_t>(chosen.size());
    counters_.tasks_dispatched += chosen.size();
    send_to_executor(executor, out.frame());
  }

  void send_to_executor(Executor& executor, zmq::message_t&& frame) {
    if (!wire::send_to(router_, executor.id, std::move(frame))) {
      // The executor is gone (ZMQ_ROUTER_MANDATORY): what we gave it goes back to the queues,
      // once dispatch() no longer holds pointers to executors.
      executor.draining = true;
      unreachable_.push_back(executor.id);
    }
  }

  // ---- failures, requeues, endings ------------------------------------------------------------

  // Fails queued tasks whose name no executor serves, when there are executors at all (with none
  // connected, tasks wait for one until their batch times out).
  void fail_unserved(Batch& batch) {
    // Deferred tasks wait for a worker that serves them, however long that takes.
    if (executors_.empty() || batch.queue.empty() || batch.receipt != 0) return;
    const auto served_anywhere = [&](std::string_view name) {
      return std::any_of(executors_.begin(), executors_.end(), [&](const auto& e) { return e.second.serves(name); });
    };
    for (auto pending = batch.queue.begin(); pending != batch.queue.end();) {
      if (served_anywhere(pending->name_text())) {
        ++pending;
        continue;
      }
      batch.queued -= pending->end - pending->begin;
      if (pending->name_text() == kShellTask) {
        fail_range(batch, *pending->frame, pending->begin, pending->end, wire::ErrorKind::REFUSED,
                   "no connected worker runs shell commands: they run only on workers started with "
                   "`fanout-worker --allow-shell`");
      } else {
        fail_range(batch, *pending->frame, pending->begin, pending->end, wire::ErrorKind::UNKNOWN_TASK,
                   "no connected worker serves task '" + pending->name_text() + "' (workers serve: " + served_names() + ")");
      }
      pending = batch.queue.erase(pending);
    }
  }

  std::string served_names() const {
    std::vector<std::string> all;
    for (const auto& [id, executor] : executors_) all.insert(all.end(), executor.names->begin(), executor.names->end());
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    std::string list;
    for (const auto& name : all) list += (list.empty() ? "" : ", ") + name;
    return list.empty() ? std::string("nothing") : list;
  }

  void fail_range(Batch& batch, const Frame& frame, std::uint32_t begin, std::uint32_t end, wire::ErrorKind kind,
                  const std::string& message) {
    std::vector<std::pair<std::uint32_t, std::uint16_t>> failed;
    for (std::uint32_t position = begin; position < end; ++position) {
      failed.emplace_back(frame.tasks[position].getIndex(), frame.tasks[position].getAttempt());
    }
    send_failures(batch, failed, kind, message);
  }

  // Sends failure results for (index, attempt) pairs of `batch` to its client.
  void send_failures(Batch& batch, const std::vector<std::pair<std::uint32_t, std::uint16_t>>& failed,
                     wire::ErrorKind kind, const std::string& message) {
    if (failed.empty()) return;
    sweep_candidates_.push_back(batch.id);
    if (batch.receipt != 0) {  // nobody to tell: a failed attempt of a deferred task
      for (const auto& [index, attempt] : failed) deferred_failure(batch, index, kind, message);
      return;
    }
    wire::OutMessage out;
    auto list = out.envelope().initResults(static_cast<unsigned>(failed.size()));
    for (unsigned i = 0; i < failed.size(); ++i) {
      auto result = list[i];
      result.setBatchId(batch.id);
      result.setIndex(failed[i].first);
      result.setAttempt(failed[i].second);
      result.setRanOn("broker");
      auto error = result.initError();
      error.setKind(kind);
      error.setMessage(message);
      error.setRanOn("broker");
    }
    batch.settled += static_cast<std::uint32_t>(failed.size());
    wire::send_to(router_, batch.client, out.frame());
  }

  // Ends a batch early (timeout, cancel): queued tasks fail, running ones fail and their
  // executors are stopped, windows still to come fail on arrival.
  void end_batch(Batch& batch, wire::ErrorKind kind, const std::string& message) {
    if (batch.ended) return;
    for (const Pending& pending : batch.queue) fail_range(batch, *pending.frame, pending.begin, pending.end, kind, message);
    batch.queue.clear();
    batch.queued = 0;
    for (auto& [id, executor] : executors_) {
      std::vector<std::pair<std::uint32_t, std::uint16_t>> failed;
      const bool running_it = !executor.in_flight.empty() && executor.in_flight.front().batch == batch.id;
      std::erase_if(executor.in_flight, [&](const InFlight& f) {
        if (f.batch != batch.id) return false;
        failed.emplace_back(f.index, f.attempt);
        return true;
      });
      batch.in_flight -= static_cast<std::uint32_t>(failed.size());
      send_failures(batch, failed, kind, message);
      if (running_it) stop_executor(executor, message);
    }
    batch.ended.emplace(kind, message);
  }

  // Asks the executor's supervisor to kill and replace it. From then on it gets no new work: what
  // it would get would only be requeued when its death is reported.
  void stop_executor(Executor& executor, const std::string& reason) {
    const auto supervisor = supervisor_by_worker_.find(executor.worker);
    if (supervisor == supervisor_by_worker_.end()) return;
    wire::OutMessage out;
    auto stop = out.envelope().initStopExecutor();
    stop.setExecutorId(executor.id);
    stop.setReason(reason);
    if (wire::send_to(router_, supervisor->second, out.frame())) executor.draining = true;
  }

  // Forgets an executor; its in-flight tasks go back to their batches' queues. The task it was
  // running (`running`, else the oldest) is blamed: its attempt goes up, and at max_attempts it
  // fails as worker lost. A broker-ordered stop blames nobody (those tasks already failed).
  void lose_executor(const PeerId& id, std::optional<std::pair<std::uint64_t, std::uint32_t>> running,
                     bool stopped_by_broker, const std::string& how) {
    auto found = executors_.find(id);
    if (found == executors_.end()) return;
    Executor executor = std::move(found->second);
    executors_.erase(found);
    ++counters_.executors_lost;
    if (!executor.in_flight.empty()) logger_->info("broker: executor {} lost ({}), requeueing {} task(s)", id, how, executor.in_flight.size());
    bool blamed = stopped_by_broker;
    for (auto entry = executor.in_flight.rbegin(); entry != executor.in_flight.rend(); ++entry) {
      auto batch = batches_.find(entry->batch);
      if (batch == batches_.end()) continue;
      --batch->second.in_flight;
      const bool guilty = running ? (entry->batch == running->first && entry->index == running->second)
                                  : (!blamed && std::next(entry) == executor.in_flight.rend());
      int attempt = entry->attempt;
      if (guilty) {
        blamed = true;
        attempt = entry->attempt + 1;
        if (attempt >= static_cast<int>(config_.max_attempts)) {
          send_failures(batch->second, {{entry->index, entry->attempt}}, wire::ErrorKind::WORKER_LOST,
                        "the task took down its worker " + std::to_string(attempt) + " times (last: " + how + ")");
          continue;
        }
      }
      if (batch->second.ended) {
        send_failures(batch->second, {{entry->index, entry->attempt}}, batch->second.ended->first, batch->second.ended->second);
        continue;
      }
      // Requeued at the front (iterating backwards keeps their order), to run again soon.
      batch->second.queue.push_front(
          Pending{entry->frame, entry->position, entry->position + 1, entry->frame->name_at(entry->position), attempt});
      ++batch->second.queued;
      ++counters_.requeued_tasks;
    }
  }

  void drop_supervisor(const PeerId& peer, const std::string& how) {
    auto found = supervisors_.find(peer);
    if (found == supervisors_.end()) return;
    const std::string worker = found->second.worker_id;
    supervisors_.erase(found);
    if (auto by_worker = supervisor_by_worker_.find(worker); by_worker != supervisor_by_worker_.end() && by_worker->second == peer) {
      supervisor_by_worker_.erase(by_worker);
    }
    std::vector<PeerId> its;
    for (const auto& [id, executor] : executors_) {
      if (executor.worker == worker) its.push_back(id);
    }
    logger_->info("broker: worker {} {}; {} executor(s) gone with it", worker, how, its.size());
    for (const auto& id : its) lose_executor(id, std::nullopt, false, "its worker " + how);
  }

  // A client that left (bye) or went silent: nobody waits for its batches any more. Shell commands
  // it still has running are stopped, as on cancel (a command may run for hours, and whoever
  // started it is gone); other running tasks finish and their results are dropped.
  void drop_client(const PeerId& peer) {
    auto found = clients_.find(peer);
    if (found == clients_.end()) return;
    for (const std::uint64_t id : found->second.batches) {
      auto batch = batches_.find(id);
      if (batch == batches_.end()) continue;
      if (runs_shell_commands(batch->second)) end_batch(batch->second, wire::ErrorKind::CANCELLED, "its client left");
      erase_batch(batch);
    }
    clients_.erase(found);
    std::erase(client_ring_, peer);
  }

  // Forgets batches whose every task has settled. The only place batches are erased (besides a
  // client leaving), so that handlers may hold references to batches freely. Only batches marked
  // since the last sweep (something of theirs settled) are looked at: a backlog of thousands of
  // waiting batches costs nothing per loop turn.
  void sweep_finished() {
    for (const std::uint64_t id : std::exchange(sweep_candidates_, {})) {
      const auto batch = batches_.find(id);
      if (batch == batches_.end()) continue;
      const Batch& b = batch->second;
      // A deferred batch stays while its journal state has it (dead tasks may be retried).
      const bool finished = b.receipt != 0 ? deferred_.find(b.receipt) == nullptr && b.in_flight == 0
                                           : b.received == b.total && b.settled >= b.total && b.in_flight == 0 && b.queue.empty();
      if (!finished) continue;
      if (auto client = clients_.find(b.client); client != clients_.end()) std::erase(client->second.batches, b.id);
      erase_batch(batch);
    }
  }

  bool runs_shell_commands(const Batch& batch) const {
    if (batch.in_flight == 0) return false;
    return std::any_of(executors_.begin(), executors_.end(), [&](const auto& entry) {
      return std::any_of(entry.second.in_flight.begin(), entry.second.in_flight.end(), [&](const InFlight& f) {
        return f.batch == batch.id && f.frame->names[f.frame->name_at(f.position)] == kShellTask;
      });
    });
  }

  void erase_batch(std::unordered_map<std::uint64_t, Batch>::iterator batch) {
    if (batch->second.receipt != 0) batch_by_receipt_.erase(batch->second.receipt);
    if (batch->second.deadline) --deadlines_;
    batches_.erase(batch);
  }

  // ---- timers ---------------------------------------------------------------------------------

  std::chrono::milliseconds until_next_timer() const {
    auto next = next_heartbeat_;
    if (deadlines_ > 0) {
      for (const auto& [id, batch] : batches_) {
        if (batch.deadline && !batch.ended) next = std::min(next, *batch.deadline);
      }
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now());
    return std::clamp(left, std::chrono::milliseconds(0), config_.heartbeat);
  }

  void run_timers() {
    const auto now = Clock::now();
    std::vector<Batch*> expired;
    if (deadlines_ > 0) {
      for (auto& [id, batch] : batches_) {
        if (batch.deadline && !batch.ended && now >= *batch.deadline) expired.push_back(&batch);
      }
    }
    for (Batch* batch : expired) {
      end_batch(*batch, wire::ErrorKind::TIMEOUT,
                "the batch exceeded its time limit of " + std::to_string(batch->timeout_ms) + " ms");
    }
    if (now < next_heartbeat_) return;
    next_heartbeat_ = now + config_.heartbeat;

    std::vector<PeerId> dead;
    for (const auto& [id, supervisor] : supervisors_) {
      if (now - supervisor.last_seen > config_.liveness) dead.push_back(id);
    }
    for (const auto& id : dead) drop_supervisor(id, "went silent");
    dead.clear();
    // An executor's liveness is its supervisor's (which heartbeats for it: a single-threaded
    // executor running a long task says nothing meanwhile). Only an executor without a known
    // supervisor is judged by its own silence.
    for (const auto& [id, executor] : executors_) {
      const auto supervisor = supervisor_by_worker_.find(executor.worker);
      if (supervisor != supervisor_by_worker_.end() && supervisors_.count(supervisor->second) != 0) continue;
      if (now - executor.last_seen > config_.liveness) dead.push_back(id);
    }
    for (const auto& id : dead) lose_executor(id, std::nullopt, false, "went silent");
    dead.clear();
    for (const auto& [id, client] : clients_) {
      if (id != kDeferredClient && now - client.last_seen > config_.liveness) dead.push_back(id);
    }
    for (const auto& id : dead) {
      logger_->info("broker: a client went silent; dropping its queued tasks");
      drop_client(id);
    }

    wire::OutMessage beat;
    beat.envelope().initHeartbeat().setSentUnixMs(wire::unix_ms());
    auto frame = beat.frame();
    const auto send_beat = [&](const PeerId& peer) {
      zmq::message_t copy;
      copy.copy(frame);
      wire::send_to(router_, peer, std::move(copy));
    };
    for (const auto& [id, supervisor] : supervisors_) send_beat(id);
    for (const auto& [id, executor] : executors_) send_beat(id);
    for (const auto& [id, client] : clients_) {
      if (id != kDeferredClient) send_beat(id);
    }
  }

  // ---- replies --------------------------------------------------------------------------------

  // A message dropped: counted, and its sender told why.
  void drop(const PeerId& peer, wire::ErrorKind kind, const std::string& why) {
    ++counters_.dropped_messages;
    reply_error(peer, kind, why);
  }
  void unknown_peer(const PeerId& peer) {
    ++counters_.dropped_messages;
    reply_error(peer, wire::ErrorKind::REFUSED, "unknown peer: announce first (the broker may have restarted)");
  }

  void reply_error(const PeerId& peer, wire::ErrorKind kind, const std::string& why) {
    wire::OutMessage out;
    auto error = out.envelope().initError();
    error.setKind(kind);
    error.setMessage(why);
    error.setRanOn("broker");
    wire::send_to(router_, peer, out.frame());
  }

  void refuse_window(const PeerId& client, std::uint64_t id, std::uint32_t count, const std::string& why,
                     wire::ErrorKind kind = wire::ErrorKind::BAD_MESSAGE) {
    ++counters_.dropped_messages;
    wire::OutMessage out;
    auto ack = out.envelope().initAck();
    ack.setBatchId(id);
    ack.setAccepted(0);
    auto refused = ack.initRefused();
    refused.setKind(kind);
    refused.setMessage(why + " (" + std::to_string(count) + " task(s) refused)");
    refused.setRanOn("broker");
    wire::send_to(router_, client, out.frame());
  }

  void send_status(const PeerId& peer) {
    wire::OutMessage out;
    auto status = out.envelope().initStatus();
    auto workers = status.initWorkers(static_cast<unsigned>(supervisors_.size()));
    const auto now = Clock::now();
    unsigned i = 0;
    std::uint64_t running = 0;
    for (const auto& [id, supervisor] : supervisors_) {
      auto worker = workers[i++];
      worker.setWorkerId(supervisor.worker_id);
      std::uint32_t free = 0;
      std::uint32_t executors = 0;
      std::vector<std::string> names;
      for (const auto& [eid, executor] : executors_) {
        if (executor.worker != supervisor.worker_id) continue;
        ++executors;
        free += executor.draining ? 0 : executor.free();
        names.insert(names.end(), executor.names->begin(), executor.names->end());
      }
      std::sort(names.begin(), names.end());
      names.erase(std::unique(names.begin(), names.end()), names.end());
      worker.setFreeSlots(free);
      worker.setProcesses(executors);
      auto list = worker.initTaskNames(static_cast<unsigned>(names.size()));
      for (unsigned n = 0; n < names.size(); ++n) list.set(n, names[n]);
      worker.setLastSeenMsAgo(static_cast<std::uint32_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(now - supervisor.last_seen).count()));
    }
    std::uint64_t queued = 0;
    for (const auto& [id, batch] : batches_) queued += batch.queued;
    for (const auto& [id, executor] : executors_) running += executor.in_flight.size();
    status.setQueued(queued);
    status.setRunning(running);
    std::uint64_t pending = 0, dead = 0, deferred_running = 0;
    for (const auto& [receipt, deferred] : deferred_.batches()) {
      for (const auto& task : deferred.tasks) {
        pending += task.status == TaskStatus::pending ? 1 : 0;
        dead += task.status == TaskStatus::dead ? 1 : 0;
      }
    }
    for (const auto& [id, batch] : batches_) deferred_running += batch.receipt != 0 ? batch.in_flight : 0;
    status.setDeferredPending(pending - std::min(pending, deferred_running));
    status.setDeferredRunning(deferred_running);
    status.setDeferredDone(counters_.deferred_done.load());
    status.setDeferredDead(dead);
    status.setDroppedMessages(counters_.dropped_messages.load());
    wire::send_to(router_, peer, out.frame());
  }

  NameSet intern(std::vector<std::string> names) {
    for (const auto& known : name_sets_) {
      if (*known == names) return known;
    }
    name_sets_.push_back(std::make_shared<const std::vector<std::string>>(std::move(names)));
    return name_sets_.back();
  }

  Config config_;
  std::shared_ptr<spdlog::logger> logger_;
  zmq::socket_t router_;
  int stop_fd_;
  std::vector<std::string> endpoints_;
  Counters counters_;
  Clock::time_point next_heartbeat_;

  std::unordered_map<PeerId, Client> clients_;
  std::deque<PeerId> client_ring_;
  std::unordered_map<std::uint64_t, Batch> batches_;
  std::unordered_map<PeerId, Executor> executors_;
  std::unordered_map<PeerId, Supervisor> supervisors_;
  std::unordered_map<std::string, PeerId> supervisor_by_worker_;
  std::vector<NameSet> name_sets_;
  std::vector<PeerId> unreachable_;  // executors a send failed to, lost after dispatch()
  std::vector<std::uint64_t> sweep_candidates_;  // batches that may have finished since the last sweep
  std::size_t deadlines_ = 0;                    // batches with a deadline (timers look only then)

  // Deferred batches. `deferred_` mirrors what the journal holds (every record is applied here
  // as it is submitted); batches wait in `awaiting_` until their record is durable.
  struct AwaitingAck {
    Token token;
    PeerId client;
    std::uint64_t batch_id;
    std::uint64_t receipt;
    FramePtr frame;
  };
  std::unique_ptr<Journal> journal_;
  std::string journal_failure_;  // set once the journal failed: deferred batches are refused
  DeferredState deferred_;
  std::deque<AwaitingAck> awaiting_;
  std::uint64_t next_receipt_ = 1;
  std::unordered_map<std::uint64_t, std::uint64_t> batch_by_receipt_;
};

Broker::Broker(Config config, zmq::context_t& context) : state_(std::make_unique<State>(std::move(config), context)) {}
Broker::~Broker() = default;
const std::vector<std::string>& Broker::endpoints() const noexcept { return state_->endpoints(); }
void Broker::run() { state_->run(); }
void Broker::stop() noexcept { state_->stop(); }
const Counters& Broker::counters() const noexcept { return state_->counters(); }

void check_endpoint_allowed(const std::string& endpoint, bool insecure) {
  const auto scheme_end = endpoint.find("://");
  if (scheme_end == std::string::npos) {
    throw Error("broker: '" + endpoint + "' is not an endpoint (tcp://host:port, ipc://path, inproc://name)");
  }
  if (insecure) return;
  const std::string scheme = endpoint.substr(0, scheme_end);
  if (scheme == "ipc" || scheme == "inproc") return;
  if (scheme == "tcp") {
    std::string host = endpoint.substr(scheme_end + 3);
    const auto colon = host.rfind(':');
    if (colon != std::string::npos) host.resize(colon);
    // Loopback only as a literal address (127.0.0.0/8, ::1) or "localhost": ZeroMQ binds names
    // of interfaces too, and "127.0.0.1.example.com" starts like loopback without being it.
    in_addr v4{};
    in6_addr v6{};
    if (host == "localhost") return;
    if (::inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127) return;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6)) return;
  }
  throw Error("broker: refusing to listen on " + endpoint +
              ": fanout has no authentication yet, so it binds loopback, ipc or inproc only; pass --insecure "
              "(FANOUT_INSECURE=1) to listen on other addresses of a network you trust");
}

}  // namespace fanout::broker
