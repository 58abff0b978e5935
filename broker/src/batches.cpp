#include "batches.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <memory>
#include <variant>

#include <kj/exception.h>
#include <spdlog/spdlog.h>

#include "printable.hpp"

namespace fanout::broker {

Batches::Batches(const Config& config, spdlog::logger& logger, Outbox& outbox, Counters& counters, Metrics& metrics,
                 Peers& peers, DeferredLedger& ledger, Admission& admission)
    : config_(config), logger_(logger), outbox_(outbox), counters_(counters), metrics_(metrics), peers_(peers), ledger_(ledger),
      admission_(admission),
      task_times_(config.unknown_task_time),
      backoff_(config.deferred_retry_delay, config.deferred_retry_max_delay) {}

// ---- windows in, results out ------------------------------------------------------------------

bool Batches::on_window(const PeerId& client, wire::InMessage message, Clock::time_point now) {
  const auto window = message.envelope().getTasks();
  const std::uint64_t id = window.getBatchId();
  const auto tasks = window.getTasks();
  const std::uint32_t count = tasks.size();
  const auto known = batches_.find(id);
  const auto refuse = [&](const std::string& why) {
    outbox_.refuse_window(client, id, count, why);
    return false;
  };
  if (known != batches_.end() && known->second.client != client) {
    return refuse("batch id " + std::to_string(id) + " belongs to another client");
  }
  const std::uint32_t total = known != batches_.end() ? known->second.total : window.getTotal();
  // A batch resubmitted after this broker restarted: the slots its client already has count as
  // received and settled.
  const std::uint32_t settled_before = known != batches_.end() ? 0 : window.getSettledBefore();
  const std::uint32_t received = known != batches_.end() ? known->second.received : settled_before;
  std::uint64_t slots = 0;  // a unit counts its slots (fanout.capnp, Task.slots)
  for (const auto task : tasks) {
    if (task.getSlots() > wire::kMostUnitSlots) {
      return refuse("a unit of " + std::to_string(task.getSlots()) + " slots (at most " +
                    std::to_string(wire::kMostUnitSlots) + ")");
    }
    slots += std::max<std::uint32_t>(task.getSlots(), 1);
    if (task.getIndex() >= total) {
      return refuse("task index " + std::to_string(task.getIndex()) + " is outside the batch of " +
                    std::to_string(total));
    }
    if (task.getBatchId() != id) {
      return refuse("a task of batch " + std::to_string(task.getBatchId()) + " in a window of batch " +
                    std::to_string(id));
    }
  }
  if (std::uint64_t{received} + count > total) return refuse("the batch's windows hold more tasks than its total");
  std::shared_ptr<const void> hold;
  if (count > 0) {
    auto admitted = admission_.admit(client, count, message.size());
    if (auto* busy = std::get_if<std::string>(&admitted)) {
      outbox_.refuse_window(client, id, count, *busy, wire::ErrorKind::REFUSED, Refusal::busy);
      return false;
    }
    hold = std::move(std::get<std::unique_ptr<Admission::Hold>>(admitted));
  }
  FramePtr frame = count == 0 ? nullptr : std::make_shared<Frame>(std::move(message));
  if (frame) frame->hold = std::move(hold);

  auto [where, created] = batches_.try_emplace(id);
  Batch& batch = where->second;
  if (created) {
    batch.id = id;
    batch.client = client;
    batch.total = total;
    batch.received = settled_before;
    batch.settled = settled_before;
    batch.timeout_ms = window.getTimeoutMs();
    batch.max_running = window.getMaxRunning();
    batch.opened = now;
    if (batch.timeout_ms > 0) {
      batch.deadline = now + std::chrono::milliseconds(batch.timeout_ms);
      ++deadlines_;
    }
    turns_.enter(client, id);
  }
  counters_.tasks_received += slots;
  batch.received += count;
  sweep_candidates_.push_back(id);  // an empty batch is finished at once
  if (!frame) return true;
  if (batch.ended) {  // windows that arrive after the batch timed out or was cancelled
    fail_range(batch, *frame, 0, frame->size(), batch.ended->first, batch.ended->second);
    return true;
  }
  for (const Frame::Run& run : frame->runs) batch.queue.push_back(Pending{frame, run.begin, run.end, run.name, -1});
  batch.queued += frame->size();
  fail_unserved(batch);
  return true;
}

namespace {

// Copies `result` into `list[j]`. Its slots are settled here already, so a result whose value
// cannot be copied (a malformed pointer: results are not checked whole on arrival) still goes to
// the client, as a `badMessage` failure of its slot, rather than leave the slot open for ever.
void copy_result(capnp::List<wire::Result>::Builder list, unsigned j, wire::Result::Reader result) {
  try {
    list.setWithCaveats(j, result);
    return;
  } catch (const kj::Exception& error) {
    list.setWithCaveats(j, wire::Result::Reader());  // whatever the copy left, cleared
    auto unreadable = list[j];
    unreadable.setBatchId(result.getBatchId());
    unreadable.setIndex(result.getIndex());
    unreadable.setAttempt(result.getAttempt());
    unreadable.setElapsedUs(result.getElapsedUs());
    auto failure = unreadable.initError();
    failure.setKind(wire::ErrorKind::BAD_MESSAGE);
    failure.setMessage(std::string("the executor's result could not be read: ") + error.getDescription().cStr());
  }
}

}  // namespace

void Batches::on_results(Executor& executor, wire::InMessage message) {
  const auto results = message.envelope().getResults();
  if (results.size() == 0) return;
  // Everything used below is read now: the message was not checked whole on arrival, and a
  // malformed part must throw before anything changes (data fields of a list element are read
  // without following pointers and never throw; an error's kind and message do follow one).
  auto& seen = results_seen_;
  seen.clear();
  seen.reserve(results.size());
  for (const auto result : results) {
    ResultSeen entry{result.getBatchId(), result.getIndex(), result.getElapsedUs(), result.isValue(),
                     wire::ErrorKind::BAD_MESSAGE, {}, {}};
    if (!entry.ok) {
      const auto error = result.getError();
      entry.kind = error.getKind();
      entry.message = text(error.getMessage());
    } else if (result.hasSlotErrors()) {
      for (const auto failed : result.getSlotErrors()) entry.slot_failures.push_back(failed.getError().getKind());
    }
    seen.push_back(std::move(entry));
  }
  const auto now = Clock::now();
  executor.reclaim_pending = false;  // whatever it was asked, it is answering
  std::vector<bool> matched(seen.size(), false);
  std::size_t matches = 0;
  // A message's results are nearly always of one batch: it is looked up once per run of them.
  auto batch = batches_.end();
  for (std::size_t i = 0; i < seen.size(); ++i) {
    const ResultSeen& result = seen[i];
    // Executors answer in order, so the match is almost always at the front.
    const auto found = std::find_if(executor.in_flight.begin(), executor.in_flight.end(), [&](const InFlight& f) {
      return f.batch == result.batch && f.index == result.index;
    });
    if (found == executor.in_flight.end()) {
      ++counters_.duplicate_results;
      continue;
    }
    const std::uint32_t index = found->index;
    // A unit's slots (never deferred) count one by one in the metrics.
    const std::uint32_t slots = std::max<std::uint32_t>(found->frame->tasks[found->position].getSlots(), 1);
    // A unit's run time is what the slots it ran took: not those it refused (stopped at half a
    // frame), and nothing when it failed whole (its slots did not run).
    const auto refused = static_cast<std::uint32_t>(
        std::count(result.slot_failures.begin(), result.slot_failures.end(), wire::ErrorKind::REFUSED));
    if (found->times != nullptr && (result.ok || slots == 1) && refused < slots) {
      found->times->record(std::chrono::microseconds(result.elapsed_us), slots - refused);
    }
    metrics_.ran(std::chrono::microseconds(result.elapsed_us));
    executor.forget(found, now);
    if (batch == batches_.end() || batch->first != result.batch) batch = batches_.find(result.batch);
    if (batch != batches_.end()) {
      --batch->second.in_flight;
      if (result.ok) {
        ++batch->second.succeeded;
      } else {
        batch->second.count_failures(result.kind, 1);
      }
    }
    if (batch != batches_.end() && batch->second.receipt != 0) {
      // The broker's own: not forwarded, but recorded.
      Batch& deferred = batch->second;
      if (result.ok) {
        sweep_candidates_.push_back(deferred.id);  // the record may settle the batch's last task
        ledger_.finished(deferred.receipt, index);
        metrics_.completed_ok();
      } else {
        deferred_failure(deferred, index, result.kind, std::string(result.message));
      }
      continue;
    }
    matched[i] = true;
    ++matches;
    if (!result.ok) {
      metrics_.completed(result.kind, slots);
      continue;
    }
    // A unit's slots that failed count as such; those it did not run (`refused`) settle later,
    // sent again alone.
    std::uint32_t failed = 0;
    for (const wire::ErrorKind kind : result.slot_failures) {
      failed += 1;
      if (kind != wire::ErrorKind::REFUSED) metrics_.completed(kind);
    }
    metrics_.completed_ok(slots > failed ? slots - failed : 0);
  }
  if (matches == 0) return;
  const std::uint64_t first_batch = seen[0].batch;
  const bool one_batch =
      std::all_of(seen.begin(), seen.end(), [&](const ResultSeen& result) { return result.batch == first_batch; });
  if (one_batch && matches == seen.size()) {
    // The common case: the frame goes to the client as it came, not even re-encoded.
    return deliver(first_batch, matches, std::move(message.frame()));
  }
  // Rare: duplicates to filter out, or results of several batches in one message.
  std::vector<std::uint64_t> batch_ids;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    if (matched[i] && std::find(batch_ids.begin(), batch_ids.end(), seen[i].batch) == batch_ids.end()) {
      batch_ids.push_back(seen[i].batch);
    }
  }
  for (const std::uint64_t id : batch_ids) {
    std::vector<unsigned> chosen;
    for (unsigned i = 0; i < seen.size(); ++i) {
      if (matched[i] && seen[i].batch == id) chosen.push_back(i);
    }
    wire::OutMessage out;
    auto list = out.envelope().initResults(static_cast<unsigned>(chosen.size()));
    for (unsigned j = 0; j < chosen.size(); ++j) copy_result(list, j, results[chosen[j]]);
    deliver(id, static_cast<std::uint32_t>(chosen.size()), out.frame());
  }
}

