// broker_messages.hpp: the Envelopes the broker tests send, built by hand (announces, task
// windows, results, heartbeats, cancel, bye, executorLost...), and raw frames for fuzzing.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "task_window.hpp"
#include "transport.hpp"

namespace broker_test {

namespace wire = fanout::wire;

// A supervisor of `processes` executors; one that may grow up to `max_processes` when asked.
inline zmq::message_t announce_supervisor(const std::string& worker, std::uint32_t processes, bool draining = false,
                                          std::uint32_t max_processes = 0) {
  wire::OutMessage out;
  auto announce = out.envelope().initAnnounce();
  announce.setRole(wire::Announce::Role::SUPERVISOR);
  announce.setWorkerId(worker);
  announce.setHost("testhost");
  announce.setPid(static_cast<std::int32_t>(::getpid()));
  announce.setProcesses(processes);
  announce.setMaxProcesses(max_processes);
  announce.setDraining(draining);
  return out.frame();
}

inline zmq::message_t announce_executor(const std::string& executor, const std::string& worker,
                                        const std::vector<std::string>& names, std::uint32_t slots,
                                        bool draining = false, bool extra = false) {
  wire::OutMessage out;
  auto announce = out.envelope().initAnnounce();
  announce.setRole(wire::Announce::Role::EXECUTOR);
  announce.setExtra(extra);
  announce.setWorkerId(worker);
  announce.setExecutorId(executor);
  auto list = announce.initTaskNames(static_cast<unsigned>(names.size()));
  for (unsigned i = 0; i < names.size(); ++i) list.set(i, names[i]);
  announce.setSlots(slots);
  announce.setDraining(draining);
  return out.frame();
}

// Tasks `slots` (index, name) of batch `batch` in `window`; each task's argument is its index
// (the fake executors answer index * index).
inline void fill_tasks(wire::TaskBatch::Builder window, std::uint64_t batch, std::uint32_t total,
                       const std::vector<std::pair<std::uint32_t, std::string>>& slots, std::uint32_t timeout_ms) {
  std::vector<fanout_test::TaskSpec> tasks;
  tasks.reserve(slots.size());
  for (const auto& [index, name] : slots) {
    tasks.push_back({index, name, [index = index](wire::Value::Builder args) { args.initTuple(1)[0].setInt(index); }});
  }
  fanout_test::fill_tasks(window, batch, total, tasks, timeout_ms);
}

inline zmq::message_t tasks_window(std::uint64_t batch, std::uint32_t total, std::uint32_t first, std::uint32_t count,
                                   const std::string& name = "square", std::uint32_t timeout_ms = 0) {
  std::vector<std::pair<std::uint32_t, std::string>> slots;
  for (std::uint32_t i = 0; i < count; ++i) slots.emplace_back(first + i, name);
  wire::OutMessage out(64 + count * 16);
  fill_tasks(out.envelope().initTasks(), batch, total, slots, timeout_ms);
  return out.frame();
}

inline zmq::message_t mixed_window(std::uint64_t batch, const std::vector<std::string>& names) {
  std::vector<std::pair<std::uint32_t, std::string>> slots;
  for (std::uint32_t i = 0; i < names.size(); ++i) slots.emplace_back(i, names[i]);
  wire::OutMessage out;
  fill_tasks(out.envelope().initTasks(), batch, static_cast<std::uint32_t>(names.size()), slots, 0);
  return out.frame();
}

struct Answer {
  std::uint64_t batch;
  std::uint32_t index;
  std::uint16_t attempt;
  std::int64_t value;
};

// Results of `answers`, each its value or, with `fail`, an exception "boom".
inline zmq::message_t answers_message(const std::vector<Answer>& answers, const std::string& ran_on, bool fail) {
  wire::OutMessage out(static_cast<unsigned>(64 + answers.size() * 16));
  auto list = out.envelope().initResults(static_cast<unsigned>(answers.size()));
  for (unsigned i = 0; i < answers.size(); ++i) {
    auto result = list[i];
    result.setBatchId(answers[i].batch);
    result.setIndex(answers[i].index);
    result.setAttempt(answers[i].attempt);
    result.setRanOn(ran_on);
    if (!fail) {
      result.initValue().setInt(answers[i].value);
      continue;
    }
    auto error = result.initError();
    error.setKind(wire::ErrorKind::EXCEPTION);
    error.setRemoteType("std::runtime_error");
    error.setMessage("boom");
    error.setRanOn(ran_on);
  }
  return out.frame();
}

inline zmq::message_t results_message(const std::vector<Answer>& answers, const std::string& ran_on = "fake executor") {
  return answers_message(answers, ran_on, false);
}

// Results that are all failures: an exception "boom" each.
inline zmq::message_t failures_message(const std::vector<Answer>& answers, const std::string& ran_on) {
  return answers_message(answers, ran_on, true);
}

template <class Fill>
zmq::message_t simple_message(Fill fill) {
  wire::OutMessage out;
  fill(out.envelope());
  return out.frame();
}

// A heartbeat; from a client, saying it read `result_bytes` of results and output since its last.
inline zmq::message_t heartbeat_message(std::uint64_t result_bytes = 0) {
  return simple_message([&](wire::Envelope::Builder envelope) {
    auto beat = envelope.initHeartbeat();
    beat.setSentUnixMs(wire::unix_ms());
    beat.setResultBytes(result_bytes);
  });
}
inline zmq::message_t cancel_message(std::uint64_t batch) {
  return simple_message([&](wire::Envelope::Builder envelope) { envelope.initCancel().setBatchId(batch); });
}
inline zmq::message_t status_request() {
  return simple_message([](wire::Envelope::Builder envelope) { envelope.setStatusRequest(); });
}
inline zmq::message_t bye_message() {
  return simple_message([](wire::Envelope::Builder envelope) { envelope.setBye(); });
}
inline zmq::message_t executor_lost(const std::string& executor, std::optional<std::pair<std::uint64_t, std::uint32_t>> running,
                                    bool stopped_by_broker = false, int signal = 9) {
  return simple_message([&](wire::Envelope::Builder envelope) {
    auto lost = envelope.initExecutorLost();
    lost.setExecutorId(executor);
    lost.setSignal(signal);
    lost.setRunning(running.has_value());
    if (running) {
      lost.setBatchId(running->first);
      lost.setIndex(running->second);
    }
    lost.setStoppedByBroker(stopped_by_broker);
  });
}

inline std::vector<std::uint8_t> bytes_of(const zmq::message_t& frame) {
  const auto* data = static_cast<const std::uint8_t*>(frame.data());
  return {data, data + frame.size()};
}

inline zmq::message_t frame_of(const std::vector<std::uint8_t>& bytes) { return zmq::message_t(bytes.data(), bytes.size()); }

}  // namespace broker_test
