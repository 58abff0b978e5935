// remote_session.cpp: the session's thread. It alone touches the socket and the jobs in flight;
// other threads only queue submissions and requests under a mutex and wake it through an eventfd.
#include "process/remote_session.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "batch_id.hpp"
#include "transport.hpp"
#include "unique_fd.hpp"

namespace fanout::detail {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kShellTask = wire::kShellTaskName;
// TaskBatch.total of the session's batch: open-ended (see the header).
constexpr std::uint32_t kOpenEnded = std::numeric_limits<std::uint32_t>::max();
constexpr std::size_t kFrameTasks = 1024;
constexpr std::size_t kFrameBytes = std::size_t{4} << 20;
constexpr auto kHeartbeat = std::chrono::milliseconds(500);
// No word from the broker for this long (it heartbeats every 500 ms) means it is gone.
constexpr auto kBrokerSilence = std::chrono::milliseconds(4000);
// How long the last messages (cancel, bye) may take to leave when the session ends. Generous: a
// lost cancel would leave commands running; the wait is this long only when the broker is gone.
constexpr int kLingerMs = 3000;

std::size_t encoded_size(const ProcessSpec& spec) {
  std::size_t bytes = 64 + (spec.input ? spec.input->size() : 0) + (spec.path ? spec.path->size() : 0);
  if (spec.command) {
    bytes += spec.command->line().size() + spec.command->argv().size() * 16;
    for (const auto& word : spec.command->argv()) bytes += word.size();
  }
  for (const auto& [name, value] : spec.env) bytes += 16 + name.size() + (value ? value->size() : 0);
  return bytes;
}

ProcessOutcome failure(int exit_code, const std::string& why, std::string ran_on) {
  ProcessOutcome outcome;
  outcome.exit_code = exit_code;
  outcome.error_output = "fanout: " + why + "\n";
  outcome.ran_on = std::move(ran_on);
  return outcome;
}

ProcessOutcome outcome_of(wire::Result::Reader result) {
  std::string ran_on(result.getRanOn().cStr(), result.getRanOn().size());
  if (result.isError()) {
    const auto error = result.getError();
    const bool stopped = error.getKind() == wire::ErrorKind::CANCELLED;
    return failure(stopped ? 128 + SIGKILL : 126, error.getMessage().cStr(), error.getRanOn().cStr());
  }
  if (!result.hasShell()) return failure(126, "the worker sent a result without a shell outcome", std::move(ran_on));
  const auto shell = result.getShell();
  ProcessOutcome outcome;
  outcome.exit_code = shell.getExitCode();
  outcome.signal = shell.getSignal();
  outcome.timed_out = shell.getTimedOut();
  outcome.idle_timed_out = shell.getIdleTimedOut();
  outcome.started = shell.getStarted();
  const auto out = shell.getOutput();
  const auto err = shell.getErrorOutput();
  outcome.output.assign(reinterpret_cast<const char*>(out.begin()), out.size());
  outcome.error_output.assign(reinterpret_cast<const char*>(err.begin()), err.size());
  outcome.ran_on = std::move(ran_on);
  outcome.elapsed = std::chrono::microseconds(result.getElapsedUs());
  return outcome;
}

void fill_task(wire::Task::Builder task, std::uint64_t batch, std::uint32_t index, const ProcessSpec& spec, bool stream) {
  task.setBatchId(batch);
  task.setIndex(index);
  task.setName(capnp::Text::Reader(kShellTask.data(), kShellTask.size()));
  task.setKey(spec.key);
  task.setHasKey(true);
  task.setTimeoutMs(static_cast<std::uint32_t>(spec.timeout.count()));
  auto shell = task.initShell();
  if (spec.command && spec.command->uses_shell()) {
    shell.setUseShell(true);
    shell.setScript(spec.command->line());
  } else if (spec.command) {
    auto argv = shell.initArgv(static_cast<unsigned>(spec.command->argv().size()));
    for (unsigned w = 0; w < argv.size(); ++w) argv.set(w, spec.command->argv()[w]);
  }
  if (spec.path) shell.setWorkingDirectory(*spec.path);
  auto env = shell.initEnv(static_cast<unsigned>(spec.env.size()));
  for (unsigned e = 0; e < env.size(); ++e) {
    env[e].setName(spec.env[e].first);
    if (spec.env[e].second) {
      env[e].setValue(*spec.env[e].second);
    } else {
      env[e].setUnset(true);
    }
  }
  if (spec.input) {
    shell.setHasInput(true);
    shell.setInput(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(spec.input->data()), spec.input->size()));
  }
  shell.setIdleTimeoutMs(static_cast<std::uint32_t>(spec.idle_timeout.count()));
  shell.setQuiet(spec.quiet);
  shell.setStream(stream);
}

}  // namespace

