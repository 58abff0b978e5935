#include "deferred_store.hpp"

#include <cstring>
#include <type_traits>
#include <utility>

namespace fanout::broker {

namespace {

template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

// Body sizes without strings and payloads (kind byte included).
constexpr std::uint64_t slot_body = 1 + 8 + 4;              // finished, retried, dropped
constexpr std::uint64_t failed_body = slot_body + 4 + 4;     // + attempts + error length
constexpr std::uint64_t dead_body = slot_body + 2 + 4;       // + kind + error length
constexpr std::uint64_t accepted_body = slot_body;           // receipt + task count, payload follows
constexpr std::uint64_t checkpoint_body = 1 + 8;

// What one slot costs in a snapshot: the records snapshot() writes for it.
std::uint64_t slot_snapshot_bytes(const TaskState& task) noexcept {
  std::uint64_t bytes = 0;
  const bool carries_attempts = task.attempts > 0;
  switch (task.status) {
    case TaskStatus::pending:
      if (carries_attempts) bytes += frame_header_bytes + failed_body + task.error.size();
      break;
    case TaskStatus::done:
      bytes += frame_header_bytes + slot_body;
      break;
    case TaskStatus::dead:
    case TaskStatus::dropped:
      if (carries_attempts) bytes += frame_header_bytes + failed_body;
      bytes += frame_header_bytes + dead_body + task.error.size();
      if (task.status == TaskStatus::dropped) bytes += frame_header_bytes + slot_body;
      break;
  }
  return bytes;
}

void put_u8(std::string& out, std::uint8_t value) { out.push_back(static_cast<char>(value)); }
template <class T>
void put_le(std::string& out, T value) {
  static_assert(std::is_unsigned_v<T>);
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}
void put_text(std::string& out, const std::string& text) {
  put_le(out, static_cast<std::uint32_t>(text.size()));
  out.append(text);
}

// A bounds-checked little-endian reader over one body.
class Reader {
 public:
  Reader(const char* data, std::size_t size) : data_(data), size_(size) {}
  template <class T>
  bool get(T& value) {
    static_assert(std::is_unsigned_v<T>);
    if (size_ - pos_ < sizeof(T)) return false;
    T result = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      result |= static_cast<T>(static_cast<T>(static_cast<unsigned char>(data_[pos_ + i])) << (8 * i));
    }
    pos_ += sizeof(T);
    value = result;
    return true;
  }
  bool get_text(std::string& text) {
    std::uint32_t length = 0;
    if (!get(length) || size_ - pos_ < length) return false;
    text.assign(data_ + pos_, length);
    pos_ += length;
    return true;
  }
  void rest(std::string& out) {
    out.assign(data_ + pos_, size_ - pos_);
    pos_ = size_;
  }
  bool at_end() const noexcept { return pos_ == size_; }

