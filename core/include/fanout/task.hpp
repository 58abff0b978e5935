// fanout/task.hpp: named tasks, the registry, and calls.
//
//   const fanout::Task square{"square", [](int x) { return x * x; }};
//   fanout::Call<int> call = square(3);   // the name plus the encoded arguments
//
// A Task registers itself under its name for as long as it lives (usually the whole program: make
// it a global or a static). Every binary that may run a task must define it, which is why tasks are
// usually defined in a library shared by the caller and the workers.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <fanout/codec.hpp>
#include <fanout/task_error.hpp>
#include <fanout/value.hpp>

namespace fanout {

// What a slot produces when its function returns void.
template <class R>
using ResultOf = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

template <class F>
class Task;

namespace detail {
// The one copy of task name `name` kept for the rest of the program: what a Task's calls point to
// rather than each holding a copy of its own (a call is built for every slot of a batch, and a
// copied name cost as much as the rest of the call). One per distinct Task name.
const std::string& kept_task_name(std::string_view name);
}  // namespace detail

// A call of a registered task: its name and its arguments, already encoded. Cheap to copy (the
// encoding is shared). R is the task's result type.
template <class R>
class Call {
 public:
  using result_type = ResultOf<R>;

  // A call of the task named `task` (a Task makes them: task(args...)).
  Call(std::string task, Payload args)
      : owned_(std::make_shared<const std::string>(std::move(task))), task_(owned_.get()), args_(std::move(args)) {}

  Call(const Call&) = default;
  Call& operator=(const Call&) = default;
  // A moved-from call still names its task (its arguments are gone), as a moved-from string
  // member used to leave it readable: the name is shared, never moved.
  Call(Call&& other) noexcept : owned_(other.owned_), task_(other.task_), args_(std::move(other.args_)) {}
  Call& operator=(Call&& other) noexcept {
    owned_ = other.owned_;
    task_ = other.task_;
    args_ = std::move(other.args_);
    return *this;
  }
  ~Call() = default;

  // The task's name: a Task's kept one, valid for the rest of the program; or, for a call made by
  // name, the one it shares with its copies, valid while one of them lives.
  const std::string& task() const noexcept { return *task_; }
  const Payload& args() const noexcept { return args_; }

 private:
  template <class F>
  friend class Task;
  struct Kept {};
  // A Task's call: its name is the Task's kept one (detail::kept_task_name), owned by nobody.
  Call(Kept, const std::string& kept, Payload args) noexcept : task_(&kept), args_(std::move(args)) {}

