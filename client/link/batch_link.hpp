// batch_link.hpp: the client's end of one batch at a broker, the one place a client speaks the
// batch protocol (docs/protocol.md, "Client rules"). The process driver's batches, its deferred
// batches, remote Process pools and `fanout run --broker` all run on it.
//
// It owns the batch's id and the protocol's obligations on the client side: every window of the
// batch carries the same header (total, timeout, running limit, deferred), windows are cut to the
// frame limits (kFrameTasks tasks, kFrameBytes of arguments), the broker is heartbeaten once it
// knows the batch, and the batch ends with `cancel` and/or `bye` as the owner decides.
//
// A broker that goes away costs time, not work. A broker that answers `refused` (it restarted and
// no longer knows this client) makes the link ask its owner to send again every task without an
// outcome (Receiver::broker_forgot, then restart()). A broker that falls silent while work is out
// is waited for, heartbeats queued for its return, up to the reconnect limit (FANOUT_RECONNECT_MS,
// 30 s by default); only a broker never heard from is given up after wire::kBrokerSilence.
//
// It does not own the tasks or what they became: the owner writes each task (send_window's fill)
// and is told what comes back through a Receiver, so that results are decoded in place into the
// owner's storage. Which tasks are out, and what to do when the link fails, is the owner's.
//
// Threads: none of its own. Every call, and every Receiver callback, happens on the thread that
// calls pump(); the socket is the owner's and must be used by that thread only, with one
// exception: while the owner has lent it (keep_alive(), lend()) to run code that may take any
// time, the process's link keeper thread (link_keeper.hpp) heartbeats on it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>

#include <zmq.hpp>

#include <fanout/task_error.hpp>

#include "timing.hpp"
#include "transport.hpp"
#include "window_writer.hpp"

namespace fanout::link {

// TaskBatch.total of a batch whose size is not known when it starts (`fanout run` reading stdin):
// the broker keeps it until the client's `bye`.
inline constexpr std::uint32_t kOpenEnded = std::numeric_limits<std::uint32_t>::max();
// Tasks per window at most, and their bytes per window (at least one task, however large; at
// most half the frame limit, FANOUT_MAX_FRAME_BYTES, when that is lower): the broker and the
// executors start on the first windows while later ones are still encoded.
inline constexpr std::size_t kFrameTasks = 1024;
inline constexpr std::size_t kFrameBytes = std::size_t{4} << 20;

class BatchLink {
 public:
  using Clock = std::chrono::steady_clock;

  // What every window says about the whole batch.
  struct Header {
    std::uint32_t total = 0;        // slots in the batch; kOpenEnded when not known
    std::uint32_t timeout_ms = 0;   // TaskBatch.timeoutMs, 0 = none
    std::uint32_t max_running = 0;  // TaskBatch.maxRunning, 0 = no cap
    bool deferred = false;          // defer: acknowledged once journaled; the client sends nothing else
    std::uint32_t settled_before = 0;  // TaskBatch.settledBefore: slots settled before a restart()
    // How long a broker that answered before may stay silent while work is out.
    std::chrono::milliseconds reconnect_limit = default_reconnect_limit();
  };

  // FANOUT_RECONNECT_MS, else 30 s.
  static std::chrono::milliseconds default_reconnect_limit();

