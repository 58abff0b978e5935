#include "dispatch.hpp"

#include <algorithm>
#include <chrono>
#include <string_view>
#include <unordered_map>

namespace fanout::broker {

namespace {

// How much expected work an executor may hold beyond the task it runs: enough that executors of
// microsecond tasks never wait for the broker, little enough that no executor sits on work another
// could start (an idle executor waits at most this long for what a busy one holds).
constexpr std::chrono::nanoseconds kAhead = std::chrono::milliseconds(2);
// Work that takes less than this in all is sent to one executor rather than shared out among
// several: another executor's share costs a message's round trip through the broker and both
// ends' ZeroMQ I/O threads (100-300 µs on 2 vCPUs, where the hops of two executors also wait for
// each other's CPU), far more than running the few microseconds of work in turn. Three trivial
// tasks took 362 µs (p50) shared over two executors and 180 µs on one (W1, bench/fanout_bench.cpp).
constexpr std::chrono::nanoseconds kWorthSharing = std::chrono::microseconds(100);
// What a task is taken to take at least, however quick its results say it is.
constexpr std::chrono::nanoseconds kShortestTask = std::chrono::microseconds(1);
// A task with a run limit fails this long after its limit when its result has not come: the
// time a result takes to travel, so that a task that finished in time is never turned into a
// timeout.
constexpr auto kRunLimitGrace = std::chrono::milliseconds(100);
// An executor whose running task has taken this long (and twice what its name usually takes) is
// asked to hand back what it holds behind it when another executor is idle.
constexpr auto kReclaimAfter = std::chrono::milliseconds(20);
// An executor whose task has run this long is waiting on something rather than computing (the
// rule of client/src/width.hpp): while tasks wait, its worker is asked for another executor.
constexpr auto kSlowSlot = std::chrono::milliseconds(5);
// A task whose name is known to take less than kQuickTask counts as waiting on something only once
// it has been at the front for kSlowQuickSlot: before that, a late result means an executor that
// did not get a CPU (a loaded machine) or results still gathered into one message, and another
// process on the same CPUs would only slow every executor down (W2 on a busy machine ran 5x
// slower on a pool grown to 20 executors).
constexpr auto kQuickTask = std::chrono::milliseconds(1);
constexpr auto kSlowQuickSlot = std::chrono::milliseconds(250);
// Growth asked for at most this many executors at a time.
constexpr std::size_t kMostGrowth = 64;
// Tasks of names never seen finish grow the pool at once only while at most this many wait (the
// default FANOUT_MAX_PROCESSES): a small batch, as Laravel's drivers start whole. A large batch of
// unknown tasks (W2's first) is mostly tiny ones, and waits kSlowSlot to find out.
constexpr std::size_t kEagerGrowthWaiting = 16;

// The first queue entry of `batch` that `executor` serves (almost always the front). A retry that
// asks to avoid this executor's worker is left for another worker, when one serves it.
std::deque<Pending>::iterator first_served(const Executor& executor, Batch& batch, const Peers& peers) {
  return std::find_if(batch.queue.begin(), batch.queue.end(), [&](const Pending& pending) {
    if (!executor.serves(pending.name_text())) return false;
    const auto avoid = text(pending.frame->tasks[pending.begin].getAvoidWorker());
    if (avoid.empty() || avoid != executor.worker) return true;
    const auto executors = peers.executors();
    return std::none_of(executors.begin(), executors.end(), [&](const Executor& other) {
      return !other.draining && other.worker != avoid && other.serves(pending.name_text());
    });
  });
}

}  // namespace

Dispatch::Dispatch(Outbox& outbox, Counters& counters, Metrics& metrics, Peers& peers, Batches& batches)
    : outbox_(outbox), counters_(counters), metrics_(metrics), peers_(peers), batches_(batches) {}

void Dispatch::run() {
  next_reclaim_check_ = Clock::time_point::max();
  if (batches_.empty()) return;
  std::vector<Executor*> ready;
  std::size_t live = 0;
  for (Executor& executor : peers_.executors()) {
    if (executor.draining || executor.unconfirmed) continue;
    ++live;
    if (executor.free() > 0) ready.push_back(&executor);
  }
  if (ready.empty()) return;
  // Idle executors first, so that a small batch lands on executors that start it at once; then
  // the busy ones by how soon they are expected to get through what they hold, as a list
  // scheduler gives the next task to whoever frees up first. In a fixed order, the first busy
  // executor with room ahead took every quick window while another one sat idle behind it (10
  // of 16 units of a W2 batch queued on one executor of two).
  const auto now = Clock::now();
  std::vector<std::pair<std::chrono::nanoseconds, Executor*>> by_backlog;
  by_backlog.reserve(ready.size());
  for (Executor* executor : ready) {
    by_backlog.emplace_back(executor->in_flight.empty() ? std::chrono::nanoseconds(0) : expected_backlog(*executor, now),
                            executor);
  }
  std::stable_sort(by_backlog.begin(), by_backlog.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (std::size_t i = 0; i < ready.size(); ++i) ready[i] = by_backlog[i].second;
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
      if (!executor->draining && !executor->unconfirmed && executor->free() > 0 && assign_one(*executor, capacity, given)) {
        moved = true;
      }
    }
  }
  // Executors still idle with nothing queued for them: work that another holds behind a task that
  // turned out slow comes back to be shared out.
  std::vector<Executor*> idle;
  for (Executor* executor : ready) {
    if (!executor->draining && executor->in_flight.empty()) idle.push_back(executor);
  }
  if (!idle.empty()) reclaim_for_idle(idle);
}

