// task_error.cpp: TaskError and the batch plumbing shared by every driver.
#include <fanout/task_error.hpp>

#include <algorithm>
#include <string>

#include <fanout/driver.hpp>

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

namespace detail {

TaskError make_task_error(FailureInfo failure, const Job& job, std::size_t index) {
  return TaskError(std::move(failure), std::string(job.task), index,
                   job.key ? std::optional<std::string>(*job.key) : std::nullopt);
}

void check_unique_keys(std::span<const Job> jobs) {
  std::vector<std::pair<std::string_view, std::size_t>> keys;
  keys.reserve(jobs.size());
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (jobs[i].key) keys.emplace_back(*jobs[i].key, i);
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

std::vector<SlotResult> execute_batch(Backend& backend, std::span<const Job> jobs, const RunOptions& options) {
  std::vector<SlotResult> results(jobs.size());
  if (jobs.empty()) return results;
  if (!backend.runs_plain_callables()) {
    const auto callable = std::find_if(jobs.begin(), jobs.end(), [](const Job& job) { return job.is_callable(); });
    if (callable != jobs.end()) {
      throw Error("the '" + std::string(backend.name()) + "' driver runs registered tasks only, but slot " +
                  std::to_string(callable - jobs.begin()) +
                  " is a plain callable: define it as a fanout::Task, or use the fork or sync driver");
    }
  }
  backend.execute(jobs, results, options);
  return results;
}

}  // namespace detail

}  // namespace fanout
