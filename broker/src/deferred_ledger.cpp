#include "deferred_ledger.hpp"

#include <algorithm>
#include <optional>
#include <utility>

#include <fanout/error.hpp>

#include "printable.hpp"
namespace fanout::broker {

DeferredLedger::DeferredLedger(const Config& config, std::shared_ptr<spdlog::logger> logger, Outbox& outbox,
                               Counters& counters)
    : config_(config), logger_(std::move(logger)), outbox_(outbox), counters_(counters) {}

const DeferredState& DeferredLedger::open() {
  journal_ = std::make_unique<Journal>(JournalOptions{.directory = config_.journal, .logger = logger_});
  state_ = journal_->take_recovered();
  next_receipt_ = std::max<std::uint64_t>(1, state_.next_receipt());
  return state_;
}

bool DeferredLedger::awaiting(std::uint64_t id) const {
  return std::any_of(awaiting_.begin(), awaiting_.end(), [&](const AwaitingAck& a) { return a.batch_id == id; });
}

void DeferredLedger::submit(const PeerId& client, std::uint64_t id, FramePtr frame) {
  const std::uint32_t count = frame->size();
  const std::uint64_t receipt = next_receipt_++;
  const auto& bytes = frame->message.frame();
  try {
    const Token token = journal_->submit(
        BatchAccepted{receipt, count, std::string(static_cast<const char*>(bytes.data()), bytes.size())});
    awaiting_.push_back(AwaitingAck{token, client, id, receipt, std::move(frame)});
  } catch (const Error& error) {
    journal_failed(error.what());
    outbox_.refuse_window(client, id, count, "the broker's journal failed (" + failure_ + ")",
                          wire::ErrorKind::REFUSED);
  }
}

std::vector<DeferredLedger::Durable> DeferredLedger::collect_durable() {
  Token through = 0;
  std::optional<std::string> failure;
  try {
    through = journal_->collect_durable();
  } catch (const Error& error) {
    failure = error.what();
    // Tokens reported durable before the failure stay durable: acknowledge those first.
    through = journal_->stats().durable;
  }
  std::vector<Durable> durable;
  while (!awaiting_.empty() && awaiting_.front().token <= through) {
    AwaitingAck ready = std::move(awaiting_.front());
    awaiting_.pop_front();
    const std::uint32_t count = ready.frame->size();
    state_.accept_at(ready.receipt, count, 0, 0);
    ++counters_.deferred_accepted;
    outbox_.acknowledge_deferred(ready.client, ready.batch_id, count, ready.receipt);
    durable.push_back(Durable{ready.receipt, std::move(ready.frame)});
  }
  if (failure) journal_failed(*failure);
  return durable;
}

void DeferredLedger::finished(std::uint64_t receipt, std::uint32_t index) {
  record(TaskFinished{receipt, index});
  ++counters_.deferred_done;
}

DeferredLedger::Verdict DeferredLedger::failed_attempt(std::uint64_t receipt, std::uint32_t index, wire::ErrorKind kind,
                                                       const std::string& message) {
  const DeferredBatch* batch = state_.find(receipt);
  if (batch == nullptr || index >= batch->tasks.size() || batch->tasks[index].status != TaskStatus::pending) {
    return Verdict::ignored;
  }
  const std::uint32_t attempts = batch->tasks[index].attempts + 1;
  if (attempts >= config_.deferred_attempts) {
    logger_->warn("broker: deferred task {} of receipt {} is dead after {} attempt(s): {}", index, receipt, attempts,
                  wire::printable(message, wire::kLogTextLimit));
    record(TaskFailedAttempt{receipt, index, attempts, message});  // the count includes this one
    record(TaskDead{receipt, index, static_cast<std::uint16_t>(kind), message});
    return Verdict::dead;
  }
  logger_->info("broker: deferred task {} of receipt {} failed (attempt {} of {}), to be retried after a backoff: {}", index, receipt,
                attempts, config_.deferred_attempts, wire::printable(message, wire::kLogTextLimit));
  record(TaskFailedAttempt{receipt, index, attempts, message});
  return Verdict::retry;
}

void DeferredLedger::record(JournalRecord entry) {
  if (!journal_) return;
  state_.apply(entry);
  if (!failure_.empty()) return;
  try {
    journal_->submit(std::move(entry));
  } catch (const Error& error) {
    journal_failed(error.what());
  }
}

void DeferredLedger::journal_failed(const std::string& why) {
  if (failure_.empty()) logger_->error("broker: the journal failed: {}; deferred batches are refused", why);
  failure_ = why;
  for (const AwaitingAck& waiting : awaiting_) {
    outbox_.refuse_window(waiting.client, waiting.batch_id, waiting.frame->size(),
                          "the broker's journal failed before the batch was durable (" + why + ")",
                          wire::ErrorKind::REFUSED);
  }
  awaiting_.clear();
}

}  // namespace fanout::broker