void Dispatch::grow(Clock::time_point now) {
  next_growth_check_ = Clock::time_point::max();
  if (!peers_.may_grow()) return;
  std::size_t waiting = 0;  // tasks that could start now if there were an executor for them
  for (const auto& [id, batch] : batches_.all()) {
    if (batch.ended || batch.queue.empty() || batches_.held_back(batch)) continue;
    std::size_t may_start = batch.queued;
    if (batch.max_running > 0) {
      may_start = std::min<std::size_t>(may_start, batch.max_running > batch.in_flight ? batch.max_running - batch.in_flight : 0);
    }
    waiting += may_start;
    if (waiting >= kMostGrowth) break;
  }
  if (waiting == 0) return;
  std::size_t slow = 0;
  for (const Executor& executor : peers_.executors()) {
    if (executor.draining || executor.in_flight.empty()) continue;
    const InFlight& front = executor.in_flight.front();
    const bool known = front.times != nullptr && front.times->samples > 0;
    const bool known_quick = known && front.expected < kQuickTask;
    const auto slow_after = known_quick ? std::chrono::duration_cast<Clock::duration>(kSlowQuickSlot)
                                        : std::chrono::duration_cast<Clock::duration>(kSlowSlot);
    // Waiting already, without watching it for kSlowSlot: a task known to take longer than that,
    // or, while few tasks wait, one never seen finish. A small batch of slow tasks then starts
    // whole as soon as the extra executors have connected, as the fork driver starts it.
    const bool slow_already = known ? front.expected >= kSlowSlot : waiting <= kEagerGrowthWaiting;
    if (slow_already || now - executor.front_since >= slow_after) {
      ++slow;
    } else {
      next_growth_check_ = std::min(next_growth_check_, executor.front_since + slow_after);
    }
  }
  if (slow == 0) return;
  // Executors already on their way (announced by their supervisor, not connected yet) will take
  // some of the waiting tasks.
  const std::size_t coming = peers_.executors_coming();
  const std::size_t wanted = std::min(waiting, slow);
  if (wanted <= coming) {
    next_growth_check_ = std::min(next_growth_check_, now + Peers::kGrowPatience);
    return;
  }
  if (peers_.ask_to_grow(wanted - coming, now) == 0) {
    next_growth_check_ = std::min(next_growth_check_, now + Peers::kGrowPatience);  // asked already: look again later
  }
}

void Dispatch::reclaim_for_idle(const std::vector<Executor*>& idle) {
  const auto now = Clock::now();
  std::size_t wanted = idle.size();
  for (Executor& busy : peers_.executors()) {
    if (wanted == 0) return;
    if (busy.draining || busy.reclaim_pending || busy.in_flight.size() < 2) continue;
    const auto due = busy.front_since + std::max<Clock::duration>(kReclaimAfter, 2 * busy.in_flight.front().expected);
    if (now < due) {
      // Not overdue yet: the loop looks again when it will be, whatever else happens meanwhile.
      next_reclaim_check_ = std::min(next_reclaim_check_, due);
      continue;
    }
    const InFlight& last = busy.in_flight.back();
    const std::string& name = last.frame->names[last.frame->name_at(last.position)];
    if (std::none_of(idle.begin(), idle.end(), [&](const Executor* executor) { return executor->serves(name); })) {
      continue;
    }
    wire::OutMessage out(16);
    out.envelope().initReclaim().setCount(static_cast<std::uint32_t>(busy.in_flight.size() - 1));
    if (outbox_.send(busy.id, out.frame())) {
      busy.reclaim_pending = true;
      ++counters_.reclaims;
      --wanted;
    }
  }
}

