// remote_session.cpp: the session's thread. It alone touches the socket and the jobs in flight;
// other threads only queue submissions and requests under a mutex and wake it through an eventfd.
#include "remote_session.hpp"

#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include <fanout/error.hpp>

#include "batch_link.hpp"
#include "system/event_fd.hpp"
#include "keys.hpp"
#include "transport.hpp"

namespace fanout::detail {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kShellTask = wire::kShellTaskName;
// How long the last messages (cancel, bye) may take to leave when the session ends. Generous: a
// lost cancel would leave commands running; the wait is this long only when the broker is gone.
constexpr auto kLinger = std::chrono::milliseconds(3000);

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

// Writes `spec` as shell task `index` of a window (its batch id is the link's).
void fill_task(wire::Task::Builder task, std::uint32_t index, const ProcessSpec& spec, bool stream) {
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
  if (!spec.avoid_worker.empty()) task.setAvoidWorker(spec.avoid_worker);
  shell.setQuiet(spec.quiet);
  shell.setStream(stream);
}

}  // namespace

class RemoteSession::Engine final : private link::BatchLink::Receiver {
 public:
  Engine(Options options, OnOutput on_output, OnFinished on_finished, OnFailure on_failure)
      : options_(std::move(options)),
        on_output_(std::move(on_output)),
        on_finished_(std::move(on_finished)),
        on_failure_(std::move(on_failure)),
        context_(1),
        socket_(context_, zmq::socket_type::dealer),
        link_(socket_, options_.endpoint,
              link::BatchLink::Header{link::kOpenEnded, 0,
                                      static_cast<std::uint32_t>(std::min<std::size_t>(options_.max_running, link::kOpenEnded)),
                                      false},
              *this) {
    wire::configure_socket(socket_);
    try {
      wire::connect_to_broker(socket_, options_.endpoint);
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
    wake_.notify();
    thread_.join();
  }

  void submit(std::size_t seq, ProcessSpec spec) {
    bool was_empty = false;
    {
      const std::lock_guard lock(mutex_);
      was_empty = submitted_.empty();
      submitted_.push_back(Submitted{seq, std::move(spec)});
    }
    if (was_empty) wake_.notify();
  }

  void stop() {
    {
      const std::lock_guard lock(mutex_);
      stop_requested_ = true;
    }
    wake_.notify();
  }

  std::size_t sent() const noexcept { return sent_.load(std::memory_order_relaxed); }

 private:
  struct Submitted {
    std::size_t seq;
    ProcessSpec spec;
  };

  void loop() {
    // The callbacks run on this thread and may take any time (a pool's output callback is the
    // caller's): the link keeper heartbeats while they do, or the broker would drop the session
    // and its batch, and the jobs would run again.
    link_.keep_alive();
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
    link_.stop_keeping_alive();  // on this thread, which holds the socket
  }

  // One turn of the loop: sends what may go, waits for the broker or a wake-up, handles both.
  void turn(bool stop) {
    if (stop && !cancelled_) cancel();
    if (cancelled_ || failed_) settle_waiting();
    while (!waiting_.empty() && in_flight_.size() < std::max<std::size_t>(options_.max_ahead, 1) && !failed_) {
      send_window();
    }

    if (failed_) {  // only submissions (finished at once) and the end are left: the socket is done
      pollfd wake{wake_.fd(), POLLIN, 0};
      if (::poll(&wake, 1, -1) > 0) wake_.clear();
      return;
    }
    // Before the first window the broker does not know us: nothing to beat, wait for a wake-up.
    if (link_.pump(Clock::time_point::max(), /*awaiting=*/!in_flight_.empty(), wake_.fd())) wake_.clear();
  }

  // Sends the next window: as many waiting jobs as fit in a frame and under max_ahead.
  void send_window() {
    const std::size_t room = std::max<std::size_t>(options_.max_ahead, 1) - in_flight_.size();
    const std::size_t count = link::BatchLink::window_size(std::min(waiting_.size(), room),
                                                           [&](std::size_t i) { return encoded_size(waiting_[i].spec); });
    if (next_index_ + count >= link::kOpenEnded) {
      fail("more jobs than one session can send (" + std::to_string(link::kOpenEnded - 1) + ")");
      return settle_waiting();
    }
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < count; ++i) bytes += encoded_size(waiting_[i].spec);
    const std::uint32_t first = next_index_;
    link_.send_built_window(count, bytes / 8 + count * 32, [&](wire::Task::Builder task, std::size_t i) {
      fill_task(task, first + static_cast<std::uint32_t>(i), waiting_[i].spec, options_.stream);
    });
    // A send that could not go for as long as a silent broker is waited for failed the session,
    // which finished every waiting job already.
    if (failed_) return;
    for (std::size_t i = 0; i < count; ++i) {
      in_flight_.emplace(next_index_++, std::move(waiting_.front()));
      waiting_.pop_front();
    }
    sent_.fetch_add(count, std::memory_order_relaxed);
  }

