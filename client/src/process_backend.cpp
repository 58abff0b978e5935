// process_backend.cpp: the "process" driver. Batches travel as Cap'n Proto windows over ZeroMQ to
// a broker, which spreads them over worker executors; results come back by (batch, index) and are
// decoded in place into the caller's storage (docs/protocol.md, "Client rules").
//
// Remote mode: FANOUT_BROKER=tcp://host:port. Local mode (no configuration): the first batch
// starts an embedded broker on a thread of this program and a worker pool made by re-executing
// the program itself (local_pool.hpp).
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fanout/init.hpp>

#include <capnp/serialize.h>
#include <kj/exception.h>
#include <spdlog/spdlog.h>

#include "backends.hpp"
#include "batch_link.hpp"
#include "broker_queries.hpp"
#include "deferred_endpoint.hpp"
#include "local_pool.hpp"
#include "program.hpp"
#include "keys.hpp"
#include "transport.hpp"
#include "units.hpp"
#include "wire_kinds.hpp"

namespace fanout::detail {

namespace {

using Clock = std::chrono::steady_clock;
using link::BatchLink;

// Tasks in flight per batch: enough to keep every executor's credit full on a large pool, and the
// bound on client and broker memory for a batch of any size.
constexpr std::size_t kWindowTasks = 16384;
// A batch of up to this many tasks goes in one window, which the broker splits over idle
// executors; larger ones go in windows of link::kFrameTasks.
constexpr std::size_t kSingleFrameBatch = 256;
// Units go in windows of this many. The broker forwards a window of units whole to one executor
// (a share of it would be copied into a new message, unit by unit): a unit in a window of its own
// goes to an idle executor as soon as it is written, while the next ones are written (windows of
// 32 units of 64 slots took 30% longer on two cores than units of 625 each in its own window).
constexpr std::size_t kUnitsPerFrame = 1;
// How long defer waits for the broker's receipt when the driver sets no timeout.
constexpr auto kDeferAckTimeout = std::chrono::seconds(30);
// A deferred batch without an ack this long in local mode: is the local service still there? It
// is gone when it does not answer a status question within kServiceProbe (its loop answers in
// microseconds; a journal's fsync may hold it up a while).
constexpr auto kServiceSilence = std::chrono::seconds(4);
constexpr auto kServiceProbe = std::chrono::seconds(2);
// With a cancellation token, how often a waiting batch looks at it.
constexpr auto kCancelCheck = std::chrono::milliseconds(50);

// Adds slot `slot` of `batch` to its window as the batch's task `index`.
void encode_task(wire::WindowWriter& window, const Batch& batch, std::size_t slot, std::size_t index,
                 std::uint32_t timeout_ms) {
  const Job job = batch.job(slot);
  window.add(static_cast<std::uint32_t>(index), job.task, job.key, job.args, timeout_ms);
}

// The words slot `index` takes in a window: its Task struct, name, key and arguments. What a
// window's size is limited by (BatchLink::window_size), and what its message is sized by, so that
// it stays one segment: one that spills into a second is read through far pointers and a locked
// segment table by the broker and the executors, for every task in it.
constexpr std::size_t kTaskStruct = wire::Task::_capnpPrivate::dataWordSize + wire::Task::_capnpPrivate::pointerCount;
constexpr std::size_t kValueStruct = wire::Value::_capnpPrivate::dataWordSize + wire::Value::_capnpPrivate::pointerCount;

std::size_t text_words(std::size_t bytes) { return (bytes + 1 + sizeof(capnp::word) - 1) / sizeof(capnp::word); }

std::size_t task_words(const Batch& batch, std::size_t index) {
  const Job job = batch.job(index);
  const std::size_t arguments = job.args != nullptr ? job.args->encoded_size() : 0;
  return kTaskStruct + text_words(job.task.size()) + (job.key != nullptr ? text_words(job.key->size()) : 0) +
         arguments / sizeof(capnp::word);
}

// At most the same for a unit of `count` slots of the task `plan` names, none of whose arguments
// take more than the plan's largest: one Task, a list of their arguments (their scalars laid out
// together take less). From the plan, so that a unit costs no second pass over its slots.
std::size_t unit_words(const UnitPlan& plan, std::size_t count) {
  return kTaskStruct + text_words(plan.name.size()) + kValueStruct + 1 +
         count * (kValueStruct + plan.largest_args / sizeof(capnp::word));
}

// ZeroMQ sockets are single-threaded; batches run from several threads each lease their own.
class SocketPool {
 public:
  SocketPool(zmq::context_t& context, std::string endpoint) : context_(context), endpoint_(std::move(endpoint)) {}

