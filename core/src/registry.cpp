// registry.cpp: the process-wide table of named tasks.
#include <fanout/task.hpp>

#include <map>
#include <mutex>
#include <string>

namespace fanout::detail {

namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, RegisteredTask, std::less<>> tasks;
};

// Leaked on purpose: global Tasks unregister from their destructors at exit, in an order relative
// to this table that no static could guarantee.
Registry& registry() {
  static auto* table = new Registry;
  return *table;
}

}  // namespace

void register_task(std::string_view name, const RegisteredTask& task) {
  if (name.empty()) throw Error("fanout::Task: a task needs a non-empty name");
  auto& table = registry();
  const std::lock_guard lock(table.mutex);
  const auto [where, inserted] = table.tasks.try_emplace(std::string(name), task);
  if (!inserted) {
    throw Error("fanout::Task: two tasks are named '" + std::string(name) +
                "'; task names must be unique in a program");
  }
}

void unregister_task(std::string_view name, const void* task) noexcept {
  auto& table = registry();
  const std::lock_guard lock(table.mutex);
  const auto found = table.tasks.find(name);
  if (found != table.tasks.end() && found->second.task == task) table.tasks.erase(found);
}

RegisteredTask find_registered(std::string_view name) {
  auto& table = registry();
  const std::lock_guard lock(table.mutex);
  const auto found = table.tasks.find(name);
  if (found == table.tasks.end()) {
    throw UnknownTask("no task named '" + std::string(name) + "' is registered in this program");
  }
  return found->second;
}

void invoke_registered(std::string_view name, ValueReader args, ValueBuilder out) {
  find_registered(name)(args, out);
}

std::vector<std::string> registered_task_names() {
  auto& table = registry();
  const std::lock_guard lock(table.mutex);
  std::vector<std::string> names;
  names.reserve(table.tasks.size());
  for (const auto& [name, entry] : table.tasks) names.push_back(name);
  return names;
}

}  // namespace fanout::detail