  // What comes back for this batch, from inside pump().
  class Receiver {
   public:
    // A result of this batch (its batch id checked; its index is the receiver's to check).
    // Results are not checked whole by the broker: a read of a malformed part throws
    // kj::Exception, and the link then calls unreadable_result for the same index. So a receiver
    // reads what may throw before it changes anything for the slot.
    virtual void result(wire::Result::Reader result) = 0;
    // Result `index` of this batch could not be read (`why`): its slot fails, the others stand.
    virtual void unreadable_result(std::uint32_t index, const std::string& why) = 0;
    // A chunk of a shell command's live output.
    virtual void output(wire::OutputChunk::Reader /*chunk*/) {}
    // An ack of this batch that refuses nothing (a deferred batch's receipt comes this way).
    virtual void acknowledged(wire::Ack::Reader /*ack*/) {}
    // The broker complained about something this socket sent (other than not knowing this client):
    // whether that loses the batch. By default it does (it could not read what was sent).
    virtual bool complaint_is_fatal(wire::TaskError::Reader /*error*/) { return true; }
    // The broker no longer knows this batch (it restarted while the batch ran): the owner calls
    // restart() and sends again every task it has no outcome for. Outcomes it has are kept.
    virtual void broker_forgot() = 0;
    // The batch is lost: refused, forgotten by the broker, or the broker went silent. Called once;
    // the link sends nothing more afterwards. `message` says so in a sentence naming the broker.
    virtual void link_failed(ErrorKind kind, const std::string& message) = 0;

   protected:
    ~Receiver() = default;
  };

  // `socket` is a DEALER connected to the broker at `where` (for messages); both outlive the link.
  BatchLink(zmq::socket_t& socket, std::string where, Header header, Receiver& receiver);
  ~BatchLink();
  BatchLink(const BatchLink&) = delete;
  BatchLink& operator=(const BatchLink&) = delete;

