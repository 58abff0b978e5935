// batch_engine.cpp: the engine half of driver.hpp, shared by every driver: validating a batch,
// delivering each slot's outcome (Results), and turning a failed slot into its TaskError.
#include <fanout/driver.hpp>

#include <algorithm>
#include <bit>
#include <string>

namespace fanout::detail {

TaskError make_task_error(FailureInfo failure, const Job& job, std::size_t index) {
  return TaskError(std::move(failure), std::string(job.task), index,
                   job.key ? std::optional<std::string>(*job.key) : std::nullopt);
}

namespace {

// Throws fanout::Error naming the first key that appears twice.
void check_unique_keys(const Batch& batch) {
  std::vector<std::pair<std::string_view, std::size_t>> keys;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const Job job = batch.job(i);
    if (job.key == nullptr) return;  // keys come with every slot of a keyed batch or none
    keys.emplace_back(*job.key, i);
  }
  std::sort(keys.begin(), keys.end());
  const auto twin = std::adjacent_find(keys.begin(), keys.end(),
                                       [](const auto& a, const auto& b) { return a.first == b.first; });
  if (twin != keys.end()) {
    throw Error("keyed batch: the key \"" + std::string(twin->first) + "\" appears twice (positions " +
                std::to_string(twin->second) + " and " + std::to_string(std::next(twin)->second) +
                "); keys must be unique");
  }
}

void check_runnable(const Backend& backend, const Batch& batch) {
  if (backend.runs_plain_callables()) return;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (batch.job(i).is_callable()) {
      throw Error("the '" + std::string(backend.name()) + "' driver runs registered tasks only, but slot " +
                  std::to_string(i) +
                  " is a plain callable: define it as a fanout::Task, or use the fork or sync driver");
    }
  }
}

}  // namespace

Results::Results(Batch& batch, const RunOptions& options)
    : batch_(batch), options_(options), settled_(batch.size(), false) {}

void Results::value(std::size_t index, ValueReader value, std::string_view ran_on) {
  this->value(index, value, [ran_on] { return ran_on; });
}

void Results::value(std::size_t index, ValueReader value, FunctionRef<std::string_view()> ran_on) {
  if (index >= settled_.size() || settled_[index]) return;  // a second outcome for a slot is dropped
  try {
    batch_.store(index, value);
  } catch (const TypeMismatch& mismatch) {
    failures_[index] = FailureInfo{ErrorKind::bad_result, "fanout::TypeMismatch",
                                   std::string("result: ") + mismatch.what(), std::string(ran_on())};
  } catch (const Error& unreadable) {
    failures_[index] = FailureInfo{ErrorKind::bad_message, "fanout::Error",
                                   std::string("result: ") + unreadable.what(), std::string(ran_on())};
  }
  settle(index);
}

void Results::values(std::size_t first, SequenceReader list, const std::vector<bool>& skip,
                     FunctionRef<std::string_view()> ran_on) {
  const std::size_t count = list.size();
  // Read a run of scalars at once, store each without a decoder; the rest go through value().
  Scalar scalars[256];
  for (std::size_t done = 0; done < count;) {
    const std::size_t chunk = std::min(count - done, std::size(scalars));
    const std::size_t read = list.read_scalars(done, std::span(scalars, chunk));
    // Elements [done, done + read) are scalars; when the run stops short, the element after it
    // is something else, which value() takes.
    const std::size_t taken = read < chunk ? read + 1 : read;
    for (std::size_t i = 0; i < taken; ++i) {
      const std::size_t element = done + i;
      const std::size_t index = first + element;
      if ((!skip.empty() && skip[element]) || index >= settled_.size() || settled_[index]) continue;
      if (i < read && batch_.store_scalar(index, scalars[i])) {
        settle(index);
      } else {
        value(index, list[element], ran_on);
      }
    }
    done += taken;
  }
}

void Results::scalar(std::size_t index, const Scalar& value, FunctionRef<std::string_view()> ran_on) {
  if (index >= settled_.size() || settled_[index]) return;
  if (batch_.store_scalar(index, value)) return settle(index);
  // Not exactly the caller's type: through the decoder, which converts it or says why not.
  const Payload single = Payload::build([&](ValueBuilder out) {
    switch (value.kind) {
      case ValueKind::boolean: return out.set_bool(value.bits != 0);
      case ValueKind::int64: return out.set_int(static_cast<std::int64_t>(value.bits));
      case ValueKind::uint64: return out.set_uint(value.bits);
      case ValueKind::float32: return out.set_float32(std::bit_cast<float>(static_cast<std::uint32_t>(value.bits)));
      case ValueKind::float64: return out.set_float64(std::bit_cast<double>(value.bits));
      default: return out.set_none();
    }
  });
  single.read([&](ValueReader reader) { this->value(index, reader, ran_on); });
}

void Results::failure(std::size_t index, FailureInfo failure) {
  if (index >= settled_.size() || settled_[index]) return;
  failures_[index] = std::move(failure);
  settle(index);
}

void Results::settle(std::size_t index) {
  settled_[index] = true;
  ++settled_count_;
  struct Covered {  // the callbacks below, however they end
    CallbackCover* cover;
    explicit Covered(CallbackCover* lent) : cover(lent) {
      if (cover != nullptr) cover->lend();
    }
    Covered(const Covered&) = delete;
    Covered& operator=(const Covered&) = delete;
    ~Covered() {
      if (cover != nullptr) cover->take_back();
    }
  } covered(cover_);
  batch_.settled(index, failures_.empty() ? nullptr : failure_of(index));
  if (options_.on_progress) options_.on_progress(settled_count_, settled_.size());
}

bool Results::cancelled() const noexcept {
  return options_.cancelled && options_.cancelled->load(std::memory_order_acquire);
}

void Results::fail_unsettled(ErrorKind kind, const std::string& message, const std::string& ran_on) {
  for (std::size_t i = 0; i < settled_.size(); ++i) {
    if (!settled_[i]) failure(i, FailureInfo{kind, "", message, ran_on});
  }
}

void Results::finish() {
  if (cancelled()) fail_unsettled(ErrorKind::cancelled, "the batch was cancelled", "");
  fail_unsettled(ErrorKind::bad_message, "the driver returned no outcome", "");
}

const FailureInfo* Results::failure_of(std::size_t index) const {
  const auto found = failures_.find(index);
  return found == failures_.end() ? nullptr : &found->second;
}

std::optional<std::size_t> Results::first_failure() const {
  if (failures_.empty()) return std::nullopt;
  return failures_.begin()->first;
}

void execute_batch(Backend& backend, Batch& batch, Results& results, const RunOptions& options) {
  if (batch.size() == 0) return;
  check_unique_keys(batch);
  check_runnable(backend, batch);
  backend.execute(batch, results, options);
  results.finish();
}

Receipt defer_batch(Backend& backend, Batch& batch, const RunOptions& options) {
  if (batch.size() == 0) return Receipt("", std::string(backend.name()), 0);
  check_unique_keys(batch);
  check_runnable(backend, batch);
  return backend.defer(batch, options);
}

}  // namespace fanout::detail