// Live output of a shell command: passed on as it came to the client of the batch, while the
// command is in flight at that executor (output of a task it no longer runs is dropped).
void Batches::on_output(const Executor& executor, wire::InMessage message) {
  const auto chunk = message.envelope().getOutput();
  const std::uint64_t id = chunk.getBatchId();
  const std::uint32_t index = chunk.getIndex();
  const bool running = std::any_of(executor.in_flight.begin(), executor.in_flight.end(),
                                   [&](const InFlight& f) { return f.batch == id && f.index == index; });
  if (!running) return;
  const auto batch = batches_.find(id);
  if (batch == batches_.end() || batch->second.ended) return;
  const std::size_t bytes = message.size();
  if (outbox_.send(batch->second.client, std::move(message.frame()))) admission_.sent(batch->second.client, bytes);
}

// Sends `count` outcomes of batch `id` (already encoded in `frame`) to its client.
void Batches::deliver(std::uint64_t id, std::uint32_t count, zmq::message_t&& frame) {
  auto found = batches_.find(id);
  if (found == batches_.end()) return;  // the client left or the batch ended: nobody to tell
  Batch& batch = found->second;
  batch.settled += count;
  sweep_candidates_.push_back(id);
  counters_.results_forwarded += count;
  if (batch.ended) return;
  const std::size_t bytes = frame.size();
  if (outbox_.send(batch.client, std::move(frame))) admission_.sent(batch.client, bytes);
}