 private:
  const char* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

}  // namespace

std::uint64_t receipt_of(const JournalRecord& record) noexcept {
  return std::visit(Overloaded{[](const Checkpoint&) -> std::uint64_t { return 0; },
                               [](const auto& r) -> std::uint64_t { return r.receipt; }},
                    record);
}

const char* describe(ApplyResult result) noexcept {
  switch (result) {
    case ApplyResult::applied: return "applied";
    case ApplyResult::unknown_receipt: return "unknown receipt";
    case ApplyResult::duplicate_receipt: return "receipt already live";
    case ApplyResult::index_out_of_range: return "task index out of range";
    case ApplyResult::wrong_status: return "task is not in a state this record applies to";
  }
  return "?";
}

const DeferredBatch* DeferredState::find(std::uint64_t receipt) const {
  const auto it = batches_.find(receipt);
  return it == batches_.end() ? nullptr : &it->second;
}

void DeferredState::move_payload(std::uint64_t receipt, std::uint64_t payload_offset) noexcept {
  const auto it = batches_.find(receipt);
  if (it != batches_.end()) it->second.payload_offset = payload_offset;
}

ApplyResult DeferredState::accept(std::uint64_t receipt, std::uint32_t task_count, std::string payload,
                                  std::uint64_t payload_offset, std::uint64_t payload_size) {
  if (batches_.contains(receipt)) return ApplyResult::duplicate_receipt;
  if (receipt >= next_receipt_) next_receipt_ = receipt + 1;
  if (task_count == 0) return ApplyResult::applied;  // settled as soon as accepted
  DeferredBatch batch;
  batch.task_count = task_count;
  batch.payload = std::move(payload);
  batch.payload_offset = payload_offset;
  batch.payload_size = payload_size;
  batch.tasks.resize(task_count);
  batch.snapshot_bytes = frame_header_bytes + accepted_body + payload_size;
  snapshot_bytes_ += batch.snapshot_bytes;
  batches_.emplace(receipt, std::move(batch));
  return ApplyResult::applied;
}

ApplyResult DeferredState::accept_at(std::uint64_t receipt, std::uint32_t task_count, std::uint64_t payload_offset,
                                     std::uint64_t payload_size) {
  return accept(receipt, task_count, {}, payload_offset, payload_size);
}

void DeferredState::set_task(std::uint64_t receipt, DeferredBatch& batch, std::uint32_t index, TaskState next) {
  TaskState& task = batch.tasks[index];
  const auto settled = [](const TaskState& t) {
    return t.status == TaskStatus::done || t.status == TaskStatus::dropped;
  };
  const std::uint64_t before = slot_snapshot_bytes(task);
  const std::uint64_t after = slot_snapshot_bytes(next);
  if (!settled(task) && settled(next)) ++batch.settled;
  task = std::move(next);
  batch.snapshot_bytes = batch.snapshot_bytes - before + after;
  snapshot_bytes_ = snapshot_bytes_ - before + after;
  if (batch.settled == batch.task_count) {
    snapshot_bytes_ -= batch.snapshot_bytes;
    batches_.erase(receipt);  // invalidates `batch`
  }
}

ApplyResult DeferredState::apply(JournalRecord record) {
  if (auto* accepted = std::get_if<BatchAccepted>(&record)) {
    const std::uint64_t size = accepted->payload.size();
    return accept(accepted->receipt, accepted->task_count, std::move(accepted->payload), 0, size);
  }
  if (auto* checkpoint = std::get_if<Checkpoint>(&record)) {
    if (checkpoint->next_receipt > next_receipt_) next_receipt_ = checkpoint->next_receipt;
    return ApplyResult::applied;
  }
  // Every other record names one slot of a live batch.
  const std::uint64_t receipt = receipt_of(record);
  const std::uint32_t index = std::visit(
      Overloaded{[](const Checkpoint&) -> std::uint32_t { return 0; },
                 [](const BatchAccepted&) -> std::uint32_t { return 0; },
                 [](const auto& r) -> std::uint32_t { return r.index; }},
      record);
  const auto it = batches_.find(receipt);
  if (it == batches_.end()) return ApplyResult::unknown_receipt;
  DeferredBatch& batch = it->second;
  if (index >= batch.task_count) return ApplyResult::index_out_of_range;
  const TaskState& task = batch.tasks[index];
  TaskState next = task;
  const bool ok = std::visit(
      Overloaded{[&](const TaskFinished&) {
                   if (task.status != TaskStatus::pending) return false;
                   next = TaskState{TaskStatus::done, 0, 0, {}};  // how it got there no longer matters
                   return true;
                 },
                 [&](TaskFailedAttempt& r) {
                   if (task.status != TaskStatus::pending) return false;
                   next.attempts = r.attempts;
                   next.error = std::move(r.error);
                   return true;
                 },
                 [&](TaskDead& r) {
                   if (task.status != TaskStatus::pending) return false;
                   next.status = TaskStatus::dead;
                   next.error_kind = r.kind;
                   next.error = std::move(r.error);
                   return true;
                 },
                 [&](const DeadTaskRetried&) {
                   if (task.status != TaskStatus::dead) return false;
                   next = TaskState{};  // a fresh budget of attempts
                   return true;
                 },
                 [&](const DeadTaskDropped&) {
                   if (task.status != TaskStatus::dead) return false;
                   next.status = TaskStatus::dropped;
                   return true;
                 },
                 [](const auto&) { return false; }},
      record);
  if (!ok) return ApplyResult::wrong_status;
  set_task(receipt, batch, index, std::move(next));
  return ApplyResult::applied;
}

std::vector<JournalRecord> DeferredState::snapshot() const {
  std::vector<JournalRecord> records;
  records.emplace_back(Checkpoint{next_receipt_});
  for (const auto& [receipt, batch] : batches_) {
    records.emplace_back(BatchAccepted{receipt, batch.task_count, batch.payload});
    for (std::uint32_t index = 0; index < batch.task_count; ++index) {
      const TaskState& task = batch.tasks[index];
      switch (task.status) {
        case TaskStatus::pending:
          if (task.attempts > 0) records.emplace_back(TaskFailedAttempt{receipt, index, task.attempts, task.error});
          break;
        case TaskStatus::done:
          records.emplace_back(TaskFinished{receipt, index});
          break;
        case TaskStatus::dead:
        case TaskStatus::dropped:
          if (task.attempts > 0) records.emplace_back(TaskFailedAttempt{receipt, index, task.attempts, {}});
          records.emplace_back(TaskDead{receipt, index, task.error_kind, task.error});
          if (task.status == TaskStatus::dropped) records.emplace_back(DeadTaskDropped{receipt, index});
          break;
      }
    }
  }
  return records;
}

void encode_body_prefix(const JournalRecord& record, std::string& out) {
  std::visit(Overloaded{[&](const BatchAccepted& r) {
                          put_u8(out, static_cast<std::uint8_t>(RecordKind::batch_accepted));
                          put_le(out, r.receipt);
                          put_le(out, r.task_count);
                        },
                        [&](const TaskFinished& r) {
                          put_u8(out, static_cast<std::uint8_t>(RecordKind::task_finished));
                          put_le(out, r.receipt);
                          put_le(out, r.index);
                        },
                        [&](const TaskFailedAttempt& r) {
                          put_u8(out, static_cast<std::uint8_t>(RecordKind::task_failed_attempt));
                          put_le(out, r.receipt);
                          put_le(out, r.index);
                          put_le(out, r.attempts);
                          put_text(out, r.error);
                        },
                        [&](const TaskDead& r) {
                          put_u8(out, static_cast<std::uint8_t>(RecordKind::task_dead));
                          put_le(out, r.receipt);
                          put_le(out, r.index);
                          put_le(out, r.kind);
                          put_text(out, r.error);
                        },
                        [&](const DeadTaskRetried& r) {
                          put_u8(out, static_cast<std::uint8_t>(RecordKind::dead_task_retried));
                          put_le(out, r.receipt);
                          put_le(out, r.index);
                        },
                        [&](const DeadTaskDropped& r) {
                          put_u8(out, static_cast<std::uint8_t>(RecordKind::dead_task_dropped));
                          put_le(out, r.receipt);
                          put_le(out, r.index);
                        },
                        [&](const Checkpoint& r) {
                          put_u8(out, static_cast<std::uint8_t>(RecordKind::checkpoint));
                          put_le(out, r.next_receipt);
                        }},
             record);
}

bool decode_body(const char* data, std::size_t size, JournalRecord& record) {
  Reader in(data, size);
  std::uint8_t kind = 0;
  if (!in.get(kind)) return false;
  bool ok = false;
  switch (static_cast<RecordKind>(kind)) {
    case RecordKind::batch_accepted: {
      BatchAccepted r;
      ok = in.get(r.receipt) && in.get(r.task_count);
      if (ok) in.rest(r.payload);
      // Every task of a batch takes more than a byte of its payload: a count beyond that would
      // only size the batch's table of task states (found writing the journal's fuzz target:
      // 2^32 - 1 tasks, 160 GB).
      ok = ok && r.task_count <= r.payload.size();
      record = std::move(r);
      break;
    }
    case RecordKind::task_finished: {
      TaskFinished r;
      ok = in.get(r.receipt) && in.get(r.index);
      record = r;
      break;
    }
    case RecordKind::task_failed_attempt: {
      TaskFailedAttempt r;
      ok = in.get(r.receipt) && in.get(r.index) && in.get(r.attempts) && in.get_text(r.error);
      record = std::move(r);
      break;
    }
    case RecordKind::task_dead: {
      TaskDead r;
      ok = in.get(r.receipt) && in.get(r.index) && in.get(r.kind) && in.get_text(r.error);
      record = std::move(r);
      break;
    }
    case RecordKind::dead_task_retried: {
      DeadTaskRetried r;
      ok = in.get(r.receipt) && in.get(r.index);
      record = r;
      break;
    }
    case RecordKind::dead_task_dropped: {
      DeadTaskDropped r;
      ok = in.get(r.receipt) && in.get(r.index);
      record = r;
      break;
    }
    case RecordKind::checkpoint: {
      Checkpoint r;
      ok = in.get(r.next_receipt);
      record = r;
      break;
    }
    default:
      return false;
  }
  return ok && in.at_end();
}

std::uint64_t framed_size(const JournalRecord& record) noexcept {
  const std::uint64_t body = std::visit(
      Overloaded{[](const BatchAccepted& r) { return accepted_body + r.payload.size(); },
                 [](const TaskFailedAttempt& r) { return failed_body + r.error.size(); },
                 [](const TaskDead& r) { return dead_body + r.error.size(); },
                 [](const Checkpoint&) { return checkpoint_body; },
                 [](const auto&) { return slot_body; }},
      record);
  return frame_header_bytes + body;
}

}  // namespace fanout::broker