  class Lease {
   public:
    Lease(SocketPool& pool, std::unique_ptr<zmq::socket_t> socket) : pool_(pool), socket_(std::move(socket)) {}
    ~Lease() {
      if (socket_) pool_.give_back(std::move(socket_));
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    zmq::socket_t& operator*() const noexcept { return *socket_; }
    // Closes the socket instead of giving it back, dropping whatever it has not sent yet (linger
    // 0): a message that timed out must not reach the broker later through another batch's socket.
    void discard() noexcept { socket_.reset(); }

   private:
    SocketPool& pool_;
    std::unique_ptr<zmq::socket_t> socket_;
  };

  Lease lease() {
    {
      const std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        auto socket = std::move(idle_.back());
        idle_.pop_back();
        return Lease(*this, std::move(socket));
      }
    }
    auto socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
    wire::configure_socket(*socket);
    wire::connect_to_broker(*socket, endpoint_);
    return Lease(*this, std::move(socket));
  }

  const std::string& endpoint() const noexcept { return endpoint_; }

 private:
  void give_back(std::unique_ptr<zmq::socket_t> socket) {
    const std::lock_guard lock(mutex_);
    idle_.push_back(std::move(socket));
  }

  zmq::context_t& context_;
  std::string endpoint_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<zmq::socket_t>> idle_;
};

// One batch run to its end: sends windows as results free room, settles slots as results arrive.
class BatchRun final : private BatchLink::Receiver, private CallbackCover {
 public:
  // `health` says why the workers behind the broker cannot run anything (local mode), if so.
  using Health = std::function<std::optional<std::string>()>;

  // Runs the slots of `positions` (every slot of the batch, in units or not; or those of units
  // that had to be split, after a first run that began at `started`). `plan`: how the batch goes;
  // its task (when it has one) is the one whose slots' run times teach quick_names.
  BatchRun(Batch& batch, Results& results, const RunOptions& options, zmq::socket_t& socket, const std::string& where,
           Health health, Positions positions, const UnitPlan& plan, Clock::time_point started = Clock::now())
      : batch_(batch),
        results_(results),
        options_(options),
        health_(std::move(health)),
        positions_(std::move(positions)),
        plan_(plan),
        started_(started),
        link_(socket, where,
              BatchLink::Header{static_cast<std::uint32_t>(positions_.count()),
                                static_cast<std::uint32_t>(deadline_left(options, started).count()),
                                // The cap holds at the broker, over every executor of every worker.
                                static_cast<std::uint32_t>(std::min<std::size_t>(options.max_concurrency, UINT32_MAX)),
                                false},
              *this) {}

  ~BatchRun() { results_.cover_callbacks(nullptr); }
  BatchRun(const BatchRun&) = delete;
  BatchRun& operator=(const BatchRun&) = delete;

  // Whether the link to the broker failed during the batch (unreachable, refused, unreadable).
  bool link_failed() const noexcept { return link_.failed(); }

  // What is left of the batch's deadline for a run that begins now (1 ms at least), 0 for none.
  static std::chrono::milliseconds deadline_left(const RunOptions& options, Clock::time_point started) {
    if (options.deadline.count() <= 0) return std::chrono::milliseconds(0);
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(started + options.deadline - Clock::now());
    return std::max(left, std::chrono::milliseconds(1));
  }

