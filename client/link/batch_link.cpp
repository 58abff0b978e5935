// batch_link.cpp
#include "batch_link.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <utility>

#include <capnp/serialize.h>
#include <kj/common.h>
#include <kj/exception.h>

#include "batch_id.hpp"
#include "keys.hpp"
#include "link_keeper.hpp"
#include "wire_kinds.hpp"

namespace fanout::link {

namespace {

using std::chrono::milliseconds;

// How a lost batch is named in messages.
const char* noun(const BatchLink::Header& header) { return header.deferred ? "the deferred batch" : "the batch"; }

// Bytes of results and output read on each socket and not yet reported in a heartbeat. By socket,
// not by link: the broker counts what it sent to a connection, and a batch may end (its link
// gone) before its last bytes were reported; the next batch on the same pooled socket reports
// them. A socket that closes leaves an entry of a few bytes behind; a new socket at the same
// address then reports a little too much read, which the broker caps at what it sent.
constexpr std::uint64_t kReportEveryBytes = std::uint64_t{8} << 20;

struct Unreported {
  std::mutex mutex;
  std::unordered_map<const void*, std::uint64_t> by_socket;
};

// Never destroyed: the link keeper's thread may beat for a lent link while statics are destroyed
// at exit.
Unreported& unreported() {
  static auto* all = new Unreported;
  return *all;
}

// Returns what the socket has unreported now.
std::uint64_t add_unreported(zmq::socket_t& socket, std::uint64_t bytes) {
  Unreported& all = unreported();
  const std::lock_guard lock(all.mutex);
  return all.by_socket[socket.handle()] += bytes;
}

std::uint64_t take_unreported(zmq::socket_t& socket) {
  Unreported& all = unreported();
  const std::lock_guard lock(all.mutex);
  const auto found = all.by_socket.find(socket.handle());
  if (found == all.by_socket.end()) return 0;
  return std::exchange(found->second, 0);
}

}  // namespace

BatchLink::BatchLink(zmq::socket_t& socket, std::string where, Header header, Receiver& receiver)
    : socket_(socket), where_(std::move(where)), header_(header), receiver_(receiver), id_(detail::random_batch_id()) {}

BatchLink::~BatchLink() { stop_keeping_alive(); }

void BatchLink::stop_keeping_alive() noexcept {
  if (!kept_) return;
  keeper::unwatch(*this);  // first: the keeper may be about to try the socket
  kept_ = false;
  socket_held_.unlock();
}

void BatchLink::keep_alive() {
  if (kept_) return;
  socket_held_.lock();
  kept_ = true;
  keeper::watch(*this);
}

void BatchLink::lend() noexcept {
  if (kept_) socket_held_.unlock();
}

void BatchLink::take_back() noexcept {
  if (kept_) socket_held_.lock();
}

void BatchLink::beat_if_lent(Clock::time_point now) noexcept {
  if (!socket_held_.try_lock()) return;  // the owner is using the socket, and beats itself
  const std::lock_guard held(socket_held_, std::adopt_lock);
  if (opened_ && !failed_) beat_if_due(now);
}

wire::WindowWriter::Header BatchLink::window_header() const noexcept {
  return {id_, header_.total, header_.timeout_ms, header_.max_running, header_.deferred, header_.settled_before};
}

capnp::List<wire::Task>::Builder BatchLink::start_window(wire::OutMessage& out, std::size_t count) {
  const auto header = window_header();
  auto window = out.envelope().initTasks();
  window.setBatchId(header.batch_id);
  window.setTotal(header.total);
  window.setTimeoutMs(header.timeout_ms);
  window.setMaxRunning(header.max_running);
  window.setDeferred(header.deferred);
  window.setSettledBefore(header.settled_before);
  return window.initTasks(static_cast<unsigned>(count));
}

void BatchLink::send_frame(zmq::message_t&& frame) {
  if (failed_) return;
  if (!opened_) {
    // Silence and heartbeats count from the first window: before it the broker does not know us.
    last_heard_ = last_beat_ = Clock::now();
    opened_ = true;
  }
  if (socket_.send(frame, zmq::send_flags::dontwait)) return;
  // No room: ZeroMQ's queue to the broker is full (briefly), or the socket has nowhere to send.
  // A connection whose handshake failed (a broker with keys, and no listed key here) is not
  // tried again by ZeroMQ, so a blocking send would wait forever: room is waited for as long as
  // a silent broker is.
  const auto deadline = Clock::now() + wire::kBrokerSilence;
  for (auto now = Clock::now(); now < deadline; now = Clock::now()) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLOUT, 0};
    zmq::poll(&item, 1, std::chrono::ceil<milliseconds>(deadline - now));
    if (socket_.send(frame, zmq::send_flags::dontwait)) return;
  }
  fail(ErrorKind::unreachable, "the broker at " + where_ + " took no message for " +
                                   std::to_string(wire::kBrokerSilence.count()) + " ms");
}

