#include "status_reply.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace fanout::broker {

DeferredCounts deferred_counts(const DeferredState& deferred, const Batches& batches, const Counters& counters) {
  DeferredCounts counts;
  std::uint64_t pending = 0;
  for (const auto& [receipt, batch] : deferred.batches()) {
    for (const auto& task : batch.tasks) {
      pending += task.status == TaskStatus::pending ? 1 : 0;
      counts.dead += task.status == TaskStatus::dead ? 1 : 0;
    }
  }
  for (const auto& [id, batch] : batches.all()) counts.running += batch.receipt != 0 ? batch.in_flight : 0;
  counts.pending = pending - std::min(pending, counts.running);
  counts.done = counters.deferred_done.load();
  return counts;
}

zmq::message_t status_reply(const Peers& peers, const Batches& batches, const DeferredState& deferred,
                            const Counters& counters, const MetricsSnapshot& metrics) {
  wire::OutMessage out;
  auto status = out.envelope().initStatus();
  auto workers = status.initWorkers(static_cast<unsigned>(peers.supervisor_count()));
  const auto now = Clock::now();
  unsigned i = 0;
  std::uint64_t running = 0;
  for (const Supervisor& supervisor : peers.supervisors()) {
    auto worker = workers[i++];
    worker.setWorkerId(supervisor.worker_id);
    std::uint32_t free = 0;
    std::uint32_t executors = 0;
    std::uint32_t busy = 0;
    std::uint32_t in_flight = 0;
    std::uint32_t credit = 0;
    std::vector<std::string> names;
    for (const Executor& executor : peers.executors()) {
      if (executor.worker != supervisor.worker_id) continue;
      ++executors;
      free += executor.draining ? 0 : executor.free();
      busy += executor.in_flight.empty() ? 0 : 1;
      in_flight += static_cast<std::uint32_t>(executor.in_flight.size());
      credit += executor.slots;
      names.insert(names.end(), executor.names->begin(), executor.names->end());
    }
    worker.setHost(supervisor.host);
    worker.setVersion(supervisor.version);
    worker.setBusy(busy);
    worker.setRunning(in_flight);
    worker.setCredit(credit);
    worker.setRestarts(supervisor.executors_lost);
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    worker.setFreeSlots(free);
    worker.setProcesses(executors);
    auto list = worker.initTaskNames(static_cast<unsigned>(names.size()));
    for (unsigned n = 0; n < names.size(); ++n) list.set(n, names[n]);
    worker.setLastSeenMsAgo(static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(now - supervisor.last_seen).count()));
  }
  std::uint64_t queued = 0;
  for (const auto& [id, batch] : batches.all()) queued += batch.queued;
  for (const Executor& executor : peers.executors()) running += executor.in_flight.size();
  status.setQueued(queued);
  status.setRunning(running);
  const DeferredCounts counts = deferred_counts(deferred, batches, counters);
  status.setDeferredPending(counts.pending);
  status.setDeferredRunning(counts.running);
  status.setDeferredDone(counts.done);
  status.setDeferredDead(counts.dead);
  status.setDroppedMessages(counters.dropped_messages.load());
  status.setVersion(FANOUT_BROKER_RELEASE);
  status.setClients(peers.client_count());
  auto refused = status.initRefused(static_cast<unsigned>(metrics.refused.size()));
  for (unsigned n = 0; n < refused.size(); ++n) {
    refused[n].setLabel(metrics.refused[n].first);
    refused[n].setCount(metrics.refused[n].second);
  }
  return out.frame();
}

}  // namespace fanout::broker