  void go() {
    const std::size_t total = positions_.count();
    const std::size_t unit = std::max<std::size_t>(positions_.unit(), 1);
    settled_base_ = done();  // a run of split units' slots begins after other slots settled
    target_ = settled_base_ + positions_.slots();
    // A broker that stops answering must not hang the caller past the batch's deadline.
    std::optional<Clock::time_point> give_up;
    if (options_.deadline.count() > 0) give_up = started_ + options_.deadline + std::chrono::seconds(2);
    // The caller's callbacks run on this thread, from inside pump(), and may take any time: the
    // link keeper heartbeats while they do.
    if (results_.calls_back()) {
      link_.keep_alive();
      results_.cover_callbacks(this);
    }

    try {
      while (done() < target_) {
        while (in_flight() + unit <= kWindowTasks && (resend_ < resend_end_ || next_ < total)) {
          const std::size_t room = (kWindowTasks - in_flight()) / unit;  // positions
          if (resend_ < resend_end_) {
            resend_window(room);
          } else {
            const std::size_t frame = positions_.unit() > 0     ? kUnitsPerFrame
                                      : total <= kSingleFrameBatch ? total
                                                                   : link::kFrameTasks;
            send_window(std::min({frame, total - next_, room}));
          }
          // Results that came meanwhile are taken now, between windows: taken only once every
          // window is out, they would wait, and their slots' callbacks with them, and the
          // executors would sit idle at the end while the calling thread read them all. After
          // the last window the wait below takes them: a look now costs five system calls, over
          // 1 µs each on a virtual machine, and a batch of three tasks takes about 170 µs.
          if (resend_ >= resend_end_ && next_ >= total) break;
          link_.pump(Clock::now(), /*awaiting=*/true);
          if (forgotten_ || link_.failed() || results_.cancelled()) break;
        }
        if (done() >= target_) break;

        // With a cancellation token, wake up now and then to look at it. What the pump between
        // windows saw (a restarted broker, a cancellation) is acted on at once.
        const bool act_now = forgotten_ || results_.cancelled();
        link_.pump(act_now ? Clock::now()
                           : Clock::now() + (options_.cancelled ? kCancelCheck : wire::kHeartbeatInterval),
                   /*awaiting=*/true);
        if (forgotten_) restart();
        if (results_.cancelled()) {
          link_.cancel();  // the broker drops what is queued and stops what runs
          fail_open(ErrorKind::cancelled, "the batch was cancelled");
          break;
        }
        if (const auto broken = health_ ? health_() : std::nullopt) {
          fail_open(ErrorKind::worker_lost, *broken);
        } else if (give_up && Clock::now() > *give_up) {
          // Past the deadline with a broker that has been silent for longer than a live one ever
          // is: it is away (dead, or cut off), and the slots say so rather than "timeout".
          if (const auto silence = link_.silence(); silence > wire::kPeerLiveness) {
            fail_open(ErrorKind::unreachable, "the broker at " + link_.where() + " has not answered for " +
                                                  std::to_string(silence.count()) + " ms, past the batch's deadline of " +
                                                  std::to_string(options_.deadline.count()) + " ms");
          } else {
            fail_open(ErrorKind::timeout, "the batch exceeded its deadline of " + std::to_string(options_.deadline.count()) +
                                              " ms (the broker did not report in time)");
          }
        }
      }
    } catch (...) {
      // The caller's progress callback threw, or the transport failed: the broker must not keep
      // running what nobody waits for.
      link_.cancel();
      throw;
    }
    if (results_.first_failure()) link_.cancel();  // stop what may still run for a batch that failed early
    // A broker never heard from is not a task's failure but the caller's setup (logistics): one
    // fanout::Error naming the endpoint, from run() and settle() alike.
    if (never_reached_) throw Error(*never_reached_);
    if (!plan_.name.empty() && learnt_slots_ > 0) quick_names::learn(plan_.name, learnt_us_, learnt_slots_);
  }

  void lend() noexcept override { link_.lend(); }
  void take_back() noexcept override { link_.take_back(); }

  // Slots of units that failed whole (their executor died, or one that knows nothing of units
  // refused them) and still have no outcome: they go again one by one, so that only a slot that
  // fails fails.
  std::vector<std::size_t> to_split() const {
    std::vector<std::size_t> slots;
    for (const std::size_t position : split_) {
      const std::size_t first = positions_.first_slot(position);
      for (std::size_t slot = first; slot < first + positions_.slot_count(position); ++slot) {
        if (!results_.settled(slot)) slots.push_back(slot);
      }
    }
    return slots;
  }

 private:
  // Slots with an outcome, or waiting to be split.
  std::size_t done() const { return results_.settled_count() + split_slots_; }
  // Slots sent to the broker (since it last forgot the batch) that have no outcome yet.
  std::size_t in_flight() const { return sent_ - (done() - settled_base_); }

  // Whether position `position` needs nothing more from the broker.
  bool position_done(std::size_t position) const {
    return results_.settled(positions_.first_slot(position)) || awaits_split(position);
  }
  // Whether the slots of unit `position` left without an outcome are to go again alone.
  bool awaits_split(std::size_t position) const {
    return std::find(split_.begin(), split_.end(), position) != split_.end();
  }

  std::size_t position_words(std::size_t position) const {
    const std::size_t first = positions_.first_slot(position);
    return positions_.unit() == 0 ? task_words(batch_, first) : unit_words(plan_, positions_.slot_count(position));
  }

  // Sends the next tasks, up to `count` of them: as many as fit in one window.
  void send_window(std::size_t count) {
    const std::size_t first = next_;
    std::size_t words = 0;  // of the tasks looked at: the chosen ones, and perhaps one more
    count = BatchLink::window_size(count, [&](std::size_t i) {
      const std::size_t task = position_words(first + i);
      words += task;
      return task * sizeof(capnp::word);
    });
    next_ += count;
    send_tasks(count, words, [first](std::size_t i) { return first + i; });
  }

  // After the broker forgot the batch: the next tasks sent before and still without an outcome.
  void resend_window(std::size_t room) {
    std::vector<std::size_t> indexes;
    // Units go one a window, as send_window sends them, so that they spread over executors.
    const std::size_t most = std::min(room, positions_.unit() > 0 ? kUnitsPerFrame : link::kFrameTasks);
    for (; resend_ < resend_end_ && indexes.size() < most; ++resend_) {
      if (!position_done(resend_)) indexes.push_back(resend_);
    }
    if (indexes.empty()) return;
    std::size_t words = 0;
    const std::size_t count = BatchLink::window_size(indexes.size(), [&](std::size_t i) {
      const std::size_t task = position_words(indexes[i]);
      words += task;
      return task * sizeof(capnp::word);
    });
    if (count < indexes.size()) resend_ = indexes[count];  // the rest go in the next window
    send_tasks(count, words, [&indexes](std::size_t i) { return indexes[i]; });
  }