bool BatchLink::pump(Clock::time_point until, bool awaiting, int wake_fd) {
  const auto now = Clock::now();
  // Silence counts from the moment work is out, not from the last answer before it went out.
  if (awaiting && !awaiting_) last_heard_ = now;
  awaiting_ = awaiting;
  // Heartbeats keep the broker knowing this client; the answer to one after a restart ("I do not
  // know you") is how a client learns that its batch is gone.
  const bool beats = opened_ && !failed_;
  if (beats) until = std::min(until, last_beat_ + wire::kHeartbeatInterval);

  zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd, ZMQ_POLLIN, 0}};
  const int count = wake_fd >= 0 ? 2 : 1;
  long timeout_ms = -1;
  if (until != Clock::time_point::max()) {
    timeout_ms = std::max<long>(0, static_cast<long>(std::chrono::ceil<milliseconds>(until - now).count()));
  }
  try {
    zmq::poll(items, count, milliseconds(timeout_ms));
  } catch (const zmq::error_t& error) {
    if (error.num() != EINTR) throw;
  }
  // Only what the poll saw: a look at an empty socket costs two system calls in libzmq (a
  // getpid(2) and a poll(2)), and between windows most looks find nothing.
  if ((items[0].revents & ZMQ_POLLIN) != 0) drain();
  if (beats && !failed_) {
    const auto later = Clock::now();
    beat_if_due(later);
    const auto silent = later - last_heard_;
    if (awaiting_ && !heard_ && silent > wire::kBrokerSilence) {
      fail(ErrorKind::unreachable, "no word from the broker at " + where_ + " for " +
                                       std::to_string(std::chrono::duration_cast<milliseconds>(wire::kBrokerSilence).count()) +
                                       " ms; " + wire::no_answer_hint(where_));
    } else if (awaiting_ && heard_ && silent > header_.reconnect_limit) {
      fail(ErrorKind::unreachable, "the broker at " + where_ + " has not answered for " +
                                       std::to_string(header_.reconnect_limit.count()) +
                                       " ms (its reconnect limit, FANOUT_RECONNECT_MS); its tasks are given up");
    }
  }
  return count == 2 && (items[1].revents & ZMQ_POLLIN) != 0;
}

void BatchLink::beat_if_due(Clock::time_point now) {
  // Early too when much was read: the broker holds back a client's work while it has more than
  // a few tens of MiB unreported (docs/limits.md), and a fast reader should not wait for that.
  // Counted on the socket, not the batch: a client running batch after batch, each shorter than
  // a heartbeat interval and reading less than kReportEveryBytes, reported nothing until the
  // broker held back its results, and each of its batches waited for the next heartbeat (500
  // ms) once every 64 MiB of results.
  if (!beat_due(now, 0)) return;
  unreported_ = 0;
  const std::uint64_t read_since = take_unreported(socket_);
  send_simple([read_since](wire::Envelope::Builder envelope) {
    auto beat = envelope.initHeartbeat();
    beat.setSentUnixMs(wire::unix_ms());
    beat.setResultBytes(read_since);
  });
  last_beat_ = now;
}

bool BatchLink::beat_due(Clock::time_point now, std::uint64_t pending_bytes) const noexcept {
  return now - last_beat_ >= wire::kHeartbeatInterval || unreported_ + pending_bytes >= kReportEveryBytes;
}

void BatchLink::drain() {
  std::uint64_t read_bytes = 0;
  const auto report = kj::defer([&] {
    if (read_bytes > 0) unreported_ = add_unreported(socket_, read_bytes);
  });
  zmq::message_t frame;
  while (socket_.recv(frame, zmq::recv_flags::dontwait)) {
    last_heard_ = Clock::now();
    heard_ = heard_ || opened_;
    const std::size_t bytes = frame.size();
    std::string why;
    auto fault = wire::InMessage::Fault::unreadable;
    auto message = wire::InMessage::parse(std::move(frame), &why, wire::max_frame_bytes(), wire::InMessage::Check::envelope,
                                          &fault);
    if (!message && fault == wire::InMessage::Fault::other_version) {
      fail(ErrorKind::bad_message, "the broker at " + where_ + " speaks another version of fanout's protocol (" + why +
                                       "): use the same fanout release on clients, workers and broker");
    }
    if (message && (message->envelope().isResults() || message->envelope().isOutput())) read_bytes += bytes;
    if (!message || failed_) continue;  // unreadable: the broker never sends those; nothing to settle
    try {
      handle(message->envelope());
    } catch (const kj::Exception&) {
      // A field of the wrong kind: the broker never sends those; nothing to settle from it.
    }
    // Results that keep coming (large values, callbacks that take their time) keep this loop
    // going for longer than the broker waits for a word (kPeerLiveness): the heartbeats go from
    // here too, or the broker would take this client for dead and drop its batch while it reads.
    if (!opened_ || failed_) continue;
    const auto now = Clock::now();
    if (beat_due(now, read_bytes)) {
      if (read_bytes > 0) unreported_ = add_unreported(socket_, std::exchange(read_bytes, 0));
      beat_if_due(now);
    }
  }
}

