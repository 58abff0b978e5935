// fake_client.hpp: a fake client: submits windows and gathers what comes back (outcomes by
// batch and index, output chunks, acks of deferred batches), counting outcomes it got twice.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <kj/exception.h>

#include "fake_peer.hpp"

namespace broker_test {

struct Outcome {
  bool ok = false;
  std::int64_t value = 0;
  wire::ErrorKind kind = wire::ErrorKind::EXCEPTION;
  std::string message;
  std::uint16_t attempt = 0;
};

// A client: submits windows, gathers outcomes by (batch, index), counts outcomes it got twice.
class FakeClient {
 public:
  FakeClient(zmq::context_t& context, const std::string& endpoint)
      : peer_(context, endpoint, PeerOptions{}, [this](Peer&, wire::InMessage& message) { on_message(message); }) {}

  Peer& peer() { return peer_; }
  void send(zmq::message_t frame) { peer_.send(std::move(frame)); }

  std::size_t settled(std::uint64_t batch) {
    std::lock_guard lock(peer_.mutex());
    return outcomes_[batch].size();
  }
  bool wait_settled(std::uint64_t batch, std::size_t count, std::chrono::milliseconds limit = kSoon) {
    return peer_.wait([&] { return outcomes_[batch].size() >= count; }, limit);
  }
  std::map<std::uint32_t, Outcome> outcomes(std::uint64_t batch) {
    std::lock_guard lock(peer_.mutex());
    return outcomes_[batch];
  }
  std::size_t twice() {
    std::lock_guard lock(peer_.mutex());
    return twice_;
  }
  // Output chunks received, as (index, text), in arrival order.
  std::vector<std::pair<std::uint32_t, std::string>> output(std::uint64_t batch) {
    std::lock_guard lock(peer_.mutex());
    return output_[batch];
  }
  bool wait_output(std::uint64_t batch, std::size_t chunks, std::chrono::milliseconds limit = kSoon) {
    return peer_.wait([&] { return output_[batch].size() >= chunks; }, limit);
  }
  // The ack of a batch: its receipt, or why it was refused (prefixed "refused: ").
  std::optional<std::string> ack(std::uint64_t batch) {
    std::lock_guard lock(peer_.mutex());
    const auto found = acks_.find(batch);
    if (found == acks_.end()) return std::nullopt;
    return found->second;
  }
  std::optional<std::string> wait_ack(std::uint64_t batch, std::chrono::milliseconds limit = kSoon) {
    peer_.wait([&] { return acks_.count(batch) != 0; }, limit);
    return ack(batch);
  }

 private:
  void on_message(wire::InMessage& message) {
    const auto envelope = message.envelope();
    if (envelope.isAck()) {
      const auto ack = envelope.getAck();
      std::lock_guard lock(peer_.mutex());
      acks_[ack.getBatchId()] = ack.hasRefused() ? "refused: " + std::string(ack.getRefused().getMessage().cStr())
                                                 : std::string(ack.getReceipt().cStr());
      return;
    }
    if (envelope.isOutput()) {
      const auto chunk = envelope.getOutput();
      std::lock_guard lock(peer_.mutex());
      output_[chunk.getBatchId()].emplace_back(
          chunk.getIndex(), std::string(reinterpret_cast<const char*>(chunk.getData().begin()), chunk.getData().size()));
      return;
    }
    if (!envelope.isResults()) return;
    std::lock_guard lock(peer_.mutex());
    for (const auto result : envelope.getResults()) {
      Outcome outcome;
      outcome.attempt = result.getAttempt();
      // As the real client does (the broker forwards results without checking them whole): each
      // result read under its own guard, one that cannot be read settling its slot as badMessage.
      try {
        if (result.isValue()) {
          outcome.ok = true;
          outcome.value = result.getValue().isInt() ? result.getValue().getInt() : 0;
        } else {
          outcome.kind = result.getError().getKind();
          outcome.message = result.getError().getMessage().cStr();
        }
      } catch (const kj::Exception& unreadable) {
        outcome = Outcome{};
        outcome.attempt = result.getAttempt();
        outcome.kind = wire::ErrorKind::BAD_MESSAGE;
        outcome.message = unreadable.getDescription().cStr();
      }
      auto& slots = outcomes_[result.getBatchId()];
      if (!slots.emplace(result.getIndex(), std::move(outcome)).second) ++twice_;
    }
  }

  // Guarded by peer_.mutex():
  std::map<std::uint64_t, std::map<std::uint32_t, Outcome>> outcomes_;
  std::map<std::uint64_t, std::vector<std::pair<std::uint32_t, std::string>>> output_;
  std::map<std::uint64_t, std::string> acks_;
  std::size_t twice_ = 0;
  Peer peer_;  // last
};

}  // namespace broker_test