  // Sends positions position_of(0..count) in one window, whose message takes about `hint_words`.
  template <class PositionOf>
  void send_tasks(std::size_t count, std::size_t hint_words, PositionOf position_of) {
    const auto timeout_ms = static_cast<std::uint32_t>(options_.timeout.count());
    for (std::size_t i = 0; i < count; ++i) sent_ += positions_.slot_count(position_of(i));
    const std::size_t bytes = link_.send_window(count, hint_words, [&](wire::WindowWriter& window, std::size_t i) {
      const std::size_t position = position_of(i);
      const std::size_t first = positions_.first_slot(position);
      if (positions_.unit() == 0) return encode_task(window, batch_, first, position, timeout_ms);
      unit_args_.clear();
      for (std::size_t slot = first; slot < first + positions_.slot_count(position); ++slot) {
        unit_args_.push_back(batch_.job(slot).args);
      }
      // Scalars laid out together when every slot holds them (and no peer refused that); else a
      // tuple per slot.
      if (laid_out_units::allowed() &&
          window.add_scalar_args(static_cast<std::uint32_t>(position), batch_.job(first).task, unit_args_)) {
        if (laid_out_.empty()) laid_out_.resize(positions_.count());
        laid_out_[position] = true;
      } else {
        window.add_unit(static_cast<std::uint32_t>(position), batch_.job(first).task, unit_args_);
      }
    });
    if (bytes > wire::max_frame_bytes()) {  // one task's arguments alone are larger than that
      for (std::size_t i = 0; i < count; ++i) {
        // A unit's slots may each fit alone (plan_units keeps units far below a frame).
        if (positions_.unit() > 0) {
          split(position_of(i), positions_.slot_count(position_of(i)));
          continue;
        }
        fail_position(position_of(i), FailureInfo{ErrorKind::bad_message, "",
                                                  "its arguments take " + std::to_string(bytes) + " bytes, more than the " +
                                                      std::to_string(wire::max_frame_bytes() >> 20) +
                                                      " MiB a broker accepts in one message",
                                                  "client"});
      }
    }
  }

  // `slots` slots of unit `position` are to go again one by one (to_split), once this run ends.
  void split(std::size_t position, std::size_t slots) {
    split_.push_back(position);
    split_slots_ += slots;
  }

  void fail_position(std::size_t position, const FailureInfo& failure) {
    const std::size_t first = positions_.first_slot(position);
    for (std::size_t slot = first; slot < first + positions_.slot_count(position); ++slot) {
      results_.failure(slot, failure);
    }
  }

  // The broker restarted (or dropped this client) and forgot the batch: every task sent and still
  // without an outcome goes again, with what is left of the deadline; outcomes already here stay.
  void restart() {
    forgotten_ = false;
    std::uint32_t deadline_left = 0;
    if (options_.deadline.count() > 0) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(started_ + options_.deadline - Clock::now());
      if (left.count() <= 0) {
        return fail_open(ErrorKind::timeout, "the batch exceeded its deadline of " +
                                                 std::to_string(options_.deadline.count()) +
                                                 " ms while its broker restarted");
      }
      deadline_left = static_cast<std::uint32_t>(left.count());
    }
    // What the broker is not sent again counts as settled before: positions sent that need
    // nothing more.
    std::size_t settled_before = 0;
    for (std::size_t position = 0; position < next_; ++position) settled_before += position_done(position) ? 1 : 0;
    link_.restart(static_cast<std::uint32_t>(settled_before), deadline_left);
    resend_ = 0;
    resend_end_ = next_;
    sent_ = 0;
    settled_base_ = done();
  }

  void broker_forgot() override { forgotten_ = true; }

  void result(wire::Result::Reader result) override {
    const std::size_t position = result.getIndex();
    if (position >= positions_.count()) return;
    if (positions_.unit() > 0) return unit_result(position, result);
    const std::size_t slot = positions_.first_slot(position);
    if (result.isValue()) {
      learn(result, 1);
      // Where it ran is read only to name a value that does not decode.
      results_.value(slot, wire::wrap(result.getValue()), [&]() -> std::string_view {
        const auto ran_on = result.getRanOn();
        return {ran_on.cStr(), ran_on.size()};
      });
    } else {
      const auto error = result.getError();
      results_.failure(slot, FailureInfo{from_wire(error.getKind()), error.getRemoteType(), error.getMessage(),
                                         error.getRanOn()});
    }
  }

