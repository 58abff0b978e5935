#include "status_json.hpp"

#include <cstdio>

#include <nlohmann/json.hpp>

#include <fanout/version.hpp>

#include "printable.hpp"

namespace fanout::broker {

namespace {

using nlohmann::json;

std::string shown(const std::string& text) { return wire::printable(text, StatusView::kViewTextLimit); }

std::string hex(std::uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

json counts(const MetricsSnapshot::Counts& counts) {
  json object = json::object();
  for (const auto& [label, count] : counts) object[label] = count;
  return object;
}

}  // namespace

std::string status_json(const MetricsSnapshot& s) {
  const StatusView& view = s.status;
  json out;
  out["version"] = FANOUT_VERSION;
  out["uptime_seconds"] = view.uptime_seconds;

  std::uint64_t queued = 0;
  json queue = json::array();
  for (const auto& [task, count] : s.queued_by_task) {
    queue.push_back({{"task", shown(task)}, {"queued", count}});
    queued += count;
  }
  out["summary"] = {{"workers", s.workers},   {"executors", s.executors}, {"clients", s.clients},
                    {"batches", s.batches},   {"queued", queued},         {"running", s.running},
                    {"tasks_received", s.tasks_received}};
  out["queue"] = std::move(queue);

  json workers = json::array();
  for (const WorkerView& worker : view.workers) {
    json names = json::array();
    for (const std::string& name : worker.task_names) names.push_back(shown(name));
    workers.push_back({{"id", shown(worker.id)},
                       {"host", shown(worker.host)},
                       {"version", worker.version.empty() ? json(nullptr) : json(shown(worker.version))},
                       {"pid", worker.pid},
                       {"executors", worker.executors},
                       {"busy", worker.busy},
                       {"running", worker.running},
                       {"credit", worker.credit},
                       {"max_processes", worker.max_processes},
                       {"restarts", worker.restarts},
                       {"last_seen_ms", worker.last_seen_ms},
                       {"draining", worker.draining},
                       {"allow_shell", worker.allow_shell},
                       {"task_names", std::move(names)}});
  }
  out["workers"] = std::move(workers);

  json batches = json::array();
  for (const BatchView& batch : view.batches) {
    json entry = {{"id", hex(batch.id)},         {"client", batch.client},     {"deferred", batch.deferred},
                  {"received", batch.received},  {"settled", batch.settled},   {"queued", batch.queued},
                  {"running", batch.running},    {"succeeded", batch.succeeded}, {"failed", batch.failed},
                  {"age_seconds", batch.age_seconds}};
    entry["total"] = batch.open_ended ? json(nullptr) : json(batch.total);  // null: open-ended
    batches.push_back(std::move(entry));
  }
  out["batches"] = std::move(batches);
  out["batches_total"] = view.batches_total;

  json dead = json::array();
  for (const DeadTaskView& task : view.dead) {
    dead.push_back({{"receipt", task.receipt}, {"index", task.index}, {"attempts", task.attempts},
                    {"error", shown(task.error)}});
  }
  out["deferred"] = {{"pending", s.deferred_pending}, {"running", s.deferred_running}, {"done", s.deferred_done},
                     {"dead", s.deferred_dead},       {"dead_tasks", std::move(dead)}, {"dead_total", view.dead_total}};

  json recent = json::array();
  for (const RecentRate& rate : view.recent) {
    recent.push_back({{"ago_seconds", rate.ago_seconds},
                      {"length_seconds", rate.length_seconds},
                      {"completed", rate.completed},
                      {"tasks_per_second", rate.tasks_per_second},
                      {"mean_task_seconds", rate.mean_task_seconds}});
  }
  out["recent"] = std::move(recent);
  out["completed"] = counts(s.completed);
  out["refused"] = counts(s.refused);
  // printable() leaves only well-formed UTF-8, but a replacement beats an exception here.
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace fanout::broker
