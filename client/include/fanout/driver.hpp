// fanout/driver.hpp: a driver runs batches; Concurrency (concurrency.hpp) picks one.
//
// Three batch forms, on every driver, for `run` (values, throws the first failure) and `settle`
// (every slot's Outcome, never throws for a task's failure):
//   run(a, b, c)                     -> std::tuple<A, B, C>
//   run(std::vector<S>)              -> std::vector<T>, same order
//   run(std::vector<pair<key, S>>)   -> fanout::Keyed<T>, same keys in the order given
// A slot S is a fanout::Call<R> (a registered task) or, on the sync and fork drivers, any callable
// taking no arguments. A slot whose function returns void yields std::monostate.
//
// Failure rule, shared by every driver: the whole batch settles first; then `run` rethrows the
// first failed slot in batch order as fanout::TaskError (kind, remote type, message, index, key).
//
// `defer` takes the same three forms and returns a fanout::Receipt once the batch is safe; nobody
// collects its values. What "safe" means depends on the driver (see Driver::defer).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <fanout/codec.hpp>
#include <fanout/keyed.hpp>
#include <fanout/receipt.hpp>
#include <fanout/task.hpp>
#include <fanout/task_error.hpp>
#include <fanout/value.hpp>

namespace fanout {

namespace detail {

// One slot as a driver sees it: either a registered call (task name + encoded arguments) or a
// plain callable run through `run_callable`, which encodes its result into the builder it gets.
struct Job {
  std::string_view task;                // registered name; empty for a plain callable
  const std::string* key = nullptr;     // the slot's key in a keyed batch
  const Payload* args = nullptr;        // arguments of a registered call
  const void* callable = nullptr;       // a plain callable...
  void (*run_callable)(const void* callable, ValueBuilder out) = nullptr;  // ...and how to run it

  bool is_callable() const noexcept { return run_callable != nullptr; }
};

struct RunOptions {
  std::size_t max_concurrency = 0;        // 0: the driver's default (as wide as the work, see README)
  std::chrono::milliseconds timeout{0};   // each slot's run time; 0: none
  std::chrono::milliseconds deadline{0};  // the whole batch, queue wait included, from submission; 0: none
  std::shared_ptr<const std::atomic<bool>> cancelled;  // set by a CancellationToken
  // Called after each slot settles, with (settled, total), on the thread running the batch.
  std::function<void(std::size_t, std::size_t)> on_progress;
};

// A batch as a driver sees it. Slots are produced on demand from the caller's own containers, so a
// million-slot batch costs a driver no per-slot storage of its own.
class Batch {
 public:
  virtual std::size_t size() const noexcept = 0;
  virtual Job job(std::size_t index) const = 0;
  // Decodes slot `index`'s value into the caller's result storage. Throws TypeMismatch when it is
  // not the type the caller expects, fanout::Error when it cannot be read.
  virtual void store(std::size_t index, ValueReader value) = 0;
  // The same for a bool or number exactly as the Codec of slot `index`'s type writes it; returns
  // false, storing nothing, for any other (which store() then converts or refuses). What the
  // values of a unit of quick slots (client/src/units.hpp) are stored with.
  virtual bool store_scalar(std::size_t /*index*/, const Scalar& /*value*/) { return false; }
  // Called once per slot as soon as it settled (its value stored, or `failure` set).
  virtual void settled(std::size_t /*index*/, const FailureInfo* /*failure*/) {}
  // Whether settled() calls the caller back (a per-result callback): code that may take any time.
  virtual bool calls_back() const noexcept { return false; }

 protected:
  ~Batch() = default;
};

// Brackets the caller's callbacks (per-result, on_progress), which may take any time, for a driver
// whose thread has another duty while it waits: the process driver's heartbeats to its broker go
// from elsewhere between lend() and take_back().
class CallbackCover {
 public:
  virtual void lend() noexcept = 0;       // a callback is about to run
  virtual void take_back() noexcept = 0;  // it returned or threw