  // A unit's outcome: each slot's value or error; or the unit's error, which fails every slot or
  // has them split.
  void unit_result(std::size_t position, wire::Result::Reader result) {
    if (position_done(position)) return;  // a second outcome
    const std::size_t first = positions_.first_slot(position);
    const std::size_t count = positions_.slot_count(position);
    // Read once, before any slot settles: a reader counts every read of a text or list against its
    // traversal limit, and a unit whose every slot fails names where it ran in each failure. A
    // result that runs out of it (an exception from here) fails the unit's unsettled slots
    // (unreadable_result).
    const auto ran_on_text = result.getRanOn();
    const std::string_view where(ran_on_text.cStr(), ran_on_text.size());
    const auto ran_on = [where] { return where; };
    if (!result.isValue()) {
      const auto error = result.getError();
      const ErrorKind kind = from_wire(error.getKind());
      // What no slot would escape run alone: the batch's end, a task unknown where it runs.
      if (kind == ErrorKind::cancelled || kind == ErrorKind::timeout || kind == ErrorKind::unreachable ||
          kind == ErrorKind::unknown_task) {
        return fail_position(position, FailureInfo{kind, error.getRemoteType(), error.getMessage(), error.getRanOn()});
      }
      // Scalars laid out together that a peer could not read: one older than Task.scalarArgs
      // (an executor, or a broker that copied the unit without them) is on the way.
      if (kind == ErrorKind::bad_message && position < laid_out_.size() && laid_out_[position]) {
        laid_out_units::refuse(where);
      }
      return split(position, count);
    }
    const bool scalars = result.hasScalarValues() || result.hasScalarKinds();  // values laid out together
    const auto value = result.getValue();
    const auto bits = result.getScalarValues();
    const auto kinds = result.getScalarKinds();
    const bool fits = scalars ? bits.size() == count && kinds.size() == count
                              : value.isList() && value.getList().size() == count;
    if (!fits) {
      return fail_position(position, FailureInfo{ErrorKind::bad_message, "",
                                                 "the result of a unit of " + std::to_string(count) +
                                                     " slots does not hold as many values",
                                                 std::string(ran_on())});
    }
    learn(result, count);
    const std::vector<bool> not_run = slot_errors(first, count, result, where);
    std::size_t left = 0;
    for (std::size_t i = 0; i < not_run.size(); ++i) left += not_run[i] && !results_.settled(first + i) ? 1 : 0;
    if (scalars) {
      scalar_values(first, bits, kinds, not_run, ran_on);
    } else {
      std::optional<SequenceReader> values;
      try {
        values = wire::wrap(value).as_list([] { return std::string("a unit's values"); });
      } catch (const Error& unreadable) {  // e.g. a list of zero-sized elements claiming its count
        return fail_position(position, FailureInfo{ErrorKind::bad_message, "",
                                                   std::string("its unit's values could not be read: ") + unreadable.what(),
                                                   std::string(where)});
      }
      results_.values(first, *values, not_run, ran_on);
    }
    if (left > 0) split(position, left);
  }

  // A unit's slots that failed get their failures; returns which ones the executor did not run
  // (`refused`: the unit's values filled half a message), which go again alone and stay without
  // an outcome until then (empty: none).
  // Every one is read before any is applied: one that cannot be read fails the unit's slots
  // (unreadable_result), none left behind settled while the others wait.
  std::vector<bool> slot_errors(std::size_t first, std::size_t count, wire::Result::Reader result, std::string_view where) {
    std::vector<bool> not_run;
    std::vector<std::pair<std::size_t, FailureInfo>> failures;
    for (const auto failed : result.getSlotErrors()) {
      if (failed.getSlot() >= count) continue;
      const auto error = failed.getError();
      if (error.getKind() == wire::ErrorKind::REFUSED) {
        not_run.resize(count);
        not_run[failed.getSlot()] = true;
        continue;
      }
      // Where the unit ran, read once (unit_result), rather than each slot's own copy of it.
      failures.emplace_back(first + failed.getSlot(), FailureInfo{from_wire(error.getKind()), error.getRemoteType(),
                                                                  error.getMessage(), std::string(where)});
    }
    for (auto& [slot, failure] : failures) results_.failure(slot, std::move(failure));
    return not_run;
  }

  // A unit's values laid out together (Result.scalarValues), read in place: every slot not failed
  // or skipped has a bool or a number.
  void scalar_values(std::size_t first, capnp::List<std::uint64_t>::Reader bits, capnp::List<std::uint8_t>::Reader kinds,
                     const std::vector<bool>& skip, FunctionRef<std::string_view()> ran_on) {
    for (unsigned i = 0; i < bits.size(); ++i) {
      if ((!skip.empty() && skip[i]) || results_.settled(first + i)) continue;
      const std::uint8_t kind = kinds[i];
      if (kind < static_cast<std::uint8_t>(ValueKind::boolean) || kind > static_cast<std::uint8_t>(ValueKind::float64)) {
        results_.failure(first + i, FailureInfo{ErrorKind::bad_message, "",
                                                "its unit's result holds a value of kind " + std::to_string(kind) +
                                                    " for it, and no error",
                                                std::string(ran_on())});
        continue;
      }
      results_.scalar(first + i, Scalar{static_cast<ValueKind>(kind), bits[i]}, ran_on);
    }
  }