// ---- failures the broker decides ------------------------------------------------------------

void Batches::fail_unserved_everywhere() {
  for (auto& [id, batch] : batches_) fail_unserved(batch);  // never erases: sweep_finished() does
}

// Fails queued tasks whose name no executor serves, when there are executors at all (with none
// connected, tasks wait for one until their batch times out).
void Batches::fail_unserved(Batch& batch) {
  // Deferred tasks wait for a worker that serves them, however long that takes.
  if (!peers_.any_executor() || batch.queue.empty() || batch.receipt != 0) return;
  for (auto pending = batch.queue.begin(); pending != batch.queue.end();) {
    if (peers_.served_anywhere(pending->name_text())) {
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
                 "no connected worker serves task '" + pending->name_text() + "' (workers serve: " +
                     peers_.served_names() + ")");
    }
    pending = batch.queue.erase(pending);
  }
}

void Batches::fail_range(Batch& batch, const Frame& frame, std::uint32_t begin, std::uint32_t end, wire::ErrorKind kind,
                         const std::string& message) {
  Failures failed;
  for (std::uint32_t position = begin; position < end; ++position) {
    failed.emplace_back(frame.tasks[position].getIndex(), frame.tasks[position].getAttempt());
  }
  send_failures(batch, failed, kind, message);
}

