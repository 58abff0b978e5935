// batches.hpp: the batches the broker holds (docs/protocol.md, "Broker rules"): windows in,
// results out, cancel, timeouts, and when a batch ends and is forgotten.
//
// Owns the batch table (only Batches creates and erases batches), the turn order of their
// clients (RoundRobin, which Dispatch walks), the index of deferred batches by receipt, and the
// batches to look at in the next sweep. A batch's queue is filled here (windows, requeues) and
// drained by Dispatch (dispatch.hpp), which moves its tasks into executors' in-flight lists;
// outcomes come back here: results from executors, failures the broker decides itself (unknown
// task, refused shell command, timeout, cancel, a task that keeps taking its executor down).
//
// A deferred batch (its `receipt` set) is the broker's own: its outcomes go to the DeferredLedger
// (deferred_ledger.hpp), never to a client, and a failed attempt is queued again at the back when
// the ledger says so. DeferredBatches (deferred_batches.hpp) creates such batches through
// open_deferred().
//
// Threads: the loop's thread only.
//
// Logs: one line at info per client batch that ends (finished, or abandoned by its client).
//
// Promises: a refused window leaves no trace but its `ack`; a result is forwarded only for a slot
// in flight at the executor that sent it, and a whole `results` frame of one batch travels on as
// it came (no copy, no re-encoding); every open slot of a batch that ends early fails with the
// same kind and message, windows still to come included; batches are erased only by
// sweep_finished() and drop_client(), so a handler may hold a Batch& across its work. Does not:
// decide which executor runs what (Dispatch), nor notice peers coming and going (Peers).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <spdlog/logger.h>

#include <fanout/broker/broker.hpp>

#include "admission.hpp"
#include "deferred_ledger.hpp"
#include "metrics.hpp"
#include "outbox.hpp"
#include "peers.hpp"
#include "records.hpp"
#include "retry_backoff.hpp"
#include "round_robin.hpp"

namespace fanout::broker {

class Batches {
 public:
  Batches(const Config& config, spdlog::logger& logger, Outbox& outbox, Counters& counters, Metrics& metrics,
          Peers& peers, DeferredLedger& ledger, Admission& admission);

  // ---- windows in, results out ----

  // Takes in a window of a batch that is not deferred: the first one creates the batch (deadline
  // from `now`), later ones add to it. Everything about the window is checked, its client's caps
  // included (Admission: refused as busy, counted under "busy"), and its task names read, before
  // anything changes. Returns false when the window was refused that way (answered with an `ack`
  // refusing it); true when it was taken, even if its tasks failed at once (the batch
  // had ended, or no connected executor serves them). Throws kj::Exception for a task name that is
  // not text, with nothing changed.
  bool on_window(const PeerId& client, wire::InMessage message, Clock::time_point now);

  // `results` from `executor`: the slots it had in flight are settled and forwarded to their
  // batches' clients (or, for a deferred batch, reported to the ledger); others are counted as
  // duplicates and dropped. The message is not checked whole on arrival (a client reads each
  // result under a guard of its own): every field read here (batch, index, elapsed time, value or
  // error, an error's kind and message) is read first, before anything changes, so a malformed
  // one throws kj::Exception with nothing changed.
  void on_results(Executor& executor, wire::InMessage message);

  // `handBack` from `executor`: tasks it had not started go back to the front of their batches'
  // queues, their attempts unchanged (the executor is draining, or answers a reclaim).
  void on_hand_back(Executor& executor, wire::HandBack::Reader hand_back);

  // A chunk of a shell command's output: forwarded while the command is in flight at `executor`.
  void on_output(const Executor& executor, wire::InMessage message);

  // ---- endings ----

  // `cancel` from `client`: its batch `id` ends with kind `cancelled` (a batch of another client
  // is left alone).
  void cancel(const PeerId& client, std::uint64_t id);

  // Ends every batch whose deadline has passed, with kind `timeout`; fails every task that ran
  // past its own run limit (Task.timeoutMs) with kind `timeout` and stops its executor; queues
  // the deferred tasks whose wait before a retry is over. True when it queued any (to dispatch).
  bool expire(Clock::time_point now);
  // A task with a run limit went to `executor`: expire() looks at it once `deadline` passes.
  void watch_run_limit(const PeerId& executor, Clock::time_point deadline) { run_limits_.emplace(deadline, executor); }
  // The earliest deadline of a running batch or task, or of a deferred task's retry, or `limit`
  // when none comes before it.
  Clock::time_point next_deadline(Clock::time_point limit) const;

  // Fails queued tasks whose name no connected executor serves (when any is connected at all); to
  // run when the executors changed.
  void fail_unserved_everywhere();

  // Who is to blame for an executor's loss.
  enum class Blame {
    running_task,  // the task it was running (`running`, else the oldest): it may have killed it
    stopped_task,  // the broker stopped it for a task that already failed (timeout, cancel)
    nobody,        // its worker's drain ran out of time: no task is to blame
  };
  // Takes back the tasks in flight at an executor that is gone: they go to the front of their
  // batches' queues. With Blame::running_task, the task it was running has its attempt raised,
  // and at config.max_attempts it fails with kind `workerLost`.
  void take_back(const Executor& lost, std::optional<std::pair<std::uint64_t, std::uint32_t>> running, Blame blame,
                 const std::string& how);

  // Takes back every task in flight at a live executor that reconnected (they may have been lost
  // with its old connection), without blame, and empties its list.
  void requeue_in_flight(Executor& executor);