  // A task's run time, for quick_names.
  void learn(wire::Result::Reader result, std::size_t slots) {
    learnt_us_ += result.getElapsedUs();
    learnt_slots_ += slots;
  }

  void unreadable_result(std::uint32_t index, const std::string& why) override {
    if (index >= positions_.count()) return;
    // A unit's slots may have settled in part before its result turned out unreadable: the others
    // fail (a slot settled keeps its outcome), unless they already wait to go again alone.
    if (positions_.unit() > 0 ? awaits_split(index) : position_done(index)) return;
    fail_position(index, FailureInfo{ErrorKind::bad_message, "", "its result could not be read: " + why,
                                     "broker " + link_.where()});
  }

  void link_failed(ErrorKind kind, const std::string& message) override {
    if (kind == ErrorKind::unreachable && !link_.heard()) {
      never_reached_ = "cannot reach the broker at " + link_.where() + ": no answer within " +
                       std::to_string(wire::kBrokerSilence.count()) +
                       " ms; " + wire::no_answer_hint(link_.where());
    }
    fail_open(kind, message);
  }

  void fail_open(ErrorKind kind, const std::string& message) {
    results_.fail_unsettled(kind, message, "broker " + link_.where());
  }

  Batch& batch_;
  Results& results_;
  const RunOptions& options_;
  std::optional<std::string> never_reached_;  // why the broker was given up before it ever answered
  Health health_;
  const Positions positions_;
  const UnitPlan& plan_;
  const Clock::time_point started_;
  BatchLink link_;
  std::size_t target_ = 0;        // done() once every slot of this run has an outcome
  std::size_t next_ = 0;          // positions [0, next_) have been sent at least once
  std::size_t sent_ = 0;          // slots sent since the broker last (re)opened the batch
  std::size_t settled_base_ = 0;  // done() then
  std::size_t resend_ = 0;        // after a restart: positions [resend_, resend_end_) to send again
  std::size_t resend_end_ = 0;
  bool forgotten_ = false;        // the broker said it does not know the batch (handled after pump)
  std::vector<std::size_t> split_;  // positions of units to split
  std::size_t split_slots_ = 0;     // their slots
  std::vector<const Payload*> unit_args_;  // a unit's arguments, while it is written
  std::vector<bool> laid_out_;             // the units that went with their scalars laid out together (empty: none)
  std::uint64_t learnt_us_ = 0;     // run time of the slots with a value so far
  std::size_t learnt_slots_ = 0;
};

Error too_large_to_defer(std::size_t tasks, std::size_t bytes, bool at_least) {
  return Error("the deferred batch of " + std::to_string(tasks) + " tasks takes " + (at_least ? "at least " : "") +
               std::to_string(bytes) + " bytes, more than the " + std::to_string(wire::max_frame_bytes() >> 20) +
               " MiB a broker accepts in one message (a deferred batch travels whole); defer it in smaller batches");
}

// The broker's answer to a deferred batch, as it arrives.
class DeferredAnswer final : public BatchLink::Receiver {
 public:
  std::optional<std::string> receipt;  // the batch is journaled and the broker's
  std::optional<std::string> refusal;  // it was refused or could not be taken
  bool ran_as_ordinary = false;        // a broker that knows nothing of deferred batches ran it