void BatchLink::handle(wire::Envelope::Reader envelope) {
  // The broker speaks to this client only once it knows it again: by then every answer to what was
  // sent before the restart has come.
  if (envelope.which() != wire::Envelope::ERROR) stale_refusals_ = false;
  switch (envelope.which()) {
    case wire::Envelope::RESULTS:
      for (const auto result : envelope.getResults()) {
        // Results of an earlier batch on this socket (late answers after it ended) are ignored.
        // Each is read under its own guard: the broker forwards results without checking them
        // whole, and a malformed one must fail its slot, not the slots after it in the message.
        if (result.getBatchId() == id_) {
          try {
            receiver_.result(result);
          } catch (const kj::Exception& error) {
            receiver_.unreadable_result(result.getIndex(), error.getDescription().cStr());
          }
        }
        if (failed_) return;
      }
      return;
    case wire::Envelope::OUTPUT:
      if (envelope.getOutput().getBatchId() == id_) receiver_.output(envelope.getOutput());
      return;
    case wire::Envelope::ACK: {
      const auto ack = envelope.getAck();
      if (ack.getBatchId() != id_) return;
      if (ack.hasRefused()) {
        const auto refused = ack.getRefused();
        return fail(detail::from_wire(refused.getKind()),
                    "the broker at " + where_ + " refused " + noun(header_) + ": " + refused.getMessage().cStr());
      }
      return receiver_.acknowledged(ack);
    }
    case wire::Envelope::ERROR: {
      const auto error = envelope.getError();
      // `refused` to a client is the broker's "I do not know you": it restarted, and the batch is
      // gone with it. Its owner sends what has no outcome yet again.
      if (error.getKind() == wire::ErrorKind::REFUSED && opened_) {
        // One restart per restart of the broker: the answers to what was sent while it was away
        // come first, all of them, and would otherwise send the batch a second time (refused as
        // more tasks than its total).
        if (stale_refusals_ && Clock::now() - restarted_at_ < wire::kPeerLiveness) return;
        return receiver_.broker_forgot();
      }
      if (!receiver_.complaint_is_fatal(error)) return;
      const char* what = error.getKind() == wire::ErrorKind::BAD_MESSAGE ? " could not take " : " lost ";
      return fail(ErrorKind::worker_lost,
                  "the broker at " + where_ + what + noun(header_) + ": " + error.getMessage().cStr());
    }
    default:
      return;  // heartbeats: last_heard_ is enough
  }
}

void BatchLink::fail(ErrorKind kind, const std::string& message) {
  if (failed_) return;
  failed_ = true;
  receiver_.link_failed(kind, message);
}

template <class Fill>
void BatchLink::send_simple(Fill fill) noexcept {
  try {
    wire::OutMessage out(16);
    fill(out.envelope());
    socket_.send(out.frame(), zmq::send_flags::dontwait);
  } catch (...) {
    // A message that cannot leave now: the broker drops a silent client after its liveness.
  }
}

std::chrono::milliseconds BatchLink::default_reconnect_limit() {
  static const std::chrono::milliseconds limit = [] {
    if (const char* value = std::getenv("FANOUT_RECONNECT_MS"); value != nullptr && *value != '\0') {
      return std::chrono::milliseconds(std::strtoull(value, nullptr, 10));
    }
    return std::chrono::milliseconds(30000);
  }();
  return limit;
}

void BatchLink::restart(std::uint32_t settled_before, std::uint32_t timeout_ms) {
  header_.settled_before = settled_before;
  header_.timeout_ms = timeout_ms;
  opened_ = false;  // the next window opens the batch at the broker again
  stale_refusals_ = true;
  restarted_at_ = Clock::now();
}

void BatchLink::cancel() noexcept {
  if (!opened_) return;
  send_simple([&](wire::Envelope::Builder envelope) { envelope.initCancel().setBatchId(id_); });
}

void BatchLink::bye(std::chrono::milliseconds linger) noexcept {
  if (!opened_) return;
  send_simple([](wire::Envelope::Builder envelope) { envelope.setBye(); });
  try {
    socket_.set(zmq::sockopt::linger, static_cast<int>(linger.count()));
  } catch (...) {
  }
}

}  // namespace fanout::link
