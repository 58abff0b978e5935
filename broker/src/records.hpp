// records.hpp: the plain records the broker's parts share: a received `tasks` frame and the queue
// and in-flight entries that point into it, and one record per batch and per peer.
//
// A task is never copied while it is in the broker: the frame a client sent (Frame) is shared by
// the queue entries (Pending) and in-flight records (InFlight) that name its positions, so a task
// can wait, be dispatched and be requeued after its executor died while its bytes stay in the
// ZeroMQ message they arrived in.
//
// Ownership: each table of these records has one owner, which alone adds and erases entries:
// batches belong to Batches (batches.hpp), clients, supervisors and executors to Peers
// (peers.hpp). Other parts change fields where their headers say so (Dispatch moves tasks from a
// batch's queue to an executor's in-flight list). Nothing here has a thread of its own; every
// record is touched on the broker's loop thread only.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "task_times.hpp"
#include "transport.hpp"

namespace fanout::broker {

using Clock = std::chrono::steady_clock;
using PeerId = std::string;  // a ZeroMQ routing id

// Shell commands (fanout::Process pools on remote workers). An executor runs one at a time, and a
// command may run for hours: it gets one only when it has nothing else, so that commands queue at
// the broker, where any executor that frees up can take the next, never behind a long one.
inline constexpr std::string_view kShellTask = wire::kShellTaskName;

// Deferred batches belong to the broker once acknowledged: they are queued under this client,
// which takes its turn in the round-robin like any other but is never sent anything. (ZeroMQ
// reserves routing ids that start with a zero byte for the ones it makes up itself.)
inline const std::string kDeferredClient("\0fanout-deferred", 16);

inline std::string_view text(capnp::Text::Reader value) { return {value.cStr(), value.size()}; }

// A received `tasks` frame. Queue entries and in-flight records share it, so a task is never
// copied while it waits and can be requeued after its executor died.
struct Frame {
  // Consecutive tasks of one name: the unit of queueing, so that a window mixing names that no
  // single executor serves all of still goes, each task where its name is served.
  struct Run {
    std::uint32_t begin;
    std::uint32_t end;
    std::uint32_t name;  // index into `names`
  };

  // Reads every task's name, avoidWorker and key: throws kj::Exception for one that is not text.
  explicit Frame(wire::InMessage received);

  std::uint32_t size() const noexcept { return tasks.size(); }
  // The index into `names` of the task at `position`.
  std::uint32_t name_at(std::uint32_t position) const {
    const auto run = std::upper_bound(runs.begin(), runs.end(), position,
                                      [](std::uint32_t p, const Run& r) { return p < r.begin; });
    return std::prev(run)->name;
  }

  // How long tasks of name `name` take (an entry of TaskTimes, looked up once per frame); nullptr
  // when not tracked.
  TaskTimes::Entry* times_of(std::uint32_t name, TaskTimes& times) {
    if (times_cache.empty()) times_cache.assign(names.size(), nullptr);
    if (times_cache[name] == nullptr) times_cache[name] = times.of(names[name]);
    return times_cache[name];
  }

  wire::InMessage message;
  capnp::List<wire::Task>::Reader tasks;
  std::vector<std::string> names;  // distinct task names, usually one or a few
  std::vector<Run> runs;           // usually one
  std::vector<TaskTimes::Entry*> times_cache;  // by name index, filled by times_of()
  Clock::time_point arrived = Clock::now();  // when it reached the broker (queue wait is measured from here)
  // The window's share of its client's caps (an Admission::Hold), given back with the frame.
  std::shared_ptr<const void> hold;
};
using FramePtr = std::shared_ptr<Frame>;

// Queued tasks: positions [begin, end) of a frame, all of one name. A requeued task is a run of
// one with the attempt it is to run with.
struct Pending {
  FramePtr frame;
  std::uint32_t begin = 0;
  std::uint32_t end = 0;
  std::uint32_t name = 0;  // index into frame->names
  int attempt = -1;        // -1: as in the frame