 protected:
  ~CallbackCover() = default;
};

// Where a driver delivers each slot's outcome as soon as it is known, from the thread that runs the
// batch. Records failures, ignores a second outcome for a slot, reports progress.
class Results {
 public:
  Results(Batch& batch, const RunOptions& options);

  // Whether settling a slot calls the caller back (a per-result callback or on_progress).
  bool calls_back() const noexcept { return options_.on_progress != nullptr || batch_.calls_back(); }
  // Every callback from now on runs between cover->lend() and cover->take_back(); nullptr: none.
  void cover_callbacks(CallbackCover* cover) noexcept { cover_ = cover; }

  void value(std::size_t index, ValueReader value, std::string_view ran_on);
  // The same, with where it ran read only if the value does not decode (it names the failure):
  // most results never need it.
  void value(std::size_t index, ValueReader value, FunctionRef<std::string_view()> ran_on);
  // The values of slots first, first + 1, ...: list element i is slot first + i's value, as
  // value() would take it, except where `skip` (empty, or one flag per element) says so.
  void values(std::size_t first, SequenceReader list, const std::vector<bool>& skip,
              FunctionRef<std::string_view()> ran_on);
  // Slot `index`'s value, a bool or number (a unit's values laid out together), as value() would
  // take it.
  void scalar(std::size_t index, const Scalar& value, FunctionRef<std::string_view()> ran_on);
  void failure(std::size_t index, FailureInfo failure);

  bool settled(std::size_t index) const noexcept { return settled_[index]; }
  std::size_t settled_count() const noexcept { return settled_count_; }

  // Whether the caller cancelled the batch (CancellationToken); drivers check it as they wait.
  bool cancelled() const noexcept;
  // Fails every slot not settled yet with `kind`.
  void fail_unsettled(ErrorKind kind, const std::string& message, const std::string& ran_on);
  // Fails every slot the driver left without an outcome: cancelled ones as such, any other would
  // be a driver bug.
  void finish();
  // The failure of slot `index`, or nullptr when it has a value.
  const FailureInfo* failure_of(std::size_t index) const;
  // The first failed slot in batch order.
  std::optional<std::size_t> first_failure() const;

 private:
  void settle(std::size_t index);

  Batch& batch_;
  const RunOptions& options_;
  std::vector<bool> settled_;
  std::size_t settled_count_ = 0;
  std::map<std::size_t, FailureInfo> failures_;  // sparse: failures are the exception
  CallbackCover* cover_ = nullptr;
};

// The engine behind a driver name. Implementations live in the client library.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const noexcept = 0;
  virtual bool runs_plain_callables() const noexcept = 0;
  // Runs every slot of `batch`, delivering each outcome to `results`; never throws for a slot's own
  // failure.
  virtual void execute(Batch& batch, Results& results, const RunOptions& options) = 0;
  // Hands `batch` (validated, not empty) off and returns its receipt once it is safe (Driver::defer
  // says what that means per driver). Throws fanout::Error when it could not be handed off; the
  // sync driver throws the first failed slot's TaskError.
  virtual Receipt defer(Batch& batch, const RunOptions& options) = 0;
};

// Validates the batch (duplicate keys, plain callables on a driver that cannot run them), runs it
// and settles every slot. An empty batch returns at once and starts nothing.
void execute_batch(Backend& backend, Batch& batch, Results& results, const RunOptions& options);

// Validates the batch as execute_batch does and defers it. An empty batch starts nothing and gets a
// receipt with an empty id.
Receipt defer_batch(Backend& backend, Batch& batch, const RunOptions& options);

// Builds the TaskError of a failed slot.
TaskError make_task_error(FailureInfo failure, const Job& job, std::size_t index);

template <class C>
struct IsCall : std::false_type {};
template <class R>
struct IsCall<Call<R>> : std::true_type {};

template <class C>
concept Slot = IsCall<std::remove_cvref_t<C>>::value || std::invocable<const std::remove_cvref_t<C>&>;

template <class C, class = void>
struct SlotValueOf {
  using type = ResultOf<std::invoke_result_t<const C&>>;
};
template <class R>
struct SlotValueOf<Call<R>> {
  using type = typename Call<R>::result_type;
};

}  // namespace detail

