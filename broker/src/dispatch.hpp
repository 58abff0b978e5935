// dispatch.hpp: routing queued work to executors' credit (docs/protocol.md, "Routing",
// "Fairness", "Running limit", "Shell commands").
//
// Owns no batch and no peer: it moves tasks from batches' queues (Batches) into executors'
// in-flight lists (Peers) and sends them, and remembers only the executors a send failed to,
// which the loop then declares lost (the executor records must not be erased while dispatch
// holds pointers to them).
//
// The rules, in one place: an executor gets only what its free credit holds, and only tasks whose
// names it serves; clients and their batches take turns (RoundRobin); a short batch (no more
// tasks queued than executors that can take part) is shared out one message per executor per
// call, so a 3-task batch runs on 3 executors, not one after another on one; a batch never has
// more than its maxRunning at executors; a shell command, or a task with a run limit, goes only
// to an executor with nothing in flight, one at a time.
//
// Prefetch follows how long tasks take (TaskTimes): an executor holds, beyond the task it runs, at
// most kAhead of expected work (thousands of microsecond tasks, nothing behind a slow one), so that
// slow work waits here, where the first executor to free up takes it, as a list scheduler would.
// When an executor is idle with nothing queued for it while another holds work behind a task
// that turned out slow, that one is asked to hand back what it has not started (`reclaim`).
//
// A whole fresh window that fits is forwarded as the client's own frame (ZeroMQ shares the bytes);
// otherwise a new `tasks` message carries the chosen subset.
//
// Threads: the loop's thread only; run() is called once per loop turn, after the input.
//
// Does not: fail tasks nobody serves (Batches), or notice that an executor is gone beyond a
// failed send.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include <fanout/broker/broker.hpp>

#include "batches.hpp"
#include "metrics.hpp"
#include "outbox.hpp"
#include "peers.hpp"
#include "records.hpp"

namespace fanout::broker {

class Dispatch {
 public:
  Dispatch(Outbox& outbox, Counters& counters, Metrics& metrics, Peers& peers, Batches& batches);

  // Gives every executor with free credit what it may take now.
  void run();

  // Asks workers that may grow for more executors when tasks wait while every executor runs a
  // task that has taken longer than kSlowSlot (waiting on something rather than computing), or is
  // known to take that long, or, in a small batch, was never seen finish: one more for each such
  // executor, up to the tasks waiting. Local mode's pool grows this way, as
  // wide as the work (client/src/width.hpp); fanout-worker --max-processes opts in.
  void grow(Clock::time_point now);
  // When the loop should come back here even if nothing arrives: an executor's task is about to
  // turn slow (grow()) or to overrun enough for a reclaim (run()); time_point::max() when neither.
  Clock::time_point next_check() const noexcept { return std::min(next_growth_check_, next_reclaim_check_); }

  // The executors a send failed to since the last call (ZMQ_ROUTER_MANDATORY: they are gone). The
  // work they were given is still in their in-flight lists, to be taken back when they are lost.
  std::vector<PeerId> take_unreachable() { return std::exchange(unreachable_, {}); }

 private:
  using Given = std::vector<std::pair<const Executor*, std::uint64_t>>;  // (executor, batch) this call

  bool assign_one(Executor& executor, std::size_t capacity, Given& given);
  // What a task of `pending` is expected to take (TaskTimes), at least kShortestTask.
  std::chrono::nanoseconds expected_each(Pending& pending);
  // Whether how long `pending`'s tasks take has been learnt from results (not configured).
  bool learnt(Pending& pending);
  // Whether an executor of `extra`'s worker that is not an extra has room for `pending`'s tasks.
  bool others_have_room(const Executor& extra, Pending& pending);
  std::size_t room_ahead(const Executor& executor, Pending& pending);
  static std::chrono::nanoseconds expected_backlog(const Executor& executor, Clock::time_point now);
  void send_work(Executor& executor, Batch& batch, std::deque<Pending>::iterator first, std::uint32_t limit, bool alone);
  void reclaim_for_idle(const std::vector<Executor*>& idle);
  void send_to_executor(Executor& executor, zmq::message_t&& frame);

  Outbox& outbox_;
  Counters& counters_;
  Metrics& metrics_;
  Peers& peers_;
  Batches& batches_;
  std::vector<PeerId> unreachable_;
  Clock::time_point next_growth_check_ = Clock::time_point::max();
  Clock::time_point next_reclaim_check_ = Clock::time_point::max();
};

}  // namespace fanout::broker