// Sends failure results for (index, attempt) pairs of `batch` to its client.
void Batches::send_failures(Batch& batch, const Failures& failed, wire::ErrorKind kind, const std::string& message) {
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
  batch.count_failures(kind, static_cast<std::uint32_t>(failed.size()));
  metrics_.completed(kind, failed.size());
  outbox_.send(batch.client, out.frame());
}

// A failed attempt at a deferred task: retried (at the back of the queue) until the ledger says
// its attempts ran out.
void Batches::deferred_failure(Batch& batch, std::uint32_t index, wire::ErrorKind kind, const std::string& message) {
  switch (ledger_.failed_attempt(batch.receipt, index, kind, message)) {
    case DeferredLedger::Verdict::ignored:
      return;
    case DeferredLedger::Verdict::retry: {
      sweep_candidates_.push_back(batch.id);
      const DeferredBatch* state = ledger_.state().find(batch.receipt);
      retry_deferred_later(batch, index, state != nullptr ? state->tasks[index].attempts : 1);
      return;
    }
    case DeferredLedger::Verdict::dead:
      metrics_.completed(kind);
      sweep_candidates_.push_back(batch.id);  // the record may settle the batch's last task
      return;
  }
}

// ---- endings --------------------------------------------------------------------------------

void Batches::cancel(const PeerId& client, std::uint64_t id) {
  auto found = batches_.find(id);
  if (found == batches_.end() || found->second.client != client) return;
  end_batch(found->second, wire::ErrorKind::CANCELLED, "the batch was cancelled");
}

bool Batches::expire(Clock::time_point now) {
  expire_running(now);
  const bool retried = retry_due(now);
  if (deadlines_ == 0) return retried;
  std::vector<Batch*> expired;
  for (auto& [id, batch] : batches_) {
    if (batch.deadline && !batch.ended && now >= *batch.deadline) expired.push_back(&batch);
  }
  for (Batch* batch : expired) {
    log_expiry(*batch, now);
    end_batch(*batch, wire::ErrorKind::TIMEOUT,
              "the batch exceeded its time limit of " + std::to_string(batch->timeout_ms) + " ms");
  }
  return retried;
}

// Deferred tasks whose backoff is over go to the back of their batch's queue, unless an operator
// dropped them (or their batch) meanwhile.
bool Batches::retry_due(Clock::time_point now) {
  bool queued = false;
  while (!retries_.empty() && retries_.begin()->first <= now) {
    const auto [receipt, index] = retries_.begin()->second;
    retries_.erase(retries_.begin());
    const DeferredBatch* state = ledger_.state().find(receipt);
    Batch* batch = by_receipt(receipt);
    if (state == nullptr || batch == nullptr || index >= state->tasks.size() ||
        state->tasks[index].status != TaskStatus::pending) {
      continue;
    }
    requeue_deferred(*batch, index);
    queued = true;
  }
  return queued;
}

