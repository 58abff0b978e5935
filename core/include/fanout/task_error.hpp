// fanout/task_error.hpp: how a slot of a batch fails, and the outcome of a slot.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fanout/error.hpp>

namespace fanout {

// Why a slot failed; tells the caller how to respond. Mirrors wire::ErrorKind.
enum class ErrorKind {
  exception,      // the task threw: remote_type() and remote_message() say what
  unknown_task,   // no task of that name is registered where it ran
  bad_arguments,  // the arguments do not decode into the task's parameter types
  crashed,        // the process running it died from a signal or exited before answering
  timeout,        // it ran past its limit and was killed; the message names the limit
  worker_lost,    // it took down its worker too many times
  cancelled,      // the batch was cancelled before the slot finished
  bad_result,     // the result does not decode into the type the caller expects
  refused,        // the executor will not run it (e.g. shell without --allow-shell)
  bad_message,    // something unreadable arrived instead of a result
  unreachable,    // the broker could not be reached for longer than the client waits for it
};

// "exception", "unknown task", "bad arguments", "crashed", "timeout", "worker lost"...
std::string_view to_string(ErrorKind kind) noexcept;

// What is known about one failed slot. Plain data: it travels between processes.
struct FailureInfo {
  ErrorKind kind = ErrorKind::exception;
  std::string remote_type;  // demangled exception type, empty when not an exception
  std::string message;      // what() of the exception, or fanout's own sentence
  std::string ran_on;       // "sync", "fork pid 1234", "worker host-a/2 pid 77"
};

// A failed slot, as rethrown by `run` after the batch has settled. what() reads like
//   task 'lookup' (index 2, key "orders") failed: std::out_of_range: no such table [fork pid 4242]
class TaskError : public Error {
 public:
  TaskError(FailureInfo info, std::string task, std::size_t index, std::optional<std::string> key);

  ErrorKind kind() const noexcept { return info_.kind; }
  const std::string& remote_type() const noexcept { return info_.remote_type; }
  const std::string& remote_message() const noexcept { return info_.message; }
  const std::string& ran_on() const noexcept { return info_.ran_on; }
  const std::string& task() const noexcept { return task_; }
  std::size_t index() const noexcept { return index_; }
  const std::optional<std::string>& key() const noexcept { return key_; }
  const FailureInfo& info() const noexcept { return info_; }

 private:
  FailureInfo info_;
  std::string task_;
  std::size_t index_;
  std::optional<std::string> key_;
};

// The settled outcome of one slot: its value, or the TaskError it failed with.
template <class T>
class Outcome {
 public:
  explicit Outcome(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  explicit Outcome(TaskError error) : state_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  // The value; throws the slot's TaskError when it failed.
  T& value() & {
    if (!ok()) throw std::get<1>(state_);
    return std::get<0>(state_);
  }
  const T& value() const& {
    if (!ok()) throw std::get<1>(state_);
    return std::get<0>(state_);
  }
  T&& value() && {
    if (!ok()) throw std::get<1>(state_);
    return std::get<0>(std::move(state_));
  }

  // The error; only when !ok().
  const TaskError& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, TaskError> state_;
};

}  // namespace fanout