  void result(wire::Result::Reader) override { ran_as_ordinary = true; }
  void unreadable_result(std::uint32_t, const std::string&) override { ran_as_ordinary = true; }
  // An ack without a receipt is not the one that says the batch is durable: wait on.
  void acknowledged(wire::Ack::Reader ack) override {
    if (ack.getReceipt().size() > 0) receipt = ack.getReceipt().cStr();
  }
  // The broker could not read the message (a frame above its own size limit...). Other
  // complaints (an unknown peer's heartbeat) concern earlier use of this socket.
  bool complaint_is_fatal(wire::TaskError::Reader error) override {
    return error.getKind() == wire::ErrorKind::BAD_MESSAGE;
  }
  // It restarted before it took the batch (or before it said so): the batch goes again.
  void broker_forgot() override { forgotten = true; }
  void link_failed(ErrorKind, const std::string& message) override { refusal = message; }
  bool forgotten = false;
};

// Sends `batch` whole, as one deferred `tasks` window, over a socket of `sockets`, and waits for
// the broker's ack: its receipt, or its refusal thrown as fanout::Error. Waits at most the
// driver's timeout (kDeferAckTimeout without one) and then throws, since the batch may or may not
// have been taken. Sends no heartbeats: the broker knows this client only once it has accepted.
//
// `service_restarted`, in local mode: a local service stops by itself once idle, and may do so
// between the probe that found it and this window's arrival, which it then never reads. After
// kServiceSilence without an ack the caller's function asks it; when it no longer answers, the
// function starts another and returns true, and the window goes again on a fresh socket (the old
// one closed, so the first copy cannot arrive as well).
Receipt submit_deferred(const Batch& batch, const RunOptions& options, SocketPool& sockets,
                        const std::function<bool()>& service_restarted = {}) {
  const std::size_t total = batch.size();
  const std::string& where = sockets.endpoint();
  if (total > UINT32_MAX) throw Error("a deferred batch holds at most " + std::to_string(UINT32_MAX) + " tasks");
  // What the arguments, names and keys alone take: refuses most oversized batches before encoding.
  std::size_t payload = 0;
  for (std::size_t i = 0; i < total; ++i) {
    const Job job = batch.job(i);
    payload += job.task.size() + (job.key != nullptr ? job.key->size() : 0) +
               (job.args != nullptr ? job.args->encoded_size() : 0);
  }
  if (payload > wire::max_frame_bytes()) throw too_large_to_defer(total, payload, true);

  const auto limit = options.timeout.count() > 0 ? options.timeout : std::chrono::milliseconds(kDeferAckTimeout);
  const auto timeout_ms = static_cast<std::uint32_t>(options.timeout.count());
  const auto deadline = Clock::now() + limit;
  for (bool again = true; again;) {
    again = false;
    auto socket = sockets.lease();
    DeferredAnswer answer;
    BatchLink link(*socket, where, BatchLink::Header{static_cast<std::uint32_t>(total), timeout_ms, 0, true}, answer);
    const auto send = [&] {
      return link.send_window(
          total, total * (wire::Task::_capnpPrivate::dataWordSize + wire::Task::_capnpPrivate::pointerCount + 2) +
                     payload / sizeof(capnp::word),
          [&](wire::WindowWriter& window, std::size_t i) { encode_task(window, batch, i, i, timeout_ms); }, wire::max_frame_bytes());
    };
    const std::size_t sent_bytes = send();
    if (sent_bytes > wire::max_frame_bytes()) throw too_large_to_defer(total, sent_bytes, false);
    auto ask_service_at = Clock::now() + kServiceSilence;

    while (!again) {
      if (answer.receipt) return Receipt(*answer.receipt, "process", total);
      if (answer.refusal) throw Error(*answer.refusal);
      if (answer.ran_as_ordinary) {
        link.cancel();
        throw Error("the broker at " + where +
                    " ran the deferred batch as an ordinary one (it does not support deferred batches; upgrade it); "
                    "the batch was cancelled");
      }
      const auto now = Clock::now();
      if (now >= deadline) {
        socket.discard();  // the batch must not reach the broker later from an idle socket
        throw Error("the broker at " + where + " did not acknowledge the deferred batch of " + std::to_string(total) +
                    " tasks within " + std::to_string(limit.count()) +
                    " ms; it may or may not have been accepted (a broker that took it runs it)");
      }
      if (service_restarted && now >= ask_service_at) {
        ask_service_at = now + kServiceSilence;
        if (service_restarted()) {
          socket.discard();
          again = true;
          continue;
        }
      }
      link.pump(std::min({deadline, ask_service_at, now + wire::kHeartbeatInterval}), /*awaiting=*/false);
      if (answer.forgotten) {  // the broker restarted without taking it: at least once, so send it again
        answer.forgotten = false;
        link.restart(0, timeout_ms);
        send();
      }
    }
  }
  throw Error("unreachable");  // the loop returns or throws
}

class ProcessBackend final : public Backend {
 public:
  std::string_view name() const noexcept override { return "process"; }
  bool runs_plain_callables() const noexcept override { return false; }

  // In local mode the pool starts as soon as the program first asks for this driver, not at its
  // first batch: re-executing the program and connecting its executors takes some 30-40 ms, which
  // the program's own work meanwhile hides (as multiprocessing.Pool and Dask's LocalCluster start
  // their processes when made). A batch that comes at once waits for the start as it did.
  ProcessBackend() {
    if (!initialized() || remote_broker() || std::getenv(kWorkerRoleVariable) != nullptr) return;
    if (const char* worker = std::getenv("FANOUT_WORKER"); worker != nullptr && *worker != '\0') return;
    try {
      (void)connect();
    } catch (const std::exception&) {
      // The first batch tries again and fails with the reason.
    }
  }

  ~ProcessBackend() override { shut_down(); }