// The type a slot produces: R for a Call<R> (std::monostate for void), the callable's result else.
template <class C>
using SlotValue = typename detail::SlotValueOf<std::remove_cvref_t<C>>::type;

namespace detail {

template <class C>
void run_plain_callable(const void* callable, ValueBuilder out) {
  const auto& function = *static_cast<const C*>(callable);
  if constexpr (std::is_void_v<std::invoke_result_t<const C&>>) {
    function();
    out.set_none();
  } else {
    encode(out, function());
  }
}

template <class C>
Job make_job(const C& slot, const std::string* key = nullptr) {
  if constexpr (IsCall<C>::value) {
    return Job{slot.task(), key, &slot.args(), nullptr, nullptr};
  } else {
    return Job{{}, key, nullptr, &slot, &run_plain_callable<C>};
  }
}

// Batch::store_scalar for a slot whose value goes into `slot`.
template <class T>
bool store_scalar_into(std::optional<T>& slot, const Scalar& value) {
  if constexpr (kIsScalar<T>) {
    if (auto decoded = from_scalar<T>(value)) {
      slot.emplace(*decoded);
      return true;
    }
  }
  return false;
}

// Batches over the three forms. Each keeps one std::optional result per slot, filled by store().
// Calls nothing: the default per-result callback.
struct NoCallback {};

template <class S, class OnResult = NoCallback>
class VectorBatch final : public Batch {
 public:
  using Value = SlotValue<S>;
  explicit VectorBatch(const std::vector<S>& slots, OnResult on_result = {})
      : slots_(slots), values_(slots.size()), on_result_(std::move(on_result)) {}
  std::size_t size() const noexcept override { return slots_.size(); }
  Job job(std::size_t index) const override { return make_job(slots_[index]); }
  void store(std::size_t index, ValueReader value) override { values_[index].emplace(decode<Value>(value)); }
  bool store_scalar(std::size_t index, const Scalar& value) override { return store_scalar_into(values_[index], value); }
  bool calls_back() const noexcept override { return !std::is_same_v<OnResult, NoCallback>; }
  void settled(std::size_t index, const FailureInfo* failure) override {
    if constexpr (!std::is_same_v<OnResult, NoCallback>) {
      if (failure != nullptr) {
        on_result_(index, Outcome<Value>(make_task_error(*failure, job(index), index)));
      } else {
        on_result_(index, Outcome<Value>(*values_[index]));  // a copy: the run still returns every value
      }
    }
  }
  std::optional<Value>& value(std::size_t index) { return values_[index]; }

 private:
  const std::vector<S>& slots_;
  std::vector<std::optional<Value>> values_;
  OnResult on_result_;
};

template <class S>
class KeyedBatch final : public Batch {
 public:
  using Value = SlotValue<S>;
  explicit KeyedBatch(const std::vector<std::pair<std::string, S>>& slots) : slots_(slots), values_(slots.size()) {}
  std::size_t size() const noexcept override { return slots_.size(); }
  Job job(std::size_t index) const override { return make_job(slots_[index].second, &slots_[index].first); }
  void store(std::size_t index, ValueReader value) override { values_[index].emplace(decode<Value>(value)); }
  bool store_scalar(std::size_t index, const Scalar& value) override { return store_scalar_into(values_[index], value); }
  std::optional<Value>& value(std::size_t index) { return values_[index]; }
  const std::string& key(std::size_t index) const { return slots_[index].first; }

