// kept_task_names.cpp: the one copy of each Task name that its calls point to (task.hpp).
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include <fanout/task.hpp>

namespace fanout::detail {

namespace {

struct KeptNames {
  std::mutex mutex;
  std::set<std::string, std::less<>> names;  // a set's elements never move
};

}  // namespace

const std::string& kept_task_name(std::string_view name) {
  // Never destroyed, the lock with it: calls may outlive every static at exit, and a Task may be
  // made while others are destroyed.
  static auto* kept = new KeptNames;
  const std::lock_guard lock(kept->mutex);
  auto found = kept->names.find(name);
  if (found == kept->names.end()) found = kept->names.emplace(name).first;
  return *found;
}

}  // namespace fanout::detail