  // Sockets before the pool (whose broker they talk to) and the pool before the context.
  void shut_down() {
    const std::lock_guard lock(mutex_);
    sockets_.reset();
    deferred_sockets_.clear();
    pool_.reset();
  }

  Receipt defer(Batch& batch, const RunOptions& options) override {
    refuse_recursive_start();
    SocketPool& sockets = deferred_sockets();
    if (remote_broker()) return submit_deferred(batch, options, sockets);
    return submit_deferred(batch, options, sockets, [&] {
      if (link::query_counts(context_, sockets.endpoint(), kServiceProbe)) return false;
      (void)deferred_endpoint();  // starts the service again, on the same endpoint
      return true;
    });
  }

  void execute(Batch& batch, Results& results, const RunOptions& options) override {
    SocketPool& sockets = connect();
    auto socket = sockets.lease();
    BatchRun::Health health;
    if (pool_) health = [pool = pool_.get()] { return pool->broken(); };
    const UnitPlan plan = plan_units(batch, options);
    const auto started = Clock::now();
    const auto run_slots = [&](Positions positions) {
      BatchRun run(batch, results, options, *socket, sockets.endpoint(), health, std::move(positions), plan, started);
      try {
        run.go();
      } catch (...) {
        // A socket whose link failed may be one ZeroMQ gave up on (a refused handshake is never
        // tried again): the next batch gets a fresh connection rather than this one.
        if (run.link_failed()) socket.discard();
        throw;
      }
      if (run.link_failed()) {
        socket.discard();
        return std::vector<std::size_t>{};  // every slot has its outcome: the link's failure
      }
      return run.to_split();
    };
    auto split = run_slots(plan.unit > 0 ? Positions::units(batch.size(), plan.unit) : Positions::each_slot(batch.size()));
    // Units that failed whole, their slots one by one: the broker sees a batch of its own. A
    // cancelled batch's slots stay as they are (cancelled).
    if (!split.empty() && !results.cancelled()) run_slots(Positions::listed(std::move(split)));
  }

 private:
  // Starts what the first batch needs: nothing in remote mode but a socket; the embedded broker
  // and the local worker pool in local mode.
  SocketPool& connect() {
    const std::lock_guard lock(mutex_);
    if (sockets_) return *sockets_;
    refuse_recursive_start();
    if (const auto remote = remote_broker()) {
      sockets_ = std::make_unique<SocketPool>(context_, *remote);
    } else {
      if (!initialized()) {
        throw Error(
            "the 'process' driver starts its local workers by re-executing this program, which needs "
            "fanout::init(argc, argv) as the first line of main(); add it (or set FANOUT_BROKER to use "
            "a standalone broker, or pick the fork or sync driver)");
      }
      // The pool's threads log through spdlog, whose registry is a static destroyed at exit.
      // Making sure the registry exists first, then registering the pool's shutdown with
      // atexit, stops the pool before the registry goes (exit runs both in reverse order).
      (void)spdlog::default_logger_raw();
      pool_ = std::make_unique<LocalPool>(context_);
      sockets_ = std::make_unique<SocketPool>(context_, pool_->client_endpoint());
      static ProcessBackend* self = nullptr;
      self = this;
      std::atexit([] {
        if (self != nullptr) self->shut_down();
      });
    }
    return *sockets_;
  }

  // Where deferred batches go: the remote broker in remote mode; in local mode not the embedded
  // broker, which dies with this program, but the per-user service of deferred_endpoint().
  SocketPool& deferred_sockets() {
    const std::string endpoint = deferred_endpoint();  // FANOUT_BROKER, else the local service
    const std::lock_guard lock(mutex_);
    auto& sockets = deferred_sockets_[endpoint];  // never erased while the backend lives: leases refer to it
    if (!sockets) sockets = std::make_unique<SocketPool>(context_, endpoint);
    return *sockets;
  }

  // A local worker is this program re-executed; fanout::init diverts it into the worker before
  // main() goes on. Reaching a batch in such a process means main() never called fanout::init:
  // stop here, loudly, rather than spawn workers of workers.
  static void refuse_recursive_start() {
    if (std::getenv(kWorkerRoleVariable) == nullptr) return;
    std::fprintf(stderr,
                 "fanout: this process was started as a local fanout worker, but main() never called "
                 "fanout::init(argc, argv); add it as the first line of main()\n");
    std::fflush(stderr);
    std::_Exit(kForgotInitExitCode);
  }

  zmq::context_t context_;
  std::mutex mutex_;
  std::unique_ptr<LocalPool> pool_;
  std::unique_ptr<SocketPool> sockets_;
  std::map<std::string, std::unique_ptr<SocketPool>> deferred_sockets_;  // by endpoint
};

}  // namespace

std::shared_ptr<Backend> make_process_backend() { return std::make_shared<ProcessBackend>(); }

}  // namespace fanout::detail