// A task with a run limit is always the front of its executor's list (it is sent only to an
// executor with nothing else), so the front of each executor watched is all there is to look at.
// Only executors whose watch is due are looked at: not every executor on every loop turn.
void Batches::expire_running(Clock::time_point now) {
  while (!run_limits_.empty() && run_limits_.begin()->first <= now) {
    Executor* watched = peers_.find_executor(run_limits_.begin()->second);
    run_limits_.erase(run_limits_.begin());
    if (watched == nullptr) continue;  // gone, its tasks taken back already
    Executor& executor = *watched;
    if (executor.in_flight.empty() || !executor.in_flight.front().deadline) continue;  // it finished
    if (now < *executor.in_flight.front().deadline) continue;  // another task, watched on its own
    const InFlight entry = executor.in_flight.front();
    executor.forget(executor.in_flight.begin(), now);
    auto batch = batches_.find(entry.batch);
    const std::string limit = std::to_string(entry.frame->tasks[entry.position].getTimeoutMs());
    if (batch != batches_.end()) {
      --batch->second.in_flight;
      send_failures(batch->second, {{entry.index, entry.attempt}}, wire::ErrorKind::TIMEOUT,
                    "exceeded its time limit of " + limit + " ms and was stopped");
    }
    peers_.stop_executor(executor, "task " + std::to_string(entry.index) + " of batch " + std::to_string(entry.batch) +
                                       " ran past its time limit of " + limit + " ms");
  }
}

Clock::time_point Batches::next_deadline(Clock::time_point limit) const {
  if (!retries_.empty()) limit = std::min(limit, retries_.begin()->first);
  // A watch whose task has ended wakes the loop once for nothing: cheaper than a walk per turn.
  if (!run_limits_.empty()) limit = std::min(limit, run_limits_.begin()->first);
  if (deadlines_ == 0) return limit;
  for (const auto& [id, batch] : batches_) {
    if (batch.deadline && !batch.ended) limit = std::min(limit, *batch.deadline);
  }
  return limit;
}

// Ends a batch early (timeout, cancel): queued tasks fail, running ones fail and their
// executors are stopped, windows still to come fail on arrival.
void Batches::end_batch(Batch& batch, wire::ErrorKind kind, const std::string& message) {
  if (batch.ended) return;
  for (const Pending& pending : batch.queue) fail_range(batch, *pending.frame, pending.begin, pending.end, kind, message);
  batch.queue.clear();
  batch.queued = 0;
  const auto now = Clock::now();
  for (Executor& executor : peers_.executors()) {
    Failures failed;
    const bool running_it = !executor.in_flight.empty() && executor.in_flight.front().batch == batch.id;
    for (auto entry = executor.in_flight.begin(); entry != executor.in_flight.end();) {
      if (entry->batch != batch.id) {
        ++entry;
        continue;
      }
      failed.emplace_back(entry->index, entry->attempt);
      entry = executor.forget(entry, now);
    }
    batch.in_flight -= static_cast<std::uint32_t>(failed.size());
    send_failures(batch, failed, kind, message);
    if (running_it) peers_.stop_executor(executor, message);
  }
  batch.ended.emplace(kind, message);
}