  const std::string& name_text() const noexcept { return frame->names[name]; }
  bool whole_fresh_frame() const noexcept { return begin == 0 && end == frame->size() && attempt < 0; }
};

// A task at an executor.
struct InFlight {
  FramePtr frame;
  std::uint32_t position;
  std::uint64_t batch;
  std::uint32_t index;
  std::uint16_t attempt;
  std::chrono::nanoseconds expected{0};  // how long it should take (TaskTimes), for the executor's backlog
  TaskTimes::Entry* times = nullptr;     // where its run time is learnt; nullptr when not tracked
  // A task with a run limit (Task.timeoutMs) fails as `timeout` and its executor is stopped when
  // its result has not come by then. Such a task is only sent to an executor with nothing else,
  // so that its clock starts when it starts.
  std::optional<Clock::time_point> deadline;
};

struct Batch {
  std::uint64_t id = 0;
  PeerId client;
  std::uint32_t total = 0;
  std::uint32_t received = 0;  // tasks received in windows so far
  std::uint32_t settled = 0;   // tasks whose outcome went to the client (or was dropped)
  std::uint32_t in_flight = 0;
  std::deque<Pending> queue;
  std::size_t queued = 0;
  std::uint32_t timeout_ms = 0;
  std::uint32_t max_running = 0;  // at most this many at executors at once; 0: no limit
  std::optional<Clock::time_point> deadline;
  // Set once the batch timed out or was cancelled: what its remaining tasks fail with.
  std::optional<std::pair<wire::ErrorKind, std::string>> ended;
  // Deferred batches: their receipt (else 0) and their frame, where task i is at position i.
  std::uint64_t receipt = 0;
  FramePtr deferred_frame;
  // For the line logged when it ends: since when it is held, and its outcomes so far.
  Clock::time_point opened{};
  std::uint32_t succeeded = 0;
  std::vector<std::pair<wire::ErrorKind, std::uint32_t>> failures;  // by kind, in the order first seen

  void count_failures(wire::ErrorKind kind, std::uint32_t count) {
    for (auto& [seen, so_far] : failures) {
      if (seen == kind) {
        so_far += count;
        return;
      }
    }
    failures.emplace_back(kind, count);
  }
};

struct Client {
  Clock::time_point last_seen;
};

using NameSet = std::shared_ptr<const std::vector<std::string>>;  // sorted

struct Executor {
  PeerId id;
  std::string worker;
  std::string key;  // the key it announced with (Z85; empty on a broker without keys)
  NameSet names;
  std::uint32_t slots = 0;
  std::uint32_t processes = 1;  // executors of its worker, as it announced
  std::deque<InFlight> in_flight;  // in dispatch order: the front is the one running
  // Change in_flight through give() and forget(), which keep these two right.
  std::chrono::nanoseconds backlog{0};  // the expected run time of everything in flight
  Clock::time_point front_since{};      // since when the front task has been the front (running)
  bool reclaim_pending = false;         // asked to hand back what it has not started; no answer yet
  // Its supervisor reconnected (after a partition, say): it gets no work until it has announced
  // itself again, from a connection that is known to work.
  bool unconfirmed = false;
  Clock::time_point last_seen;
  // Whether it gets no new work: it is leaving, or its worker drains, or a send to it failed.
  bool draining = false;
  // It said it drains (SIGTERM, or an extra executor leaving idle), or the broker asked its
  // supervisor to stop it: for good. Its supervisor's announces (a pool that grew or shrank) say
  // whether the worker drains, and must not undo this: a draining executor hands back at once
  // whatever it is sent and waits a quiet period more each time, so the broker, giving idle
  // executors work first, sent the same task back and forth to it and the batch never ended.
  bool leaving = false;
  // Started beyond its worker's own number (Announce.extra): quick work goes to the others first.
  bool extra = false;

  std::uint32_t free() const noexcept {
    return in_flight.size() >= slots ? 0 : slots - static_cast<std::uint32_t>(in_flight.size());
  }
  void give(InFlight entry, Clock::time_point now) {
    if (in_flight.empty()) front_since = now;
    backlog += entry.expected;
    in_flight.push_back(std::move(entry));
  }
  std::deque<InFlight>::iterator forget(std::deque<InFlight>::iterator entry, Clock::time_point now) {
    backlog -= entry->expected;
    if (entry == in_flight.begin()) {
      front_since = now;
      in_flight.pop_front();  // the usual case (executors answer in order), without erase's shifting
      return in_flight.begin();
    }
    return in_flight.erase(entry);
  }
  bool serves(std::string_view name) const {
    return std::binary_search(names->begin(), names->end(), name, std::less<>());
  }
};

struct Supervisor {
  std::string worker_id;
  std::string key;  // the key it announced with (Z85; empty on a broker without keys)
  std::string host;
  std::string version;  // the fanout release it announced; empty from an older worker
  std::int32_t pid = 0;
  std::uint32_t processes = 0;      // executors it runs now
  std::uint32_t max_processes = 0;  // as many as it may grow to when asked (Grow)
  std::uint32_t growing = 0;        // executors asked for and not announced yet
  Clock::time_point asked_to_grow{};
  bool allow_shell = false;
  bool draining = false;
  Clock::time_point last_seen;
  // Its executors the broker lost while it stayed (died, were stopped, said goodbye): the
  // restarts an operator sees on the status page.
  std::uint64_t executors_lost = 0;
};

}  // namespace fanout::broker
