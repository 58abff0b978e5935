#include "status_view.hpp"

#include <algorithm>
#include <string>
#include <unordered_map>

#include <spdlog/fmt/fmt.h>

#include "batches.hpp"
#include "deferred_store.hpp"
#include "peers.hpp"

namespace fanout::broker {

namespace {

std::string cut(std::string_view text) {
  return std::string(text.substr(0, std::min(text.size(), StatusView::kViewTextLimit)));
}

std::uint32_t milliseconds(Clock::duration duration) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(ms, 0, UINT32_MAX));
}

BatchView batch_view(const Batch& batch, Clock::time_point now) {
  BatchView view;
  view.id = batch.id;
  view.deferred = batch.receipt != 0;
  if (view.deferred) {
    view.client = "deferred";
  } else {
    for (const unsigned char byte : batch.client) view.client += fmt::format("{:02x}", byte);
  }
  view.open_ended = batch.total == UINT32_MAX;
  view.total = view.open_ended ? 0 : batch.total;
  view.received = batch.received;
  view.settled = batch.settled;
  view.queued = static_cast<std::uint32_t>(std::min<std::size_t>(batch.queued, UINT32_MAX));
  view.running = batch.in_flight;
  view.succeeded = batch.succeeded;
  for (const auto& [kind, count] : batch.failures) view.failed += count;
  view.age_seconds = std::chrono::duration<double>(now - batch.opened).count();
  return view;
}

}  // namespace

StatusView status_view(const Peers& peers, const Batches& batches, const DeferredState& deferred,
                       Clock::time_point now) {
  StatusView view;

  std::unordered_map<std::string, std::size_t> by_worker;  // worker id -> index in view.workers
  for (const Supervisor& supervisor : peers.supervisors()) {
    WorkerView worker;
    worker.id = cut(supervisor.worker_id);
    worker.host = cut(supervisor.host);
    worker.version = cut(supervisor.version);
    worker.pid = supervisor.pid;
    worker.max_processes = supervisor.max_processes;
    worker.restarts = supervisor.executors_lost;
    worker.last_seen_ms = milliseconds(now - supervisor.last_seen);
    worker.draining = supervisor.draining;
    worker.allow_shell = supervisor.allow_shell;
    by_worker.emplace(supervisor.worker_id, view.workers.size());
    view.workers.push_back(std::move(worker));
  }
  for (const Executor& executor : peers.executors()) {
    const auto found = by_worker.find(executor.worker);
    if (found == by_worker.end()) continue;  // its supervisor is not (or no longer) registered
    WorkerView& worker = view.workers[found->second];
    ++worker.executors;
    worker.busy += executor.in_flight.empty() ? 0 : 1;
    worker.running += static_cast<std::uint32_t>(executor.in_flight.size());
    worker.credit += executor.slots;
    for (const std::string& name : *executor.names) worker.task_names.push_back(cut(name));
  }
  for (WorkerView& worker : view.workers) {
    std::sort(worker.task_names.begin(), worker.task_names.end());
    worker.task_names.erase(std::unique(worker.task_names.begin(), worker.task_names.end()), worker.task_names.end());
  }
  std::sort(view.workers.begin(), view.workers.end(),
            [](const WorkerView& a, const WorkerView& b) { return a.id < b.id; });

  std::vector<const Batch*> running;
  running.reserve(batches.all().size());
  for (const auto& [id, batch] : batches.all()) running.push_back(&batch);
  view.batches_total = running.size();
  const auto shown = std::min(running.size(), StatusView::kBatchLimit);
  std::partial_sort(running.begin(), running.begin() + static_cast<std::ptrdiff_t>(shown), running.end(),
                    [](const Batch* a, const Batch* b) { return a->opened < b->opened; });
  for (std::size_t n = 0; n < shown; ++n) view.batches.push_back(batch_view(*running[n], now));

  for (const auto& [receipt, batch] : deferred.batches()) {
    for (std::uint32_t index = 0; index < batch.tasks.size(); ++index) {
      const TaskState& task = batch.tasks[index];
      if (task.status != TaskStatus::dead) continue;
      if (view.dead.size() < StatusView::kDeadLimit) {
        view.dead.push_back({receipt, index, task.attempts, cut(task.error)});
      }
      ++view.dead_total;
    }
  }
  return view;
}

void RecentRates::record(Clock::time_point now, std::uint64_t completed, double run_seconds, std::uint64_t runs) {
  latest_ = {now, completed, run_seconds, runs};
  if (marks_.empty() || now - marks_.back().at >= kStretch) {
    marks_.push_back(latest_);
    if (marks_.size() > kStretches + 1) marks_.pop_front();
  }
}

std::vector<RecentRate> RecentRates::rates() const {
  std::vector<RecentRate> rates;
  const auto stretch = [&](const Mark& from, const Mark& to) {
    RecentRate rate;
    rate.ago_seconds = std::chrono::duration<double>(latest_.at - to.at).count();
    rate.length_seconds = std::chrono::duration<double>(to.at - from.at).count();
    rate.completed = to.completed - from.completed;
    rate.tasks_per_second = rate.length_seconds > 0 ? static_cast<double>(rate.completed) / rate.length_seconds : 0;
    const std::uint64_t runs = to.runs - from.runs;
    rate.mean_task_seconds = runs > 0 ? (to.run_seconds - from.run_seconds) / static_cast<double>(runs) : 0;
    rates.push_back(rate);
  };
  for (std::size_t n = 1; n < marks_.size(); ++n) stretch(marks_[n - 1], marks_[n]);
  if (!marks_.empty() && latest_.at > marks_.back().at) stretch(marks_.back(), latest_);
  return rates;
}

}  // namespace fanout::broker