void Batches::take_back(const Executor& lost, std::optional<std::pair<std::uint64_t, std::uint32_t>> running,
                        Blame blame, const std::string& how) {
  bool blamed = blame != Blame::running_task;
  for (auto entry = lost.in_flight.rbegin(); entry != lost.in_flight.rend(); ++entry) {
    auto batch = batches_.find(entry->batch);
    if (batch == batches_.end()) continue;
    --batch->second.in_flight;
    const bool guilty = blame != Blame::nobody &&
                        (running ? (entry->batch == running->first && entry->index == running->second)
                                 : (!blamed && std::next(entry) == lost.in_flight.rend()));
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

void Batches::on_hand_back(Executor& executor, wire::HandBack::Reader hand_back) {
  executor.reclaim_pending = false;
  const auto now = Clock::now();
  // The executor lists them the last received first: each goes to the front of its batch's queue
  // in turn, which leaves them there in their original order.
  for (const auto returned : hand_back.getTasks()) {
    const auto found = std::find_if(executor.in_flight.begin(), executor.in_flight.end(), [&](const InFlight& f) {
      return f.batch == returned.getBatchId() && f.index == returned.getIndex();
    });
    if (found == executor.in_flight.end()) continue;  // not given to it, or settled meanwhile
    const InFlight entry = *found;
    executor.forget(found, now);
    auto batch = batches_.find(entry.batch);
    if (batch == batches_.end()) continue;
    --batch->second.in_flight;
    ++counters_.handed_back_tasks;
    if (batch->second.ended) {
      send_failures(batch->second, {{entry.index, entry.attempt}}, batch->second.ended->first,
                    batch->second.ended->second);
      continue;
    }
    batch->second.queue.push_front(
        Pending{entry.frame, entry.position, entry.position + 1, entry.frame->name_at(entry.position), entry.attempt});
    ++batch->second.queued;
  }
}

void Batches::requeue_in_flight(Executor& executor) {
  if (executor.in_flight.empty()) return;
  take_back(executor, std::nullopt, Blame::nobody, "reconnected");
  executor.in_flight.clear();
  executor.backlog = std::chrono::nanoseconds(0);
  executor.front_since = Clock::now();
}

void Batches::drop_client(const PeerId& client, const std::string& how) {
  admission_.read(client, SIZE_MAX);  // what it left unread is gone with its connection
  for (const std::uint64_t id : turns_.remove_client(client)) {
    auto batch = batches_.find(id);
    if (batch == batches_.end()) continue;
    const Batch& b = batch->second;
    // `fanout run --broker` sends an open-ended batch and says goodbye once every task it sent has
    // settled: that batch finished. Only a client that leaves work unsettled abandoned it.
    const bool all_sent = b.total == UINT32_MAX || b.received >= b.total;
    const std::uint32_t unsettled = b.received > b.settled ? b.received - b.settled : 0;
    if (all_sent && unsettled == 0 && b.in_flight == 0 && b.queue.empty()) {
      log_end(b, "finished");
    } else {
      log_end(b, fmt::format("abandoned: its client {} with {} task(s) unsettled", how, unsettled));
    }
    if (runs_shell_commands(batch->second)) end_batch(batch->second, wire::ErrorKind::CANCELLED, "its client left");
    erase_batch(batch);
  }
}

// The only place batches are erased besides a client leaving, so that handlers may hold
// references to batches freely.
void Batches::sweep_finished() {
  for (const std::uint64_t id : std::exchange(sweep_candidates_, {})) {
    const auto batch = batches_.find(id);
    if (batch == batches_.end()) continue;
    const Batch& b = batch->second;
    // A deferred batch stays while its journal state has it (dead tasks may be retried).
    const bool finished = b.receipt != 0 ? ledger_.state().find(b.receipt) == nullptr && b.in_flight == 0
                                         : b.received == b.total && b.settled >= b.total && b.in_flight == 0 && b.queue.empty();
    if (!finished) continue;
    if (b.receipt == 0) log_end(b, "finished");
    turns_.remove(b.client, b.id);
    erase_batch(batch);
  }
}

bool Batches::runs_shell_commands(const Batch& batch) const {
  if (batch.in_flight == 0) return false;
  const auto executors = std::as_const(peers_).executors();
  return std::any_of(executors.begin(), executors.end(), [&](const Executor& executor) {
    return std::any_of(executor.in_flight.begin(), executor.in_flight.end(), [&](const InFlight& f) {
      return f.batch == batch.id && f.frame->names[f.frame->name_at(f.position)] == kShellTask;
    });
  });
}

// Says where a batch's unsettled tasks were when its deadline came: waiting here (and why they
// were not sent: its client too far behind in reading, or no executor free), or at which
// executors, running for how long. What an operator needs to tell a slow task from a stuck pool.
void Batches::log_expiry(const Batch& batch, Clock::time_point now) const {
  if (!logger_.should_log(spdlog::level::warn)) return;
  const Admission::Usage client = admission_.of(batch.client);
  std::string where = fmt::format("{} queued", batch.queued);
  if (batch.queued > 0 && held_back(batch)) {
    where += fmt::format(" (held back: its client has {} bytes of results unread, all clients {})", client.unread,
                         admission_.total().unread);
  }
  std::size_t executors = 0;
  std::size_t free = 0;
  for (const Executor& executor : std::as_const(peers_).executors()) {
    ++executors;
    if (!executor.draining && !executor.unconfirmed) free += executor.free() > 0 ? 1 : 0;
    std::size_t mine = 0;
    for (const InFlight& entry : executor.in_flight) mine += entry.batch == batch.id ? 1 : 0;
    if (mine == 0) continue;
    const auto front_for = std::chrono::duration_cast<std::chrono::milliseconds>(now - executor.front_since);
    // Names chosen by peers, shown as printable text (a log line each, whatever they hold).
    where += fmt::format("; {} at executor {} (holding {}, its first for {} ms{}{})", mine,
                         wire::printable(executor.id, wire::kLogTextLimit), executor.in_flight.size(), front_for.count(),
                         executor.draining ? ", draining" : "", executor.unconfirmed ? ", unconfirmed" : "");
  }
  logger_.warn("broker: batch {:016x} reached its deadline with {} of {} settled: {}; {} executor(s), {} with free credit",
               batch.id, batch.settled, batch.total, where, executors, free);
}

void Batches::log_end(const Batch& batch, const std::string& how) const {
  if (!logger_.should_log(spdlog::level::info)) return;
  std::string client;
  for (const unsigned char byte : batch.client) client += fmt::format("{:02x}", byte);
  std::string outcomes = std::to_string(batch.succeeded) + " succeeded";
  for (const auto& [kind, count] : batch.failures) outcomes += fmt::format(", {} {}", count, kind_label(kind));
  const auto held = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - batch.opened);
  // An open-ended batch (`fanout run --broker` reading stdin) says 0xFFFFFFFF.
  const std::string total = batch.total == UINT32_MAX ? "open-ended" : std::to_string(batch.total);
  logger_.info("broker: batch {:016x} of client {} {}: {} task(s) ({} received), {}, in {} ms", batch.id, client, how,
               total, batch.received, outcomes, held.count());
}

void Batches::erase_batch(std::unordered_map<std::uint64_t, Batch>::iterator batch) {
  if (batch->second.receipt != 0) batch_by_receipt_.erase(batch->second.receipt);
  if (batch->second.deadline) --deadlines_;
  batches_.erase(batch);
}

// ---- deferred batches -----------------------------------------------------------------------

Batch* Batches::open_deferred(std::uint64_t receipt, FramePtr frame) {
  const std::uint64_t id = frame->message.envelope().getTasks().getBatchId();
  if (batches_.count(id) != 0) return nullptr;
  Batch& batch = batches_[id];
  batch.id = id;
  batch.client = kDeferredClient;
  batch.total = frame->size();
  batch.received = batch.total;
  batch.receipt = receipt;
  batch.deferred_frame = std::move(frame);
  batch_by_receipt_[receipt] = id;
  peers_.list_deferred_client();
  turns_.enter(kDeferredClient, id);
  return &batch;
}

void Batches::requeue_deferred(Batch& batch, std::uint32_t index) {
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

void Batches::retry_deferred_later(Batch& batch, std::uint32_t index, std::uint32_t failed) {
  const auto wait = backoff_.after(failed);
  if (wait.count() == 0) return requeue_deferred(batch, index);
  retries_.emplace(Clock::now() + wait, std::pair{batch.receipt, index});
}

Batch* Batches::by_receipt(std::uint64_t receipt) {
  const auto id = batch_by_receipt_.find(receipt);
  return id == batch_by_receipt_.end() ? nullptr : find(id->second);
}

}  // namespace fanout::broker