// Gives `executor` one message of work from the next client in round-robin order.
bool Dispatch::assign_one(Executor& executor, std::size_t capacity, Given& given) {
  return batches_.turns().serve_one([&](std::uint64_t id) {
    Batch* batch = batches_.find(id);
    if (batch == nullptr || batch->queue.empty() || batch->ended || batches_.held_back(*batch)) return false;
    // A second message of a short batch for the same executor waits (see run()); a deep queue
    // keeps every executor's credit full.
    if (batch->queued <= capacity &&
        std::find(given.begin(), given.end(), std::make_pair<const Executor*>(&executor, id)) != given.end()) {
      return false;
    }
    Batch& chosen = *batch;
    if (chosen.max_running > 0 && chosen.in_flight >= chosen.max_running) return false;
    const auto first = first_served(executor, chosen, std::as_const(peers_));
    if (first == chosen.queue.end()) return false;
    // A shell command, or a task with a run limit, goes only to an executor with nothing else: it
    // starts the moment it arrives, and runs alone.
    const bool alone = first->name_text() == kShellTask || first->frame->tasks[first->begin].getTimeoutMs() > 0;
    if (alone && !executor.in_flight.empty()) return false;
    // Quick work on an extra executor only when its worker's own executors have no room for it:
    // an extra shares their cores, and tiny tasks spread over more processes than cores ran 40%
    // slower (W2 on a pool of three executors on two cores).
    if (executor.extra && !alone && learnt(*first) && expected_each(*first) < kQuickTask &&
        others_have_room(executor, *first)) {
      return false;
    }
    std::size_t fair = (chosen.queued + capacity - 1) / capacity;
    // Quick work that together takes less than a message's round trip is not worth sharing out:
    // it goes to one executor, in one message, and its results come back in one.
    if (!alone && learnt(*first)) {
      const auto worth_sharing = static_cast<std::size_t>(kWorthSharing / expected_each(*first));
      fair = std::max(fair, std::min(chosen.queued, worth_sharing));
    }
    std::size_t share = alone ? 1 : std::min<std::size_t>(fair, room_ahead(executor, *first));
    if (share == 0) return false;
    // A client's frame of quick tasks (all of it within kAhead of expected work) that its fair
    // share and the executor's credit hold goes whole when the room ahead takes at least half of
    // it: at most kAhead more quick work ahead, against copying every task into a new window (and
    // a smaller message) to fit the room exactly.
    if (!alone && first->whole_fresh_frame()) {
      const std::size_t whole = first->frame->size();
      if (share < whole && whole <= fair && whole <= executor.free() && expected_each(*first) * whole <= kAhead) {
        if (share * 2 >= whole) {
          share = whole;
        } else if (!executor.in_flight.empty() && chosen.max_running == 0) {
          // Less room than half the frame ahead of a busy executor: it still has more than
          // kAhead / 2 of quick work, so it waits for room for the whole frame rather than get a
          // slice copied task by task into a new window (the split copies were about a tenth of
          // the broker's work on tiny tasks). Fair shares at a batch's tail are split as before.
          return false;
        }
      }
    }
    given.emplace_back(&executor, id);
    if (chosen.max_running > 0) {
      // A capped batch's running slots are spread over the executors that can take part: one
      // executor holding two of a cap of two would leave the other idle until it answers.
      share = std::min<std::size_t>({share, chosen.max_running - chosen.in_flight,
                                     std::max<std::size_t>(1, (chosen.max_running + capacity - 1) / capacity)});
    }
    send_work(executor, chosen, first, static_cast<std::uint32_t>(std::min<std::size_t>(executor.free(), share)), alone);
    return true;
  });
}

// How many tasks like `pending`'s `executor` may be given now: an idle executor one to start at
// once, and as many more as it will get through within kAhead of expected work; a busy one only
// what fits in kAhead beyond what it already holds. A task nobody has seen finish yet counts as
// slow: nothing waits behind it.
std::chrono::nanoseconds Dispatch::expected_each(Pending& pending) {
  TaskTimes& task_times = batches_.task_times();
  return std::max(task_times.expected(pending.frame->times_of(pending.name, task_times),
                                     pending.frame->tasks[pending.begin].getSlots()),
                  kShortestTask);
}

