// kept_task_names.cpp: the one copy of each Task name that its calls point to (task.hpp).
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include <fanout/task.hpp>

namespace fanout::detail {

const std::string& kept_task_name(std::string_view name) {
  static std::mutex mutex;
  // Never destroyed, and a set's elements never move: calls may outlive every static at exit.
  static auto* kept = new std::set<std::string, std::less<>>();
  const std::lock_guard lock(mutex);
  auto found = kept->find(name);
  if (found == kept->end()) found = kept->emplace(name).first;
  return *found;
}

}  // namespace fanout::detail
