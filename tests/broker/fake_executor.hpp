// fake_executor.hpp: a fake executor: announces itself with its credit, keeps the tasks it
// receives, and answers them (argument * argument, or "boom") on its own or when the test says.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <kj/exception.h>

#include "broker_messages.hpp"
#include "fake_peer.hpp"

namespace broker_test {

struct HeldTask {
  std::uint64_t batch;
  std::uint32_t index;
  std::uint16_t attempt;
  std::string name;
  std::int64_t argument;
};

struct ExecutorOptions {
  std::string id{};
  std::string worker{};
  std::vector<std::string> names{"square"};
  std::uint32_t slots = 1;
  bool answer = true;                           // answer on its own, else the test calls answer()
  std::chrono::microseconds answer_after{0};    // how long each task "runs" (answering itself)
  std::size_t flush_every = 0;                  // most results per message; 0: no limit
  bool record = false;                          // keep raw messages (tasks frames) for inspection
  bool fail = false;                            // answer every task with an exception ("boom")
  std::atomic<std::uint64_t>* sequence = nullptr;  // a counter shared by executors, to order dispatches
  bool extra = false;                           // announces itself as an extra executor (Announce.extra)
};

// An executor: announces itself with its credit, keeps what it receives, and answers
// argument * argument, either promptly on its own or when the test says so.
class FakeExecutor {
 public:
  struct Stats {
    std::size_t tasks = 0;            // tasks received
    std::size_t answered = 0;         // results sent
    std::size_t max_outstanding = 0;  // most tasks held at once (received, not yet answered)
    std::size_t task_messages = 0;
    std::set<std::string> names;      // task names received
  };
  struct Dispatched {
    std::uint64_t sequence;  // position among every dispatch seen by executors sharing the counter
    std::uint64_t batch;
    std::uint32_t index;
  };

  FakeExecutor(zmq::context_t& context, const std::string& endpoint, ExecutorOptions options)
      : options_(std::move(options)),
        peer_(context, endpoint, PeerOptions{options_.id, true, options_.record},
              [this](Peer&, wire::InMessage& message) { on_message(message); },
              [this](Peer& peer) { on_tick(peer); }) {
    peer_.send(announce_executor(options_.id, options_.worker, options_.names, options_.slots, false, options_.extra));
  }

  const std::string& id() const { return options_.id; }
  Peer& peer() { return peer_; }

  Stats stats() {
    std::lock_guard lock(peer_.mutex());
    return stats_;
  }
  std::vector<HeldTask> held() {
    std::lock_guard lock(peer_.mutex());
    return {held_.begin(), held_.end()};
  }
  std::vector<Dispatched> dispatched() {
    std::lock_guard lock(peer_.mutex());
    return dispatched_;
  }
  // Waits until it holds at least `count` unanswered tasks.
  bool wait_held(std::size_t count, std::chrono::milliseconds limit = kSoon) {
    return wait_for([&] { return held_.size() >= count; }, limit);
  }
  bool wait_tasks(std::size_t count, std::chrono::milliseconds limit = kSoon) {
    return wait_for([&] { return stats_.tasks >= count; }, limit);
  }
  // Answers the `count` oldest held tasks (in one results message per batch).
  void answer(std::size_t count) {
    {
      std::lock_guard lock(peer_.mutex());
      to_answer_ += count;
    }
    peer_.notify();
  }

 private:
  template <class Condition>
  bool wait_for(Condition condition, std::chrono::milliseconds limit) {
    return peer_.wait(condition, limit);
  }

  void on_message(wire::InMessage& message) {
    const auto envelope = message.envelope();
    if (!envelope.isTasks()) return;
    const auto now = Clock::now();
    std::lock_guard lock(peer_.mutex());
    ++stats_.task_messages;
    for (const auto task : envelope.getTasks().getTasks()) {
      // Fuzzed windows reach fake executors too: read the argument only where it is an int.
      std::int64_t argument = 0;
      try {
        if (task.getArgs().isTuple() && task.getArgs().getTuple().size() > 0 && task.getArgs().getTuple()[0].isInt()) {
          argument = task.getArgs().getTuple()[0].getInt();
        }
      } catch (const kj::Exception&) {  // arguments of the wrong kind, passed on as they came
      }
      held_.push_back(
          HeldTask{task.getBatchId(), task.getIndex(), task.getAttempt(), task.getName().cStr(), argument});
      due_.push_back(now + options_.answer_after);
      stats_.names.insert(task.getName().cStr());
      if (options_.sequence != nullptr) {
        dispatched_.push_back(Dispatched{options_.sequence->fetch_add(1), task.getBatchId(), task.getIndex()});
      }
    }
    stats_.tasks += envelope.getTasks().getTasks().size();
    stats_.max_outstanding = std::max(stats_.max_outstanding, held_.size());
  }

  void on_tick(Peer& peer) {
    std::vector<HeldTask> answering;
    {
      std::lock_guard lock(peer_.mutex());
      const auto now = Clock::now();
      while (!held_.empty()) {
        const bool ordered = to_answer_ > 0;
        const bool due = options_.answer && due_.front() <= now;
        if (!ordered && !due) break;
        if (ordered) --to_answer_;
        answering.push_back(held_.front());
        held_.pop_front();
        due_.pop_front();
      }
      stats_.answered += answering.size();
    }
    // Results messages of one batch each, in order, and (like the real executor) of at most
    // `flush_every` results.
    const std::size_t most = options_.flush_every == 0 ? answering.size() : options_.flush_every;
    std::size_t begin = 0;
    std::vector<Answer> answers;
    while (begin < answering.size()) {
      answers.clear();
      std::size_t end = begin;
      while (end < answering.size() && answering[end].batch == answering[begin].batch && answers.size() < most) {
        const HeldTask& task = answering[end];
        // Fuzzed arguments may be any int64: the square wraps around (unsigned) rather than overflow.
        const auto square = static_cast<std::int64_t>(static_cast<std::uint64_t>(task.argument) *
                                                      static_cast<std::uint64_t>(task.argument));
        answers.push_back(Answer{task.batch, task.index, task.attempt, square});
        ++end;
      }
      peer.send_now(options_.fail ? failures_message(answers, options_.id) : results_message(answers, options_.id));
      begin = end;
    }
    if (!answering.empty()) peer_.notify();
  }

  ExecutorOptions options_;
  // Guarded by peer_.mutex():
  std::deque<HeldTask> held_;
  std::deque<Clock::time_point> due_;
  std::size_t to_answer_ = 0;
  Stats stats_;
  std::vector<Dispatched> dispatched_;
  Peer peer_;  // last: its thread calls back into the members above
};

}  // namespace broker_test