 private:
  const std::vector<std::pair<std::string, S>>& slots_;
  std::vector<std::optional<Value>> values_;
};

template <class... S>
class TupleBatch final : public Batch {
 public:
  explicit TupleBatch(const S&... slots) : slots_(slots...) {}
  std::size_t size() const noexcept override { return sizeof...(S); }
  Job job(std::size_t index) const override {
    return dispatch(index, [&]<std::size_t I>() { return make_job(std::get<I>(slots_)); });
  }
  void store(std::size_t index, ValueReader value) override {
    dispatch(index, [&]<std::size_t I>() {
      std::get<I>(values_).emplace(decode<SlotValue<std::tuple_element_t<I, std::tuple<S...>>>>(value));
    });
  }
  template <std::size_t I>
  auto& value() {
    return std::get<I>(values_);
  }

 private:
  // Calls f.template operator()<I>() for the runtime index.
  template <class F>
  static decltype(auto) dispatch(std::size_t index, F&& f) {
    return [&]<std::size_t... I>(std::index_sequence<I...>) -> decltype(auto) {
      using Result = decltype(f.template operator()<0>());
      using Call = Result (*)(F&);
      static constexpr Call table[] = {[](F& g) -> Result { return g.template operator()<I>(); }...};
      return table[index](f);
    }(std::index_sequence_for<S...>{});
  }

  std::tuple<const S&...> slots_;
  std::tuple<std::optional<SlotValue<S>>...> values_;
};

// A batch whose values nobody collects (defer): slots from `job_of(index)`, values dropped. Holds
// no per-slot storage, so deferring a huge vector costs nothing but its encoding.
template <class JobOf>
class DeferredBatch final : public Batch {
 public:
  DeferredBatch(std::size_t size, JobOf job_of) : size_(size), job_of_(std::move(job_of)) {}
  std::size_t size() const noexcept override { return size_; }
  Job job(std::size_t index) const override { return job_of_(index); }
  void store(std::size_t, ValueReader) override {}

 private:
  std::size_t size_;
  JobOf job_of_;
};

// The value of slot `index` after the batch settled, or its TaskError thrown.
template <class T, class B>
T take_value(B& batch, Results& results, std::optional<T>& value, std::size_t index) {
  if (const FailureInfo* failure = results.failure_of(index)) throw make_task_error(*failure, batch.job(index), index);
  return std::move(*value);
}

template <class T, class B>
Outcome<T> take_outcome(B& batch, Results& results, std::optional<T>& value, std::size_t index) {
  if (const FailureInfo* failure = results.failure_of(index)) {
    return Outcome<T>(make_task_error(*failure, batch.job(index), index));
  }
  return Outcome<T>(std::move(*value));
}

}  // namespace detail

// Cancels batches from another thread. Copies share one flag; cancelling is permanent.
class CancellationToken {
 public:
  CancellationToken() : flag_(std::make_shared<std::atomic<bool>>(false)) {}
  void cancel() noexcept { flag_->store(true, std::memory_order_release); }
  bool cancelled() const noexcept { return flag_->load(std::memory_order_acquire); }
  std::shared_ptr<const std::atomic<bool>> flag() const noexcept { return flag_; }

 private:
  std::shared_ptr<std::atomic<bool>> flag_;
};

// A handle on one driver with its options. Cheap to copy; the option setters return a new handle.
class Driver {
 public:
  explicit Driver(std::shared_ptr<detail::Backend> backend, detail::RunOptions options = {})
      : backend_(std::move(backend)), options_(std::move(options)) {}

  std::string_view name() const noexcept { return backend_->name(); }

  // At most `limit` slots run at once (fork default: the number of cores).
  Driver max_concurrency(std::size_t limit) const {
    auto options = options_;
    options.max_concurrency = limit;
    return Driver(backend_, std::move(options));
  }