  std::shared_ptr<const std::string> owned_;  // the name of a call made by name; null for a Task's
  const std::string* task_;                   // the name: owned_'s, or a kept one
  Payload args_;
};

namespace detail {

// How the registry runs one task: decode `args` (a tuple), call, encode the result into `out`.
// Throws BadArguments when the arguments do not fit; anything the task throws passes through.
using TaskInvoker = void (*)(const void* task, ValueReader args, ValueBuilder out);
// The same for a task whose parameters and result are all bools, numbers or enums, given its
// arguments as scalars read already: returns false, calling nothing, when they are not exactly
// what the parameters' Codecs write (TaskInvoker then converts or refuses them). What an executor
// runs a unit of quick slots with, without a reader or a builder per slot.
using ScalarInvoker = bool (*)(const void* task, std::span<const Scalar> args, Scalar& result);

class BadArguments : public Error {
 public:
  using Error::Error;
};

class UnknownTask : public Error {
 public:
  using Error::Error;
};

struct RegisteredTask;
// Registers `task` under `name`; throws fanout::Error when the name is taken.
void register_task(std::string_view name, const RegisteredTask& task);
void unregister_task(std::string_view name, const void* task) noexcept;

template <class F>
struct Signature : Signature<decltype(&F::operator())> {};
template <class R, class... A>
struct Signature<R (*)(A...)> {
  using result = R;
  using args = std::tuple<std::remove_cvref_t<A>...>;
};
template <class R, class... A>
struct Signature<R(A...)> : Signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct Signature<R (C::*)(A...) const> : Signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct Signature<R (C::*)(A...)> : Signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct Signature<R (C::*)(A...) const noexcept> : Signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct Signature<R (C::*)(A...) noexcept> : Signature<R (*)(A...)> {};
template <class R, class... A>
struct Signature<R (*)(A...) noexcept> : Signature<R (*)(A...)> {};

// Gives Task<F> a call operator whose parameters are exactly the task's (by const reference), so
// that arguments are checked and converted by the compiler as for any function call, braced lists
// included: latest_prices({"ACME", "INIT"}).
template <class Derived, class R, class Parameters>
struct CallOperator;

template <class Derived, class R, class... P>
struct CallOperator<Derived, R, std::tuple<P...>> {
  Call<R> operator()(const P&... args) const { return static_cast<const Derived&>(*this).make_call(args...); }
};

}  // namespace detail

// A named function that batches can call by name, here or in another process.
// Not copyable or movable: the registry refers to it by address.
template <class F>
class Task : public detail::CallOperator<Task<F>, typename detail::Signature<std::decay_t<F>>::result,
                                         typename detail::Signature<std::decay_t<F>>::args> {
  using Sig = detail::Signature<std::decay_t<F>>;
  friend detail::CallOperator<Task, typename Sig::result, typename Sig::args>;

 public:
  // task(args...) builds a fanout::Call: the name plus the arguments, converted to the parameter
  // types and encoded now, so the call owns them (see detail::CallOperator).

  using result_type = ResultOf<typename Sig::result>;
  using arguments = typename Sig::args;  // decayed parameter types, as they travel

  // Throws fanout::Error when another live Task already has this name: for global tasks, the
  // program stops at start-up with that message.
  Task(std::string_view name, F function) : name_(detail::kept_task_name(name)), function_(std::move(function)) {
    detail::register_task(name_, detail::RegisteredTask{this, &Task::invoke, scalar_invoker(), kScalarArity});
  }
  ~Task() { detail::unregister_task(name_, this); }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  const std::string& name() const noexcept { return name_; }

  // Runs the function here, as the sync driver and executors do; for tests and direct use.
  result_type call_locally(arguments args) const {
    if constexpr (std::is_void_v<typename Sig::result>) {
      std::apply(function_, std::move(args));
      return {};
    } else {
      return std::apply(function_, std::move(args));
    }
  }

 private:
  template <class... P>
  Call<typename Sig::result> make_call(const P&... args) const {
    if constexpr (sizeof...(P) > 0 && (detail::kIsScalar<P> && ...)) {
      // Numbers and bools only: their tuple's words are written at once (Payload::of_scalars).
      const detail::Scalar scalars[] = {detail::scalar_of(args)...};
      return Call<typename Sig::result>(typename Call<typename Sig::result>::Kept{}, name_, Payload::of_scalars(scalars));
    }
    return Call<typename Sig::result>(typename Call<typename Sig::result>::Kept{}, name_, Payload::build([&](ValueBuilder out) {
      [[maybe_unused]] auto tuple = out.init_tuple(sizeof...(P));  // unused for tasks without parameters
      std::size_t index = 0;
      (encode(tuple[index++], args), ...);
    }));
  }

  static constexpr bool kScalarCall =
      detail::kIsScalarTuple<arguments> && detail::kIsScalar<typename Sig::result>;
  static constexpr std::size_t kScalarArity = kScalarCall ? std::tuple_size_v<arguments> : 0;

  static constexpr detail::ScalarInvoker scalar_invoker() {
    if constexpr (kScalarCall) {
      return &Task::invoke_scalars;
    } else {
      return nullptr;
    }
  }

  static bool invoke_scalars(const void* self, std::span<const detail::Scalar> args, detail::Scalar& result) {
    auto decoded = detail::from_scalars<arguments>(args);
    if (!decoded) return false;
    result = detail::scalar_of(static_cast<const Task*>(self)->call_locally(std::move(*decoded)));
    return true;
  }

  static void invoke(const void* self, ValueReader args, ValueBuilder out) {
    const auto& task = *static_cast<const Task*>(self);
    std::optional<arguments> decoded;
    // Numbers and bools only: read in one call when they are exactly what a call writes.
    if constexpr (detail::kIsScalarTuple<arguments>) decoded = detail::decode_scalars<arguments>(args);
    if (!decoded) {
      try {
        decoded.emplace(decode<arguments>(args));
      } catch (const Error& unfit) {  // a TypeMismatch, or arguments that cannot be read at all
        throw detail::BadArguments("arguments of task '" + task.name_ + "': " + unfit.what());
      }
    }
    encode(out, task.call_locally(std::move(*decoded)));
  }

  const std::string& name_;  // kept for the rest of the program (detail::kept_task_name): its calls point to it
  F function_;
};

template <class F>
Task(const char*, F) -> Task<F>;
template <class F>
Task(std::string_view, F) -> Task<F>;
template <class F>
Task(std::string, F) -> Task<F>;

namespace detail {

// Runs the registered task `name` on `args`, writing its result into `out`.
// Throws UnknownTask / BadArguments / whatever the task throws.
void invoke_registered(std::string_view name, ValueReader args, ValueBuilder out);

// A registered task as looked up by name: what invoke_registered calls. For a caller that runs
// many tasks of one name (an executor), which looks the name up once rather than under the
// registry's lock for every task. Valid while the task stays registered (Tasks are globals).
struct RegisteredTask {
  const void* task = nullptr;
  TaskInvoker invoke = nullptr;
  ScalarInvoker invoke_scalars = nullptr;  // for tasks of scalars only; null for any other
  std::size_t scalar_arity = 0;            // the parameters invoke_scalars takes

  void operator()(ValueReader args, ValueBuilder out) const { invoke(task, args, out); }
};
// Throws UnknownTask when no task of that name is registered.
RegisteredTask find_registered(std::string_view name);

// Names of the registered tasks, sorted.
std::vector<std::string> registered_task_names();

}  // namespace detail

}  // namespace fanout