bool Dispatch::others_have_room(const Executor& extra, Pending& pending) {
  for (const Executor& other : std::as_const(peers_).executors()) {
    if (other.extra || other.draining || other.unconfirmed || other.worker != extra.worker || other.free() == 0) continue;
    if (other.serves(pending.name_text()) && room_ahead(other, pending) > 0) return true;
  }
  return false;
}

bool Dispatch::learnt(Pending& pending) {
  const TaskTimes::Entry* times = pending.frame->times_of(pending.name, batches_.task_times());
  return times != nullptr && times->samples > 0;
}

std::size_t Dispatch::room_ahead(const Executor& executor, Pending& pending) {
  const auto expected = expected_each(pending);
  if (executor.in_flight.empty()) return 1 + static_cast<std::size_t>(kAhead / expected);
  const auto backlog = expected_backlog(executor, Clock::now());
  if (backlog >= kAhead) return 0;
  return static_cast<std::size_t>((kAhead - backlog) / expected);
}

// The executor's backlog, its running task counted at what it has left: what its name usually
// takes, less what it has run; or, once it has run longer than that, as long again as it has run
// (a task that overran its usual time is not about to end). A task of a name not measured yet
// counts as configured (Config::unknown_task_time).
std::chrono::nanoseconds Dispatch::expected_backlog(const Executor& executor, Clock::time_point now) {
  if (executor.in_flight.empty()) return executor.backlog;
  const InFlight& front = executor.in_flight.front();
  if (front.times == nullptr || front.times->samples == 0) return executor.backlog;
  const auto expected = front.expected;
  const auto running_for = std::chrono::duration_cast<std::chrono::nanoseconds>(now - executor.front_since);
  return executor.backlog - expected + std::max(expected - running_for, running_for);
}

// Sends up to `limit` (>= 1) queued tasks of `batch` that `executor` serves, starting at `first`.
// `alone`: one task with a run limit or a shell command (its clock starts now).
void Dispatch::send_work(Executor& executor, Batch& batch, std::deque<Pending>::iterator first, std::uint32_t limit,
                         bool alone) {
  limit = std::max<std::uint32_t>(limit, 1);
  const auto now = Clock::now();
  // Records `position` of `frame` as in flight at the executor.
  const auto give = [&](const FramePtr& frame, std::uint32_t position, std::uint16_t attempt) {
    const auto task = frame->tasks[position];
    TaskTimes::Entry* times = frame->times_of(frame->name_at(position), batches_.task_times());
    InFlight entry{frame, position, batch.id, task.getIndex(), attempt,
                   batches_.task_times().expected(times, task.getSlots()), times, std::nullopt};
    // Shell commands enforce their own limits at the executor (and report the output so far).
    if (alone && task.getTimeoutMs() > 0 && frame->names[frame->name_at(position)] != kShellTask) {
      entry.deadline = now + std::chrono::milliseconds(task.getTimeoutMs()) + kRunLimitGrace;
      batches_.watch_run_limit(executor.id, *entry.deadline);
    }
    executor.give(std::move(entry), now);
  };
  if (first->whole_fresh_frame() && first->frame->size() <= limit) {
    // Forward the client's frame as it came: ZeroMQ shares the bytes, nothing is copied.
    zmq::message_t copy;
    copy.copy(first->frame->message.frame());
    const FramePtr frame = first->frame;
    batch.queue.erase(first);
    batch.queued -= frame->size();
    if (alone) {
      for (std::uint32_t position = 0; position < frame->size(); ++position) {
        give(frame, position, frame->tasks[position].getAttempt());
      }
    } else {
      // Many tasks, of one name or a few: how long they take is looked up once per run of a name.
      for (const Frame::Run& run : frame->runs) {
        TaskTimes::Entry* times = frame->times_of(run.name, batches_.task_times());
        for (std::uint32_t position = run.begin; position < run.end; ++position) {
          const auto task = frame->tasks[position];
          executor.give(InFlight{frame, position, batch.id, task.getIndex(), task.getAttempt(),
                                 batches_.task_times().expected(times, task.getSlots()), times, std::nullopt},
                        now);
        }
      }
    }
    metrics_.waited(now - frame->arrived, frame->size());
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
      give(pending->frame, position, attempt);
      if (pending->attempt < 0) metrics_.waited(now - pending->frame->arrived);  // not a requeued task
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