class RemoteSession::Engine {
 public:
  Engine(Options options, OnOutput on_output, OnFinished on_finished, OnFailure on_failure)
      : options_(std::move(options)),
        on_output_(std::move(on_output)),
        on_finished_(std::move(on_finished)),
        on_failure_(std::move(on_failure)),
        id_(random_batch_id()),
        context_(1),
        socket_(context_, zmq::socket_type::dealer),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!wake_) throw Error("remote session: eventfd failed");
    wire::configure_socket(socket_);
    try {
      socket_.connect(options_.endpoint);
    } catch (const zmq::error_t& error) {
      throw Error("cannot connect to broker " + options_.endpoint + ": " + error.what());
    }
    thread_ = std::thread([this] { loop(); });
  }

  ~Engine() {
    {
      const std::lock_guard lock(mutex_);
      closing_ = true;
    }
    wake();
    thread_.join();
  }

  void submit(std::size_t seq, ProcessSpec spec) {
    bool was_empty = false;
    {
      const std::lock_guard lock(mutex_);
      was_empty = submitted_.empty();
      submitted_.push_back(Submitted{seq, std::move(spec)});
    }
    if (was_empty) wake();
  }

  void stop() {
    {
      const std::lock_guard lock(mutex_);
      stop_requested_ = true;
    }
    wake();
  }

  std::size_t sent() const noexcept { return sent_.load(std::memory_order_relaxed); }

 private:
  struct Submitted {
    std::size_t seq;
    ProcessSpec spec;
  };

  void wake() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(wake_.get(), &one, sizeof(one));
  }

  void loop() {
    for (;;) {
      bool stop = false;
      {
        const std::lock_guard lock(mutex_);
        if (closing_) break;
        stop = stop_requested_;
        if (waiting_.empty()) {
          waiting_.swap(submitted_);
        } else {
          for (auto& job : submitted_) waiting_.push_back(std::move(job));
          submitted_.clear();
        }
      }
      try {
        turn(stop);
      } catch (const zmq::error_t& error) {
        fail("the connection to the broker failed: " + std::string(error.what()));
      }
    }
    end();
  }

  // One turn of the loop: sends what may go, waits for the broker or a wake-up, handles both.
  void turn(bool stop) {
    if (stop && !cancelled_) cancel();
    if (cancelled_ || failed_) settle_waiting();
    while (!waiting_.empty() && in_flight_.size() < std::max<std::size_t>(options_.max_ahead, 1)) send_window();

    if (failed_) {  // only submissions (finished at once) and the end are left: the socket is done
      pollfd wake{wake_.get(), POLLIN, 0};
      if (::poll(&wake, 1, -1) > 0) {
        std::uint64_t count = 0;
        [[maybe_unused]] const auto got = ::read(wake_.get(), &count, sizeof(count));
      }
      return;
    }
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_.get(), ZMQ_POLLIN, 0}};
    long timeout_ms = -1;  // before the first window: the broker does not know us, nothing to beat
    if (opened_) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(last_beat_ + kHeartbeat - Clock::now());
      timeout_ms = std::max<long>(0, static_cast<long>(left.count()));
    }
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(timeout_ms));
    } catch (const zmq::error_t& error) {
      if (error.num() != EINTR) throw;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      std::uint64_t count = 0;
      [[maybe_unused]] const auto got = ::read(wake_.get(), &count, sizeof(count));
    }
    drain();
    if (!opened_ || failed_) return;
    const auto now = Clock::now();
    if (now - last_beat_ >= kHeartbeat) {
      send_simple([](wire::Envelope::Builder envelope) { envelope.initHeartbeat().setSentUnixMs(wire::unix_ms()); });
      last_beat_ = now;
    }
    if (!in_flight_.empty() && now - last_heard_ > kBrokerSilence) {
      fail("no word from the broker at " + options_.endpoint + " for " +
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(kBrokerSilence).count()) + " ms");
    }
  }

  // Sends the next window: as many waiting jobs as fit in a frame and under max_ahead.
  void send_window() {
    const std::size_t room = std::max<std::size_t>(options_.max_ahead, 1) - in_flight_.size();
    std::size_t count = std::min({kFrameTasks, waiting_.size(), room});
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < count; ++i) {
      bytes += encoded_size(waiting_[i].spec);
      if (bytes > kFrameBytes) {
        count = std::max<std::size_t>(i, 1);
        break;
      }
    }
    if (next_index_ + count >= kOpenEnded) {
      fail("more jobs than one session can send (" + std::to_string(kOpenEnded - 1) + ")");
      return settle_waiting();
    }
    wire::OutMessage out(static_cast<unsigned>(64 + bytes / 8 + count * 32));
    auto window = out.envelope().initTasks();
    window.setBatchId(id_);
    window.setTotal(kOpenEnded);
    window.setMaxRunning(static_cast<std::uint32_t>(std::min<std::size_t>(options_.max_running, kOpenEnded)));
    auto tasks = window.initTasks(static_cast<unsigned>(count));
    for (std::size_t i = 0; i < count; ++i) {
      fill_task(tasks[static_cast<unsigned>(i)], id_, next_index_, waiting_.front().spec, options_.stream);
      in_flight_.emplace(next_index_++, waiting_.front().seq);
      waiting_.pop_front();
    }
    if (!opened_ || in_flight_.size() == count) last_heard_ = Clock::now();  // silence counts from here
    if (!opened_) last_beat_ = Clock::now();
    opened_ = true;
    socket_.send(out.frame(), zmq::send_flags::none);
    sent_.fetch_add(count, std::memory_order_relaxed);
  }

  template <class Fill>
  void send_simple(Fill fill) {
    wire::OutMessage out(16);
    fill(out.envelope());
    socket_.send(out.frame(), zmq::send_flags::dontwait);
  }

  void cancel() {
    cancelled_ = true;
    if (opened_ && !failed_ && !in_flight_.empty()) {
      send_simple([&](wire::Envelope::Builder envelope) { envelope.initCancel().setBatchId(id_); });
    }
  }

  // Finishes the jobs that will never be sent, as the session's state says why.
  void settle_waiting() {
    while (!waiting_.empty()) {
      const std::size_t seq = waiting_.front().seq;
      waiting_.pop_front();
      on_finished_(seq, failed_ ? failure(126, failure_message_, "broker " + options_.endpoint)
                                : failure(128 + SIGTERM, "stopped before it started", "local"));
    }
  }

  void fail(const std::string& why) {
    if (failed_) return;
    failed_ = true;
    failure_message_ = why;
    if (on_failure_) on_failure_(why);
    auto in_flight = std::move(in_flight_);
    in_flight_.clear();
    for (const auto& [index, seq] : in_flight) on_finished_(seq, failure(126, why, "broker " + options_.endpoint));
    settle_waiting();
  }

  void drain() {
    zmq::message_t frame;
    while (socket_.recv(frame, zmq::recv_flags::dontwait)) {
      last_heard_ = Clock::now();
      auto message = wire::InMessage::parse(std::move(frame));
      if (!message || failed_) continue;
      try {
        handle(message->envelope());
      } catch (const kj::Exception&) {
        // A field of the wrong kind: the broker never sends those; nothing to settle from it.
      }
    }
  }

  void handle(wire::Envelope::Reader envelope) {
    switch (envelope.which()) {
      case wire::Envelope::OUTPUT: {
        const auto chunk = envelope.getOutput();
        if (chunk.getBatchId() != id_ || !on_output_) return;
        const auto job = in_flight_.find(chunk.getIndex());
        if (job == in_flight_.end()) return;
        const auto data = chunk.getData();
        on_output_(job->second, chunk.getStream() == wire::OutputChunk::Stream::OUT ? OutputType::out : OutputType::err,
                   std::string_view(reinterpret_cast<const char*>(data.begin()), data.size()));
        return;
      }
      case wire::Envelope::RESULTS:
        for (const auto result : envelope.getResults()) {
          if (result.getBatchId() != id_) continue;
          const auto job = in_flight_.find(result.getIndex());
          if (job == in_flight_.end()) continue;
          const std::size_t seq = job->second;
          in_flight_.erase(job);
          on_finished_(seq, outcome_of(result));
        }
        return;
      case wire::Envelope::ACK:
        if (envelope.getAck().getBatchId() == id_ && envelope.getAck().hasRefused()) {
          fail(std::string("the broker refused the jobs: ") + envelope.getAck().getRefused().getMessage().cStr());
        }
        return;
      case wire::Envelope::ERROR:
        fail(std::string("the broker at ") + options_.endpoint + " lost the jobs: " + envelope.getError().getMessage().cStr());
        return;
      default:
        return;
    }
  }

  // Leaves: cancels what is still out (the broker kills running commands), then says bye, which
  // makes the broker forget the open-ended batch.
  void end() {
    if (!opened_) return;
    try {
      if (!cancelled_ && !failed_ && !in_flight_.empty()) {
        send_simple([&](wire::Envelope::Builder envelope) { envelope.initCancel().setBatchId(id_); });
      }
      send_simple([](wire::Envelope::Builder envelope) { envelope.setBye(); });
      socket_.set(zmq::sockopt::linger, kLingerMs);
    } catch (const zmq::error_t&) {
      // Nothing more to do: the broker drops a silent client after its liveness.
    }
  }

  const Options options_;
  const OnOutput on_output_;
  const OnFinished on_finished_;
  const OnFailure on_failure_;
  const std::uint64_t id_;
  zmq::context_t context_;
  zmq::socket_t socket_;
  UniqueFd wake_;

  std::mutex mutex_;
  std::deque<Submitted> submitted_;  // guarded by mutex_: not taken by the thread yet
  bool stop_requested_ = false;      // guarded by mutex_
  bool closing_ = false;             // guarded by mutex_
  std::atomic<std::size_t> sent_{0};

  // The thread's alone.
  std::deque<Submitted> waiting_;             // taken, not sent yet
  std::map<std::uint32_t, std::size_t> in_flight_;  // sent, not finished: batch index -> seq
  std::uint32_t next_index_ = 0;
  bool opened_ = false;     // a window went out: the broker knows the batch
  bool cancelled_ = false;
  bool failed_ = false;
  std::string failure_message_;
  Clock::time_point last_heard_;
  Clock::time_point last_beat_;
  std::thread thread_;  // last: starts once everything it uses exists
};

RemoteSession::RemoteSession(Options options, OnOutput on_output, OnFinished on_finished, OnFailure on_failure)
    : engine_(std::make_unique<Engine>(std::move(options), std::move(on_output), std::move(on_finished),
                                       std::move(on_failure))) {}

RemoteSession::~RemoteSession() = default;

void RemoteSession::submit(std::size_t seq, ProcessSpec spec) { engine_->submit(seq, std::move(spec)); }

void RemoteSession::stop() { engine_->stop(); }

std::size_t RemoteSession::sent() const noexcept { return engine_->sent(); }

}  // namespace fanout::detail
