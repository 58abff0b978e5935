#include "dispatch.hpp"

#include <algorithm>
#include <string_view>
#include <unordered_map>

namespace fanout::broker {

namespace {

// The first queue entry of `batch` that `executor` serves (almost always the front).
std::deque<Pending>::iterator first_served(const Executor& executor, Batch& batch) {
  return std::find_if(batch.queue.begin(), batch.queue.end(),
                      [&](const Pending& pending) { return executor.serves(pending.name_text()); });
}

}  // namespace

Dispatch::Dispatch(Outbox& outbox, Counters& counters, Peers& peers, Batches& batches)
    : outbox_(outbox), counters_(counters), peers_(peers), batches_(batches) {}

void Dispatch::run() {
  if (batches_.empty()) return;
  std::vector<Executor*> ready;
  std::size_t live = 0;
  for (Executor& executor : peers_.executors()) {
    if (executor.draining) continue;
    ++live;
    if (executor.free() > 0) ready.push_back(&executor);
  }
  if (ready.empty()) return;
  // Idle executors first, so that a small batch lands on executors that start it at once.
  std::stable_partition(ready.begin(), ready.end(), [](const Executor* e) { return e->in_flight.empty(); });
  // A batch is shared over every executor that can take part: the ready ones, the busy ones
  // that will free up, and the ones a supervisor announced that have not connected yet (a pool
  // starting up must not hand a whole batch to its first executor).
  // Executors also say how many their worker runs: they may be heard before their supervisor.
  std::size_t expected = 0;
  std::unordered_map<std::string_view, std::size_t> per_worker;
  for (const Supervisor& supervisor : peers_.supervisors()) {
    if (!supervisor.draining) per_worker[supervisor.worker_id] = supervisor.processes;
  }
  for (const Executor& executor : std::as_const(peers_).executors()) {
    if (!executor.draining) per_worker[executor.worker] = std::max<std::size_t>(per_worker[executor.worker], executor.processes);
  }
  for (const auto& [worker, processes] : per_worker) expected += processes;
  const std::size_t capacity = std::max({ready.size(), live, expected, std::size_t{1}});
  // Each pass gives every ready executor at most one message, and never a second message of a
  // short batch (no more tasks queued than executors) within one call: what is left waits for
  // the next call (the next message in), when other executors may be free or connected.
  Given given;
  bool moved = true;
  while (moved) {
    moved = false;
    for (Executor* executor : ready) {
      if (!executor->draining && executor->free() > 0 && assign_one(*executor, capacity, given)) moved = true;
    }
  }
}

// Gives `executor` one message of work from the next client in round-robin order.
bool Dispatch::assign_one(Executor& executor, std::size_t capacity, Given& given) {
  return batches_.turns().serve_one([&](std::uint64_t id) {
    Batch* batch = batches_.find(id);
    if (batch == nullptr || batch->queue.empty() || batch->ended) return false;
    // A second message of a short batch for the same executor waits (see run()); a deep queue
    // keeps every executor's credit full.
    if (batch->queued <= capacity &&
        std::find(given.begin(), given.end(), std::make_pair<const Executor*>(&executor, id)) != given.end()) {
      return false;
    }
    Batch& chosen = *batch;
    if (chosen.max_running > 0 && chosen.in_flight >= chosen.max_running) return false;
    const auto first = first_served(executor, chosen);
    if (first == chosen.queue.end()) return false;
    const bool shell = first->name_text() == kShellTask;
    if (shell && !executor.in_flight.empty()) return false;
    given.emplace_back(&executor, id);
    std::size_t share = shell ? 1 : (chosen.queued + capacity - 1) / capacity;
    if (chosen.max_running > 0) share = std::min<std::size_t>(share, chosen.max_running - chosen.in_flight);
    send_work(executor, chosen, first, static_cast<std::uint32_t>(std::min<std::size_t>(executor.free(), share)));
    return true;
  });
}

// Sends up to `limit` (>= 1) queued tasks of `batch` that `executor` serves, starting at `first`.
void Dispatch::send_work(Executor& executor, Batch& batch, std::deque<Pending>::iterator first, std::uint32_t limit) {
  limit = std::max<std::uint32_t>(limit, 1);
  if (first->whole_fresh_frame() && first->frame->size() <= limit) {
    // Forward the client's frame as it came: ZeroMQ shares the bytes, nothing is copied.
    zmq::message_t copy;
    copy.copy(first->frame->message.frame());
    const FramePtr frame = first->frame;
    batch.queue.erase(first);
    batch.queued -= frame->size();
    for (std::uint32_t position = 0; position < frame->size(); ++position) {
      const auto task = frame->tasks[position];
      executor.in_flight.push_back(InFlight{frame, position, batch.id, task.getIndex(), task.getAttempt()});
    }
    batch.in_flight += frame->size();
    counters_.tasks_dispatched += frame->size();
    return send_to_executor(executor, std::move(copy));
  }
  // Otherwise a new message with a subset: runs of queue entries in queue order (requeued tasks
  // first), skipping names this executor does not serve.
  struct Chosen {
    const Frame* frame;
    std::uint32_t position;
    int attempt;
  };
  std::vector<Chosen> chosen;
  chosen.reserve(limit);
  for (auto pending = first; pending != batch.queue.end() && chosen.size() < limit;) {
    if (!executor.serves(pending->name_text())) {
      ++pending;
      continue;
    }
    while (pending->begin < pending->end && chosen.size() < limit) {
      const std::uint32_t position = pending->begin++;
      const auto task = pending->frame->tasks[position];
      const auto attempt = pending->attempt >= 0 ? static_cast<std::uint16_t>(pending->attempt) : task.getAttempt();
      chosen.push_back(Chosen{pending->frame.get(), position, pending->attempt});
      executor.in_flight.push_back(InFlight{pending->frame, position, batch.id, task.getIndex(), attempt});
    }
    pending = pending->begin == pending->end ? batch.queue.erase(pending) : std::next(pending);
  }
  batch.queued -= chosen.size();
  wire::OutMessage out(static_cast<unsigned>(64 + chosen.size() * 24));
  auto window = out.envelope().initTasks();
  window.setBatchId(batch.id);
  window.setTotal(batch.total);
  window.setTimeoutMs(batch.timeout_ms);
  auto tasks = window.initTasks(static_cast<unsigned>(chosen.size()));
  for (unsigned i = 0; i < chosen.size(); ++i) {
    tasks.setWithCaveats(i, chosen[i].frame->tasks[chosen[i].position]);
    if (chosen[i].attempt >= 0) tasks[i].setAttempt(static_cast<std::uint16_t>(chosen[i].attempt));
  }
  batch.in_flight += static_cast<std::uint32_t>(chosen.size());
  counters_.tasks_dispatched += chosen.size();
  send_to_executor(executor, out.frame());
}

void Dispatch::send_to_executor(Executor& executor, zmq::message_t&& frame) {
  if (!outbox_.send(executor.id, std::move(frame))) {
    // The executor is gone (ZMQ_ROUTER_MANDATORY): what we gave it goes back to the queues,
    // once run() no longer holds pointers to executors.
    executor.draining = true;
    unreachable_.push_back(executor.id);
  }
}

}  // namespace fanout::broker