  void cancel() {
    cancelled_ = true;
    if (link_.opened() && !failed_ && !in_flight_.empty()) link_.cancel();
  }

  // Finishes the jobs that will never be sent, as the session's state says why.
  void settle_waiting() {
    while (!waiting_.empty()) {
      const std::size_t seq = waiting_.front().seq;
      waiting_.pop_front();
      finished(seq, failed_ ? failure(126, failure_message_, "broker " + options_.endpoint)
                                              : failure(128 + SIGTERM, "stopped before it started", "local"));
    }
  }

  void link_failed(ErrorKind, const std::string& message) override { fail(message); }

  // The broker restarted and forgot the session's batch: every job sent and not finished goes
  // again, first, in the order it was submitted (under new indexes).
  void broker_forgot() override {
    for (auto job = in_flight_.rbegin(); job != in_flight_.rend(); ++job) waiting_.push_front(std::move(job->second));
    in_flight_.clear();
    link_.restart(0, 0);
  }

  void fail(const std::string& why) {
    if (failed_) return;
    failed_ = true;
    failure_message_ = why;
    if (on_failure_) {
      const link::BatchLink::Lent lent(link_);
      on_failure_(why);
    }
    auto in_flight = std::move(in_flight_);
    in_flight_.clear();
    for (const auto& [index, job] : in_flight) finished(job.seq, failure(126, why, "broker " + options_.endpoint));
    settle_waiting();
  }

  void output(wire::OutputChunk::Reader chunk) override {
    if (!on_output_) return;
    const auto job = in_flight_.find(chunk.getIndex());
    if (job == in_flight_.end()) return;
    const auto data = chunk.getData();
    const link::BatchLink::Lent lent(link_);
    on_output_(job->second.seq, chunk.getStream() == wire::OutputChunk::Stream::OUT ? OutputType::out : OutputType::err,
               std::string_view(reinterpret_cast<const char*>(data.begin()), data.size()));
  }

  // Job `seq` is done: the caller's callback, with the socket lent meanwhile.
  void finished(std::size_t seq, ProcessOutcome outcome) {
    const link::BatchLink::Lent lent(link_);
    on_finished_(seq, std::move(outcome));
  }

  void result(wire::Result::Reader result) override {
    const auto job = in_flight_.find(result.getIndex());
    if (job == in_flight_.end()) return;
    ProcessOutcome outcome = outcome_of(result);  // may throw (unreadable_result): the job stays
    const std::size_t seq = job->second.seq;
    in_flight_.erase(job);
    finished(seq, std::move(outcome));
  }

  void unreadable_result(std::uint32_t index, const std::string& why) override {
    const auto job = in_flight_.find(index);
    if (job == in_flight_.end()) return;
    const std::size_t seq = job->second.seq;
    in_flight_.erase(job);
    finished(seq, failure(126, "its result could not be read: " + why, "broker " + options_.endpoint));
  }

  // Leaves: cancels what is still out (the broker kills running commands), then says bye, which
  // makes the broker forget the open-ended batch.
  void end() {
    if (!link_.opened()) return;
    if (!cancelled_ && !failed_ && !in_flight_.empty()) link_.cancel();
    link_.bye(kLinger);
  }

  const Options options_;
  const OnOutput on_output_;
  const OnFinished on_finished_;
  const OnFailure on_failure_;
  zmq::context_t context_;
  zmq::socket_t socket_;
  link::BatchLink link_;
  sys::EventFd wake_;

  std::mutex mutex_;
  std::deque<Submitted> submitted_;  // guarded by mutex_: not taken by the thread yet
  bool stop_requested_ = false;      // guarded by mutex_
  bool closing_ = false;             // guarded by mutex_
  std::atomic<std::size_t> sent_{0};

  // The thread's alone.
  std::deque<Submitted> waiting_;                    // taken, not sent yet
  std::map<std::uint32_t, Submitted> in_flight_;  // sent, not finished, by batch index (kept to send again)
  std::uint32_t next_index_ = 0;
  bool cancelled_ = false;
  bool failed_ = false;
  std::string failure_message_;
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