  // Each slot may run for at most `limit` (its run time, from when it starts; time waiting for a
  // free process does not count); past it the slot is killed and fails with kind timeout. The sync
  // driver cannot stop a slot early: one that ran past the limit fails as timeout when it returns.
  Driver timeout(std::chrono::milliseconds limit) const {
    auto options = options_;
    options.timeout = limit;
    return Driver(backend_, std::move(options));
  }

  // The whole batch may take at most `limit` from the moment it is submitted, waiting included;
  // at the deadline every slot not finished fails with kind timeout (running ones are killed).
  Driver deadline(std::chrono::milliseconds limit) const {
    auto options = options_;
    options.deadline = limit;
    return Driver(backend_, std::move(options));
  }

  // Calls `progress(settled, total)` after each slot settles, on the thread that runs the batch.
  Driver on_progress(std::function<void(std::size_t settled, std::size_t total)> progress) const {
    auto options = options_;
    options.on_progress = std::move(progress);
    return Driver(backend_, std::move(options));
  }

  // Lets `token.cancel()` (from any thread) stop the batches run through this handle: queued slots
  // are dropped, running ones killed, and every slot not yet settled fails with kind cancelled.
  Driver cancel_with(const CancellationToken& token) const {
    auto options = options_;
    options.cancelled = token.flag();
    return Driver(backend_, std::move(options));
  }

  const detail::RunOptions& options() const noexcept { return options_; }

  // ---- defer: hand the batch off, get a receipt, collect nothing ----
  //
  // The same three forms as run. Returns once the batch is safe:
  //   process: the broker acknowledged the whole batch (one `tasks` message) as journaled; the
  //            receipt's id is the broker's, for `fanout deferred`. Registered tasks only. Throws
  //            fanout::Error when the broker refuses it (e.g. it keeps no journal), or says nothing
  //            within timeout() (30 s when none is set: the batch may or may not have been taken),
  //            or when the batch is larger than one broker frame (512 MiB).
  //   fork:    a detached runner process (its own session, stdin /dev/null, outliving this one)
  //            exists and will run the batch as the fork driver does: a child per slot, at most
  //            max_concurrency() at once, timeout() per slot. Failures are written to its stderr
  //            with the receipt, since nobody waits. Receipt "fork-<runner pid>".
  //   sync:    the batch ran here, now; the first failed slot is rethrown as TaskError after the
  //            whole batch ran, as run does. Receipt "sync-<n>".
  // on_progress() and cancel_with() do not apply to deferred batches. An empty batch starts
  // nothing and returns a receipt with an empty id. Invalid batches (duplicate keys, plain
  // callables on the process driver) throw fanout::Error before anything starts.

  template <detail::Slot... S>
  Receipt defer(const S&... slots) const {
    const std::array<detail::Job, sizeof...(S)> jobs{detail::make_job(slots)...};
    return defer_jobs(jobs.size(), [&jobs](std::size_t index) { return jobs[index]; });
  }

  template <detail::Slot S>
  Receipt defer(const std::vector<S>& slots) const {
    return defer_jobs(slots.size(), [&slots](std::size_t index) { return detail::make_job(slots[index]); });
  }

  template <detail::Slot S>
  Receipt defer(const std::vector<std::pair<std::string, S>>& slots) const {
    return defer_jobs(slots.size(), [&slots](std::size_t index) {
      return detail::make_job(slots[index].second, &slots[index].first);
    });
  }

  // ---- variadic: a tuple in argument order ----