  // A client that left (bye) or went silent (`how`): nobody waits for its batches any more, so
  // they are forgotten, each logged at info with what it had settled: "finished" when every task
  // it sent had settled (an open-ended batch ends that way), else "abandoned" with how it went. Shell commands it still has running are stopped, as on cancel (a command may run
  // for hours, and whoever started it is gone); other running tasks finish and their results are
  // dropped.
  void drop_client(const PeerId& client, const std::string& how);

  // Forgets batches whose every task has settled. Only batches marked since the last sweep
  // (something of theirs settled) are looked at: a backlog of thousands of waiting batches costs
  // nothing per loop turn.
  void sweep_finished();

  // ---- for Dispatch ----

  bool empty() const noexcept { return batches_.empty(); }
  // Its client has too much unread (Admission::behind): none of its tasks goes out for now.
  bool held_back(const Batch& batch) const { return admission_.behind(batch.client); }
  // A client's heartbeat says it read `bytes` more of what it was sent.
  void client_read(const PeerId& client, std::uint64_t bytes) { admission_.read(client, bytes); }
  Batch* find(std::uint64_t id) {
    const auto found = batches_.find(id);
    return found == batches_.end() ? nullptr : &found->second;
  }
  RoundRobin& turns() noexcept { return turns_; }
  TaskTimes& task_times() noexcept { return task_times_; }

  // ---- for deferred batches ----

  bool contains(std::uint64_t id) const { return batches_.count(id) != 0; }
  // Makes a batch of deferred batch `receipt`, under the broker's deferred client, with nothing
  // queued yet. It keeps the id its client gave it: the tasks in the frame carry it to the
  // executors and back. nullptr when a live batch has that id.
  Batch* open_deferred(std::uint64_t receipt, FramePtr frame);
  // Queues task `index` of a deferred batch at the back (joining the previous run when it can).
  void requeue_deferred(Batch& batch, std::uint32_t index);
  // Queues it once its backoff after `failed` failed attempts is over (retry_backoff.hpp); at
  // once when the backoff is off. It is queued then only if the journal still has it pending.
  void retry_deferred_later(Batch& batch, std::uint32_t index, std::uint32_t failed);
  Batch* by_receipt(std::uint64_t receipt);
  // Something of batch `id` settled outside this class (a dead task dropped): look at it in the
  // next sweep.
  void may_have_finished(std::uint64_t id) { sweep_candidates_.push_back(id); }

  // ---- for the status reply ----

  const std::unordered_map<std::uint64_t, Batch>& all() const noexcept { return batches_; }

 private:
  using Failures = std::vector<std::pair<std::uint32_t, std::uint16_t>>;  // (index, attempt)

  void deliver(std::uint64_t id, std::uint32_t count, zmq::message_t&& frame);
  void fail_unserved(Batch& batch);
  void fail_range(Batch& batch, const Frame& frame, std::uint32_t begin, std::uint32_t end, wire::ErrorKind kind,
                  const std::string& message);
  void send_failures(Batch& batch, const Failures& failed, wire::ErrorKind kind, const std::string& message);
  void deferred_failure(Batch& batch, std::uint32_t index, wire::ErrorKind kind, const std::string& message);
  void end_batch(Batch& batch, wire::ErrorKind kind, const std::string& message);
  void expire_running(Clock::time_point now);
  bool retry_due(Clock::time_point now);
  bool runs_shell_commands(const Batch& batch) const;
  void erase_batch(std::unordered_map<std::uint64_t, Batch>::iterator batch);
  // One line at info for a client's batch that ends: `how` (finished, dropped...), its tasks, its
  // outcomes by kind, how long the broker held it.
  void log_end(const Batch& batch, const std::string& how) const;
  // One line at warn for a batch that reached its deadline: where its unsettled tasks were.
  void log_expiry(const Batch& batch, Clock::time_point now) const;

  const Config& config_;
  spdlog::logger& logger_;
  Outbox& outbox_;
  Counters& counters_;
  Metrics& metrics_;
  Peers& peers_;
  DeferredLedger& ledger_;
  Admission& admission_;

  std::unordered_map<std::uint64_t, Batch> batches_;
  RoundRobin turns_;
  TaskTimes task_times_;
  std::unordered_map<std::uint64_t, std::uint64_t> batch_by_receipt_;
  std::vector<std::uint64_t> sweep_candidates_;  // batches that may have finished since the last sweep
  // What on_results reads of each result of a message, read before it changes anything.
  struct ResultSeen {
    std::uint64_t batch;
    std::uint32_t index;
    std::uint64_t elapsed_us;
    bool ok;                   // a value; else an error of `kind`, saying `message`
    wire::ErrorKind kind;
    std::string_view message;  // into the message's frame
    std::vector<wire::ErrorKind> slot_failures;  // a unit's slots that failed (Result.slotErrors)
  };
  std::vector<ResultSeen> results_seen_;  // on_results' scratch, kept for its capacity
  std::size_t deadlines_ = 0;                    // batches with a deadline (timers look only then)
  RetryBackoff backoff_;
  // Executors given a task with a run limit, by its deadline; an entry whose task ended first is
  // dropped when it comes due.
  std::multimap<Clock::time_point, PeerId> run_limits_;
  // Deferred tasks waiting out their backoff: when each is due, (receipt, index).
  std::multimap<Clock::time_point, std::pair<std::uint64_t, std::uint32_t>> retries_;
};

}  // namespace fanout::broker