  std::uint64_t id() const noexcept { return id_; }
  const std::string& where() const noexcept { return where_; }
  // A window went out: the broker knows the batch.
  bool opened() const noexcept { return opened_; }
  // link_failed was called: nothing more is sent or delivered.
  bool failed() const noexcept { return failed_; }
  // How long nothing has come from the broker (since the first window went out).
  std::chrono::milliseconds silence() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_heard_);
  }
  // The broker answered something of this batch (an ack, a result): it was reachable.
  bool heard() const noexcept { return heard_; }

  // How many of the next `count` tasks go in one window by their sizes: one at least, at most
  // kFrameTasks, and no more bytes than kFrameBytes or half the frame limit (the rest is room for
  // what the estimate leaves out). `size_of(i)` is the encoded size of the i-th, in bytes.
  template <class SizeOf>
  static std::size_t window_size(std::size_t count, SizeOf size_of) {
    count = std::min(count, kFrameTasks);
    const std::size_t limit = std::min(kFrameBytes, wire::max_frame_bytes() / 2);
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < count; ++i) {
      bytes += size_of(i);
      if (bytes > limit) return std::max<std::size_t>(i, 1);
    }
    return count;
  }

  // Sends one window of `count` tasks; `fill(window, i)` adds the i-th (WindowWriter::add).
  // `hint_words`: about what the tasks take (structs, names, keys, arguments). Blocks while ZeroMQ's
  // queue to the broker is full (flow control is by windows; it never is for long), at most
  // kBrokerSilence, after which the link fails as unreachable. Returns the window's size in
  // bytes; a window larger than `max_bytes` (what a broker takes in one message) is not sent at all.
  template <class Fill>
  std::size_t send_window(std::size_t count, std::size_t hint_words, Fill fill,
                          std::size_t max_bytes = wire::max_frame_bytes()) {
    wire::WindowWriter window(window_header(), count, hint_words);
    for (std::size_t i = 0; i < count; ++i) fill(window, i);
    const std::size_t bytes = window.bytes();
    if (bytes <= max_bytes) send_frame(window.frame());
    return bytes;
  }

  // The same for tasks WindowWriter does not write (shell commands): `fill(task, i)` writes the
  // i-th through capnp (its batch id is set already).
  template <class Fill>
  std::size_t send_built_window(std::size_t count, std::size_t hint_words, Fill fill,
                                std::size_t max_bytes = wire::max_frame_bytes()) {
    wire::OutMessage out(static_cast<unsigned>(std::min<std::size_t>(64 + hint_words, 1u << 22)));
    auto tasks = start_window(out, count);
    for (std::size_t i = 0; i < count; ++i) {
      auto task = tasks[static_cast<unsigned>(i)];
      task.setBatchId(id_);
      fill(task, i);
    }
    const std::size_t bytes = capnp::computeSerializedSizeInWords(out.builder()) * sizeof(capnp::word);
    if (bytes <= max_bytes) send_frame(out.frame());
    return bytes;
  }

  // Waits for the broker until `until` (or until `wake_fd` is readable, when given), handles what
  // arrived, heartbeats when due and notices a broker that went silent while `awaiting` (work is
  // out). Returns whether `wake_fd` was readable. Throws zmq::error_t when the socket fails.
  bool pump(Clock::time_point until, bool awaiting, int wake_fd = -1);

  // After broker_forgot(): windows from now on open the batch afresh at the broker, saying that
  // `settled_before` slots are settled already, with `timeout_ms` left of its deadline.
  void restart(std::uint32_t settled_before, std::uint32_t timeout_ms);

  // For a batch whose owner runs the caller's callbacks from inside pump(), which may take longer
  // than the broker waits for a word from a client (kPeerLiveness): from now until the link ends
  // the owner holds the socket, and lends it between lend() and take_back(), while the link
  // keeper heartbeats for it. Without it, a callback of a few seconds made the broker drop the
  // batch, and the client sent it again: its running tasks ran twice.
  void keep_alive();
  void lend() noexcept;
  void take_back() noexcept;
  // Ends keep_alive() early, on the owner's thread (the destructor does it otherwise): for a link
  // that outlives the thread that kept it.
  void stop_keeping_alive() noexcept;
  // Lends the socket for as long as it lives: around a callback.
  class Lent {
   public:
    explicit Lent(BatchLink& link) noexcept : link_(link) { link_.lend(); }
    ~Lent() { link_.take_back(); }
    Lent(const Lent&) = delete;
    Lent& operator=(const Lent&) = delete;

   private:
    BatchLink& link_;
  };
  // From the link keeper's thread: a heartbeat, if the socket is lent and one is due.
  void beat_if_lent(Clock::time_point now) noexcept;

  // Drop the batch's queued tasks and stop its running ones; its open slots come back cancelled.
  void cancel() noexcept;
  // The client is leaving: the broker forgets it and this batch at once. The socket then lingers
  // up to `linger` for its last messages.
  void bye(std::chrono::milliseconds linger) noexcept;

 private:
  wire::WindowWriter::Header window_header() const noexcept;
  capnp::List<wire::Task>::Builder start_window(wire::OutMessage& out, std::size_t count);
  void send_frame(zmq::message_t&& frame);
  void drain();
  // A heartbeat, when one is due (kHeartbeatInterval since the last) or much was read since.
  void beat_if_due(Clock::time_point now);
  // Whether one is due, with `pending_bytes` read and not yet counted in unreported_.
  bool beat_due(Clock::time_point now, std::uint64_t pending_bytes) const noexcept;
  void handle(wire::Envelope::Reader envelope);
  void fail(ErrorKind kind, const std::string& message);
  template <class Fill>
  void send_simple(Fill fill) noexcept;

  zmq::socket_t& socket_;
  const std::string where_;
  Header header_;
  Receiver& receiver_;
  const std::uint64_t id_;
  bool opened_ = false;
  bool failed_ = false;
  bool awaiting_ = false;
  bool heard_ = false;  // the broker has answered since the batch opened: it exists, silence is a pause
  Clock::time_point last_heard_{};
  Clock::time_point last_beat_{};
  // Bytes of results and output read on the socket and not yet reported, by this batch and the
  // ones before it on the socket (batch_link.cpp, add_unreported), as of the last drain.
  std::uint64_t unreported_ = 0;
  // After restart(): refusals that answer messages sent before it (heartbeats queued while the
  // broker was away, each answered "I do not know you" by the new one) are not a new restart.
  // They come before anything the broker says about the reopened batch, and soon.
  bool stale_refusals_ = false;
  Clock::time_point restarted_at_{};
  // keep_alive(): held by the owner's thread except while lent; the keeper only ever try_locks it.
  std::mutex socket_held_;
  bool kept_ = false;
};

}  // namespace fanout::link