  template <detail::Slot... S>
  std::tuple<Outcome<SlotValue<S>>...> settle(const S&... slots) const {
    if constexpr (sizeof...(S) == 0) {
      return {};
    } else {
      detail::TupleBatch<S...> batch(slots...);
      auto results = settle_batch(batch);
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return std::tuple<Outcome<SlotValue<S>>...>{
            detail::take_outcome(batch, results, batch.template value<I>(), I)...};
      }(std::index_sequence_for<S...>{});
    }
  }

  template <detail::Slot... S>
  std::tuple<SlotValue<S>...> run(const S&... slots) const {
    if constexpr (sizeof...(S) == 0) {
      return {};
    } else {
      detail::TupleBatch<S...> batch(slots...);
      auto results = settle_batch(batch);
      // Braced initialisation evaluates in order, so the first failure in batch order is the one
      // that propagates.
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return std::tuple<SlotValue<S>...>{detail::take_value(batch, results, batch.template value<I>(), I)...};
      }(std::index_sequence_for<S...>{});
    }
  }

  // ---- a vector: same order ----

  template <detail::Slot S>
  std::vector<Outcome<SlotValue<S>>> settle(const std::vector<S>& slots) const {
    detail::VectorBatch<S> batch(slots);
    auto results = settle_batch(batch);
    std::vector<Outcome<SlotValue<S>>> outcomes;
    outcomes.reserve(slots.size());
    for (std::size_t i = 0; i < slots.size(); ++i) outcomes.push_back(detail::take_outcome(batch, results, batch.value(i), i));
    return outcomes;
  }

  template <detail::Slot S>
  std::vector<SlotValue<S>> run(const std::vector<S>& slots) const {
    detail::VectorBatch<S> batch(slots);
    return values_of(batch);
  }

  // Also calls `on_result(index, outcome)` for each slot as soon as it settles, in completion order,
  // on the calling thread; the returned vector still holds every value by index.
  template <detail::Slot S, class OnResult>
    requires std::invocable<OnResult&, std::size_t, Outcome<SlotValue<S>>&&>
  std::vector<SlotValue<S>> run(const std::vector<S>& slots, OnResult on_result) const {
    detail::VectorBatch<S, OnResult> batch(slots, std::move(on_result));
    return values_of(batch);
  }

  // ---- keyed: the same keys, in the order given ----

  template <detail::Slot S>
  Keyed<Outcome<SlotValue<S>>> settle(const std::vector<std::pair<std::string, S>>& slots) const {
    detail::KeyedBatch<S> batch(slots);
    auto results = settle_batch(batch);
    std::vector<std::pair<std::string, Outcome<SlotValue<S>>>> entries;
    entries.reserve(slots.size());
    for (std::size_t i = 0; i < slots.size(); ++i) {
      entries.emplace_back(batch.key(i), detail::take_outcome(batch, results, batch.value(i), i));
    }
    return Keyed<Outcome<SlotValue<S>>>(std::move(entries));
  }

  template <detail::Slot S>
  Keyed<SlotValue<S>> run(const std::vector<std::pair<std::string, S>>& slots) const {
    detail::KeyedBatch<S> batch(slots);
    auto results = settle_batch(batch);
    std::vector<std::pair<std::string, SlotValue<S>>> entries;
    entries.reserve(slots.size());
    for (std::size_t i = 0; i < slots.size(); ++i) {
      entries.emplace_back(batch.key(i), detail::take_value(batch, results, batch.value(i), i));
    }
    return Keyed<SlotValue<S>>(std::move(entries));
  }

 private:
  // Runs `batch` on this driver until every slot has settled.
  template <class B>
  detail::Results settle_batch(B& batch) const {
    detail::Results results(batch, options_);
    detail::execute_batch(*backend_, batch, results, options_);
    return results;
  }

  template <class JobOf>
  Receipt defer_jobs(std::size_t size, JobOf job_of) const {
    detail::DeferredBatch<JobOf> batch(size, std::move(job_of));
    return detail::defer_batch(*backend_, batch, options_);
  }

  // Every value of a vector batch by index, or the first failure in batch order thrown.
  template <class B>
  std::vector<typename B::Value> values_of(B& batch) const {
    auto results = settle_batch(batch);
    std::vector<typename B::Value> values;
    values.reserve(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) values.push_back(detail::take_value(batch, results, batch.value(i), i));
    return values;
  }

  std::shared_ptr<detail::Backend> backend_;
  detail::RunOptions options_;
};

}  // namespace fanout
