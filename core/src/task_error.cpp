// task_error.cpp: how a failed slot reads (ErrorKind names, TaskError's message).
#include <fanout/task_error.hpp>

#include <string>

namespace fanout {

std::string_view to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::exception: return "exception";
    case ErrorKind::unknown_task: return "unknown task";
    case ErrorKind::bad_arguments: return "bad arguments";
    case ErrorKind::crashed: return "crashed";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::worker_lost: return "worker lost";
    case ErrorKind::cancelled: return "cancelled";
    case ErrorKind::bad_result: return "bad result";
    case ErrorKind::refused: return "refused";
    case ErrorKind::bad_message: return "bad message";
    case ErrorKind::unreachable: return "unreachable";
  }
  return "unknown";
}

namespace {

std::string describe(const FailureInfo& info, const std::string& task, std::size_t index,
                     const std::optional<std::string>& key) {
  std::string text = task.empty() ? std::string("slot") : "task '" + task + "'";
  text += " (index " + std::to_string(index);
  if (key) text += ", key \"" + *key + "\"";
  text += ") failed [";
  text += to_string(info.kind);
  text += "]: ";
  if (!info.remote_type.empty()) text += info.remote_type + ": ";
  text += info.message.empty() ? std::string("(no message)") : info.message;
  if (!info.ran_on.empty()) text += " (ran on " + info.ran_on + ")";
  return text;
}

}  // namespace

TaskError::TaskError(FailureInfo info, std::string task, std::size_t index, std::optional<std::string> key)
    : Error(describe(info, task, index, key)),
      info_(std::move(info)),
      task_(std::move(task)),
      index_(index),
      key_(std::move(key)) {}

}  // namespace fanout
