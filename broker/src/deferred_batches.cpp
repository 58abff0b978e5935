#include "deferred_batches.hpp"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "printable.hpp"
#include "value_text.hpp"

namespace fanout::broker {

namespace {

// What `fanout deferred list` shows of a dead task's arguments: the decoded values, or a shell
// command's command line, as one line of text.
std::string arguments_text(wire::Task::Reader task) {
  constexpr std::size_t kLimit = 1024;
  try {
    if (!task.hasShell()) return wire::value_text(task.getArgs(), kLimit);
    const auto shell = task.getShell();
    if (shell.getUseShell()) return wire::printable(text(shell.getScript()), kLimit);
    std::string line;
    for (const auto word : shell.getArgv()) line += (line.empty() ? "" : " ") + std::string(text(word));
    return wire::printable(line, kLimit);
  } catch (const kj::Exception&) {
    // A client's malformed arguments must not keep the operator from listing the other dead tasks.
    return "(unreadable arguments)";
  }
}

}  // namespace

DeferredBatches::DeferredBatches(const Config& config, spdlog::logger& logger, Outbox& outbox, DeferredLedger& ledger,
                                 Batches& batches)
    : config_(config), logger_(logger), outbox_(outbox), ledger_(ledger), batches_(batches) {}

// After a restart: every batch the journal holds goes back to the queues, its pending tasks only
// (finished ones never run again; dead ones wait for `fanout deferred retry`).
void DeferredBatches::recover() {
  const DeferredState& recovered = ledger_.open();
  std::size_t pending = 0;
  for (const auto& [receipt, batch] : recovered.batches()) {
    zmq::message_t bytes(batch.payload.data(), batch.payload.size());
    std::string why;
    // A batch the journal acknowledged was within the limit of the broker that took it, which may
    // have been larger than this one's: its size is not held against it (its checksum vouches for
    // it; its counts are still checked).
    const std::size_t limit = std::max(config_.max_frame_bytes, batch.payload.size());
    auto message = wire::InMessage::parse(std::move(bytes), &why, limit, wire::InMessage::Check::whole);
    if (!message || !message->envelope().isTasks() || message->envelope().getTasks().getTasks().size() != batch.task_count) {
      logger_.error("broker: deferred batch {} in the journal is unreadable ({}); skipped", receipt, why);
      continue;
    }
    try {
      queue(receipt, std::make_shared<Frame>(std::move(*message)), &batch);
    } catch (const kj::Exception& error) {
      logger_.error("broker: deferred batch {} in the journal is unreadable ({}); skipped", receipt,
                    error.getDescription().cStr());
      continue;
    }
    for (const auto& task : batch.tasks) pending += task.status == TaskStatus::pending ? 1 : 0;
  }
  const auto& report = ledger_.recovery();
  logger_.info("broker: journal {}: {} deferred batch(es) with {} pending task(s) recovered{}", config_.journal.string(),
               recovered.batches().size(), pending,
               report.dropped_bytes > 0 ? " (a damaged tail of " + std::to_string(report.dropped_bytes) +
                                              " bytes was dropped: " + report.dropped_reason + ")"
                                        : std::string());
}

// A deferred batch arrives whole in one window, tasks listed by index from 0. It is journaled
// and acknowledged (with its receipt) once durable; from then on it is the broker's own.
bool DeferredBatches::on_window(const PeerId& client, const std::string& key, wire::InMessage message) {
  const auto window = message.envelope().getTasks();
  const std::uint64_t id = window.getBatchId();
  const auto tasks = window.getTasks();
  const std::uint32_t count = tasks.size();
  const auto refuse = [&](const std::string& why, wire::ErrorKind kind = wire::ErrorKind::BAD_MESSAGE) {
    outbox_.refuse_window(client, id, count, why, kind);
    return false;
  };
  if (!ledger_.enabled()) {
    return refuse("this broker keeps no journal, so it cannot accept deferred batches: start it with --journal DIR",
                  wire::ErrorKind::REFUSED);
  }
  if (!ledger_.failure().empty()) {
    return refuse("the broker's journal failed (" + ledger_.failure() + ")", wire::ErrorKind::REFUSED);
  }
  if (const std::string stalled = ledger_.stalled(); !stalled.empty()) {
    // Acknowledged batches are safe; a new one could not be made durable now. The journal retries
    // by itself: the client is told to defer again later rather than left waiting.
    return refuse("the broker's journal cannot write for now (" + stalled +
                      "); it retries by itself, defer the batch again later",
                  wire::ErrorKind::REFUSED);
  }
  if (count == 0 || count != window.getTotal()) {
    return refuse("a deferred batch must arrive whole in one window (" + std::to_string(count) + " of " +
                  std::to_string(window.getTotal()) + " tasks came)");
  }
  for (std::uint32_t position = 0; position < count; ++position) {
    if (tasks[position].getIndex() != position || tasks[position].getBatchId() != id) {
      return refuse("a deferred window lists its tasks by index from 0, in its own batch");
    }
  }
  // The same batch again, journaled already: its client sent it before this broker restarted and
  // the ack was lost with the old one, so it sent it again (at least once). The same receipt, not
  // a second copy that would run every task twice.
  if (const Batch* known = batches_.find(id); known != nullptr && known->receipt != 0 && known->total == count) {
    logger_.info("broker: deferred batch {} came again (its client missed the ack); acknowledged as before", known->receipt);
    outbox_.acknowledge_deferred(client, id, count, known->receipt);
    return true;
  }
  if (batches_.contains(id) || ledger_.awaiting(id)) return refuse("batch id " + std::to_string(id) + " is in use");
  auto frame = std::make_shared<Frame>(std::move(message));  // reads every name: may throw, before any change
  ledger_.submit(client, id, std::move(frame));
  if (!key.empty()) owner_by_batch_[id] = key;
  return true;
}

void DeferredBatches::on_journal_ready() {
  for (DeferredLedger::Durable& durable : ledger_.collect_durable()) {
    const std::uint64_t id = durable.frame->message.envelope().getTasks().getBatchId();
    if (auto owner = owner_by_batch_.find(id); owner != owner_by_batch_.end()) {
      owner_by_receipt_[durable.receipt] = std::move(owner->second);
      owner_by_batch_.erase(owner);
    }
    // Owners of batches the journal no longer holds (finished, dropped) go now and then.
    if (owner_by_receipt_.size() > 2 * ledger_.state().batches().size() + 64) {
      std::erase_if(owner_by_receipt_, [&](const auto& entry) { return ledger_.state().find(entry.first) == nullptr; });
    }
    queue(durable.receipt, std::move(durable.frame), nullptr);
  }
}

void DeferredBatches::queue(std::uint64_t receipt, FramePtr frame, const DeferredBatch* state) {
  const std::uint64_t id = frame->message.envelope().getTasks().getBatchId();
  const std::uint32_t size = frame->size();
  Batch* batch = batches_.open_deferred(receipt, std::move(frame));
  if (batch == nullptr) {
    logger_.error("broker: deferred batch {} has the id of a live batch ({}); it waits for a restart", receipt, id);
    return;
  }
  for (std::uint32_t position = 0; position < size; ++position) {
    if (state != nullptr && state->tasks[position].status != TaskStatus::pending) continue;
    // A task that failed before the restart waits out its backoff again: a broker that restarts
    // (or crash-loops) does not turn retries into a burst.
    if (state != nullptr && state->tasks[position].attempts > 0) {
      batches_.retry_deferred_later(*batch, position, state->tasks[position].attempts);
    } else {
      batches_.requeue_deferred(*batch, position);
    }
  }
}

void DeferredBatches::on_request(const PeerId& peer, wire::DeferredRequest::Reader request,
                                 const std::optional<std::string>& owner) {
  const auto owned = [&](std::uint64_t receipt) {
    if (!owner) return true;
    const auto found = owner_by_receipt_.find(receipt);
    return found != owner_by_receipt_.end() && found->second == *owner;
  };
  const auto action = request.getAction();
  const std::string receipt_text(text(request.getReceipt()));
  const bool has_index = request.getHasIndex();
  const std::uint32_t wanted_index = request.getIndex();
  wire::OutMessage out;
  auto report = out.envelope().initDeferredReport();
  if (!ledger_.enabled()) {
    report.setError("this broker keeps no journal (start it with --journal DIR), so it holds no deferred tasks");
    outbox_.send(peer, out.frame());
    return;
  }
  const DeferredState& state = ledger_.state();
  std::optional<std::uint64_t> receipt;
  if (!receipt_text.empty()) {
    char* end = nullptr;
    const unsigned long long value = std::strtoull(receipt_text.c_str(), &end, 10);
    if (end == receipt_text.c_str() || *end != '\0' || state.find(value) == nullptr || !owned(value)) {
      // Another client's batch is answered as one that does not exist: its receipt tells nothing.
      report.setError("no deferred batch with receipt '" + receipt_text + "' is live here" +
                      (owner ? std::string(" among this key's own (an admin key sees every batch)") : std::string()));
      outbox_.send(peer, out.frame());
      return;
    }
    receipt = value;
  }
  std::vector<std::pair<std::uint64_t, std::uint32_t>> dead;
  for (const auto& [r, batch] : state.batches()) {
    if ((receipt && r != *receipt) || !owned(r)) continue;
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
        const TaskState& task_state = state.find(r)->tasks[index];
        auto entry = list[i];
        entry.setReceipt(std::to_string(r));
        entry.setIndex(index);
        if (const Batch* batch = batches_.by_receipt(r)) {
          const auto task = batch->deferred_frame->tasks[index];
          entry.setName(task.getName());
          if (task.getHasKey()) entry.setKey(task.getKey());
          // A shell command's arguments are its command line; other tasks' are a value tuple.
          entry.setArguments(arguments_text(task));
        }
        entry.setAttempts(task_state.attempts);
        entry.setKind(static_cast<wire::ErrorKind>(task_state.error_kind));
        entry.setMessage(task_state.error);
      }
      break;
    }
    case wire::DeferredRequest::Action::RETRY:
      for (const auto& [r, index] : dead) {
        ledger_.record(DeadTaskRetried{r, index});
        if (Batch* batch = batches_.by_receipt(r)) {
          batches_.may_have_finished(batch->id);
          batches_.requeue_deferred(*batch, index);
        }
      }
      report.setAffected(static_cast<std::uint32_t>(dead.size()));
      break;
    case wire::DeferredRequest::Action::DROP:
      for (const auto& [r, index] : dead) {
        ledger_.record(DeadTaskDropped{r, index});
        if (Batch* batch = batches_.by_receipt(r)) batches_.may_have_finished(batch->id);  // may settle the batch
      }
      report.setAffected(static_cast<std::uint32_t>(dead.size()));
      break;
    default:
      report.setError("unknown deferred request");
  }
  outbox_.send(peer, out.frame());
}

}  // namespace fanout::broker
