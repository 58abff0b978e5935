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
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
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

// What a driver hands back for one slot: a value, or why there is none. `failure.ran_on` is set in
// both cases.
struct SlotResult {
  std::optional<Payload> value;
  FailureInfo failure;
};

struct RunOptions {
  std::size_t max_concurrency = 0;       // 0: the driver's default (fork: the number of cores)
  std::chrono::milliseconds timeout{0};  // per task; 0: none
};

// The engine behind a driver name. Implementations live in the client library.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const noexcept = 0;
  virtual bool runs_plain_callables() const noexcept = 0;
  // Runs every job and fills results[i] for jobs[i]; never throws for a job's own failure.
  virtual void execute(std::span<const Job> jobs, std::span<SlotResult> results, const RunOptions& options) = 0;
};

// Validates the batch (plain callables on a driver that cannot run them, ...), runs it, and returns
// one result per job. An empty batch returns at once and starts nothing.
std::vector<SlotResult> execute_batch(Backend& backend, std::span<const Job> jobs, const RunOptions& options);

// Throws fanout::Error naming the first key that appears twice.
void check_unique_keys(std::span<const Job> jobs);

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

// The value of slot `index`, or its TaskError thrown (a result that does not decode as T fails the
// slot with kind bad_result).
template <class T>
T value_or_throw(SlotResult& result, const Job& job, std::size_t index) {
  if (!result.value) throw make_task_error(std::move(result.failure), job, index);
  try {
    return decode_payload<T>(*result.value);
  } catch (const TypeMismatch& mismatch) {
    FailureInfo failure{ErrorKind::bad_result, "fanout::TypeMismatch",
                        std::string("result: ") + mismatch.what(), result.failure.ran_on};
    throw make_task_error(std::move(failure), job, index);
  } catch (const Error& unreadable) {
    FailureInfo failure{ErrorKind::bad_message, "fanout::Error", std::string("result: ") + unreadable.what(),
                        result.failure.ran_on};
    throw make_task_error(std::move(failure), job, index);
  }
}

template <class T>
Outcome<T> outcome_of(SlotResult& result, const Job& job, std::size_t index) {
  try {
    return Outcome<T>(value_or_throw<T>(result, job, index));
  } catch (TaskError& error) {
    return Outcome<T>(std::move(error));
  }
}

}  // namespace detail

template <class C>
using SlotValue = typename detail::SlotValueOf<std::remove_cvref_t<C>>::type;

// A handle on one driver with its options. Cheap to copy; the option setters return a new handle.
class Driver {
 public:
  explicit Driver(std::shared_ptr<detail::Backend> backend, detail::RunOptions options = {})
      : backend_(std::move(backend)), options_(options) {}

  std::string_view name() const noexcept { return backend_->name(); }

  // At most `limit` slots run at once (fork default: the number of cores).
  Driver max_concurrency(std::size_t limit) const {
    auto options = options_;
    options.max_concurrency = limit;
    return Driver(backend_, options);
  }

  // Each slot may run for at most `limit`; past it the slot is killed and fails with kind timeout.
  Driver timeout(std::chrono::milliseconds limit) const {
    auto options = options_;
    options.timeout = limit;
    return Driver(backend_, options);
  }

  const detail::RunOptions& options() const noexcept { return options_; }

  // ---- variadic: a tuple in argument order ----

  template <detail::Slot... S>
  std::tuple<Outcome<SlotValue<S>>...> settle(const S&... slots) const {
    return settle_all<std::tuple<Outcome<SlotValue<S>>...>>(
        [](auto& result, const auto& job, std::size_t index, auto type) {
          return detail::outcome_of<typename decltype(type)::type>(result, job, index);
        },
        slots...);
  }

  template <detail::Slot... S>
  std::tuple<SlotValue<S>...> run(const S&... slots) const {
    return settle_all<std::tuple<SlotValue<S>...>>(
        [](auto& result, const auto& job, std::size_t index, auto type) {
          return detail::value_or_throw<typename decltype(type)::type>(result, job, index);
        },
        slots...);
  }

  // ---- a vector: same order ----

  template <detail::Slot S>
  std::vector<Outcome<SlotValue<S>>> settle(const std::vector<S>& slots) const {
    return gather<Outcome<SlotValue<S>>>(slots, &detail::outcome_of<SlotValue<S>>);
  }

  template <detail::Slot S>
  std::vector<SlotValue<S>> run(const std::vector<S>& slots) const {
    return gather<SlotValue<S>>(slots, &detail::value_or_throw<SlotValue<S>>);
  }

  // ---- keyed: the same keys, in the order given ----

  template <detail::Slot S>
  Keyed<Outcome<SlotValue<S>>> settle(const std::vector<std::pair<std::string, S>>& slots) const {
    return gather_keyed<Outcome<SlotValue<S>>>(slots, &detail::outcome_of<SlotValue<S>>);
  }

  template <detail::Slot S>
  Keyed<SlotValue<S>> run(const std::vector<std::pair<std::string, S>>& slots) const {
    return gather_keyed<SlotValue<S>>(slots, &detail::value_or_throw<SlotValue<S>>);
  }

 private:
  template <class T>
  struct Type {
    using type = T;
  };

  template <class Tuple, class Take, class... S>
  Tuple settle_all(Take take, const S&... slots) const {
    if constexpr (sizeof...(S) == 0) {
      return {};
    } else {
      const std::array<detail::Job, sizeof...(S)> jobs{detail::make_job(slots)...};
      auto results = detail::execute_batch(*backend_, jobs, options_);
      // Braced initialisation evaluates in order, so the first failure in batch order is the one
      // that propagates from `run`.
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return Tuple{take(results[I], jobs[I], I, Type<SlotValue<S>>{})...};
      }(std::index_sequence_for<S...>{});
    }
  }

  template <class T, class S, class Take>
  std::vector<T> gather(const std::vector<S>& slots, Take take) const {
    std::vector<detail::Job> jobs;
    jobs.reserve(slots.size());
    for (const auto& slot : slots) jobs.push_back(detail::make_job(slot));
    auto results = detail::execute_batch(*backend_, jobs, options_);
    std::vector<T> values;
    values.reserve(results.size());
    for (std::size_t i = 0; i < results.size(); ++i) values.push_back(take(results[i], jobs[i], i));
    return values;
  }

  template <class T, class S, class Take>
  Keyed<T> gather_keyed(const std::vector<std::pair<std::string, S>>& slots, Take take) const {
    std::vector<detail::Job> jobs;
    jobs.reserve(slots.size());
    for (const auto& [key, slot] : slots) jobs.push_back(detail::make_job(slot, &key));
    detail::check_unique_keys(jobs);
    auto results = detail::execute_batch(*backend_, jobs, options_);
    std::vector<std::pair<std::string, T>> entries;
    entries.reserve(results.size());
    for (std::size_t i = 0; i < results.size(); ++i) entries.emplace_back(slots[i].first, take(results[i], jobs[i], i));
    return Keyed<T>(std::move(entries));
  }

  std::shared_ptr<detail::Backend> backend_;
  detail::RunOptions options_;
};

}  // namespace fanout
