// remote_run.cpp: a pool run on remote workers. Each process is a task named "fanout.shell" with
// its command in Task.shell; the broker hands them to executors of workers started with
// --allow-shell, one command per executor at a time, at most `concurrency` of the pool at once
// (TaskBatch.maxRunning: the broker holds the rest, so the next command starts as soon as one
// ends, without a round trip to this client). Output comes back as OutputChunk messages while a
// command runs, and whole in its result.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <random>
#include <thread>

#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <zmq.hpp>

#include "process/pool_run.hpp"
#include "transport.hpp"
#include "unique_fd.hpp"

namespace fanout::detail {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kShellTask = "fanout.shell";
constexpr std::size_t kWindowTasks = 16384;
constexpr std::size_t kFrameTasks = 1024;
constexpr std::size_t kFrameBytes = std::size_t{4} << 20;
constexpr auto kHeartbeat = std::chrono::milliseconds(500);
// No word from the broker for this long (it heartbeats every 500 ms) means it is gone.
constexpr auto kBrokerSilence = std::chrono::milliseconds(4000);

std::uint64_t random_batch_id() {
  static thread_local std::mt19937_64 generator{std::random_device{}()};
  std::uint64_t id = 0;
  while (id == 0) id = generator();
  return id;
}

std::size_t encoded_size(const ProcessSpec& spec) {
  std::size_t bytes = 64 + (spec.input ? spec.input->size() : 0);
  if (spec.command) bytes += spec.command->line().size() + spec.command->argv().size() * 16;
  for (const auto& word : spec.command ? spec.command->argv() : std::vector<std::string>{}) bytes += word.size();
  return bytes;
}

class RemoteRun final : public PoolRun {
 public:
  RemoteRun(std::vector<ProcessSpec> specs, std::size_t concurrency, OutputCallback output, std::string endpoint,
            bool stream)
      : PoolRun(std::move(specs), std::move(output)),
        concurrency_(concurrency),
        endpoint_(std::move(endpoint)),
        stream_(stream),
        id_(random_batch_id()),
        context_(1),
        socket_(context_, zmq::socket_type::dealer),
        sent_(specs_.size(), false),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!wake_) throw Error("remote pool: eventfd failed");
    wire::configure_socket(socket_);
    try {
      socket_.connect(endpoint_);
    } catch (const zmq::error_t& error) {
      throw Error("remote pool: cannot connect to broker " + endpoint_ + ": " + error.what());
    }
    thread_ = std::thread([this] { loop(); });
  }

  ~RemoteRun() override {
    if (!all_settled()) request_stop(std::chrono::milliseconds(0));
    if (thread_.joinable()) thread_.join();
  }

  // Processes sent to the broker and not finished: running on a worker, or next in line there.
  std::vector<std::string> running() const override {
    const std::lock_guard lock(control_mutex_);
    std::vector<std::string> keys;
    for (std::size_t i = 0; i < specs_.size(); ++i) {
      if (sent_[i] && !finished_[i]) keys.push_back(specs_[i].key);
    }
    return keys;
  }

  void signal(int signal) override {
    if (signal == SIGTERM || signal == SIGKILL || signal == SIGINT) return request_stop(std::chrono::milliseconds(0));
    throw Error("remote pools take SIGTERM, SIGINT or SIGKILL (which stop them, as stop() does); signal " +
                std::to_string(signal) + " reaches local pools only");
  }

  // The broker stops the executors running the pool's commands (their supervisors kill each
  // command's process group): remote commands get no grace.
  void request_stop(std::chrono::milliseconds) override {
    stop_requested_ = true;
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(wake_.get(), &one, sizeof(one));
  }

 private:
  void loop() {
    const auto total = specs_.size();
    last_heard_ = Clock::now();
    last_beat_ = last_heard_;
    bool cancelled = false;
    while (!all_settled()) {
      while (!cancelled && next_ < total && next_ - settled_here_ < kWindowTasks) send_window();
      zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_.get(), ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 2, kHeartbeat);
      } catch (const zmq::error_t& error) {
        if (error.num() != EINTR) fail_open("the connection to the broker failed: " + std::string(error.what()));
      }
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t count = 0;
        [[maybe_unused]] const auto got = ::read(wake_.get(), &count, sizeof(count));
      }
      drain();
      if (stop_requested_ && !cancelled) {
        cancelled = true;
        send_simple([&](wire::Envelope::Builder envelope) { envelope.initCancel().setBatchId(id_); });
        for (std::size_t i = next_; i < total; ++i) {
          finish(i, failure(128 + SIGTERM, "the pool was stopped before this process started", "local"));
        }
        next_ = total;
      }
      const auto now = Clock::now();
      if (now - last_beat_ >= kHeartbeat) {
        send_simple([](wire::Envelope::Builder envelope) { envelope.initHeartbeat().setSentUnixMs(wire::unix_ms()); });
        last_beat_ = now;
      }
      if (now - last_heard_ > kBrokerSilence) {
        fail_open("no word from the broker at " + endpoint_ + " for " +
                  std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(kBrokerSilence).count()) + " ms");
      }
    }
    send_simple([](wire::Envelope::Builder envelope) { envelope.setBye(); });
    socket_.set(zmq::sockopt::linger, 200);
  }

  void send_window() {
    const std::size_t room = kWindowTasks - (next_ - settled_here_);
    std::size_t count = std::min({kFrameTasks, specs_.size() - next_, room});
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < count; ++i) {
      bytes += encoded_size(specs_[next_ + i]);
      if (bytes > kFrameBytes) {
        count = std::max<std::size_t>(i, 1);
        break;
      }
    }
    wire::OutMessage out(static_cast<unsigned>(64 + bytes / 8 + count * 32));
    auto window = out.envelope().initTasks();
    window.setBatchId(id_);
    window.setTotal(static_cast<std::uint32_t>(specs_.size()));
    window.setMaxRunning(static_cast<std::uint32_t>(concurrency_));
    auto tasks = window.initTasks(static_cast<unsigned>(count));
    for (std::size_t i = 0; i < count; ++i) {
      const ProcessSpec& spec = specs_[next_ + i];
      auto task = tasks[static_cast<unsigned>(i)];
      task.setBatchId(id_);
      task.setIndex(static_cast<std::uint32_t>(next_ + i));
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
      shell.setStream(stream_);
    }
    {
      const std::lock_guard lock(control_mutex_);
      for (std::size_t i = 0; i < count; ++i) sent_[next_ + i] = true;
    }
    next_ += count;
    socket_.send(out.frame(), zmq::send_flags::none);
  }

  template <class Fill>
  void send_simple(Fill fill) {
    wire::OutMessage out(16);
    fill(out.envelope());
    socket_.send(out.frame(), zmq::send_flags::dontwait);
  }

  void drain() {
    zmq::message_t frame;
    while (socket_.recv(frame, zmq::recv_flags::dontwait)) {
      last_heard_ = Clock::now();
      auto message = wire::InMessage::parse(std::move(frame));
      if (!message) continue;
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
        if (chunk.getBatchId() != id_ || chunk.getIndex() >= specs_.size() || finished_[chunk.getIndex()]) return;
        const auto data = chunk.getData();
        deliver(chunk.getStream() == wire::OutputChunk::Stream::OUT ? OutputType::out : OutputType::err,
                std::string_view(reinterpret_cast<const char*>(data.begin()), data.size()), chunk.getIndex());
        return;
      }
      case wire::Envelope::RESULTS:
        for (const auto result : envelope.getResults()) {
          if (result.getBatchId() != id_ || result.getIndex() >= specs_.size()) continue;
          finish(result.getIndex(), outcome_of(result));
        }
        return;
      case wire::Envelope::ACK:
        if (envelope.getAck().getBatchId() == id_ && envelope.getAck().hasRefused()) {
          fail_open(std::string("the broker refused the pool: ") + envelope.getAck().getRefused().getMessage().cStr());
        }
        return;
      case wire::Envelope::ERROR:
        fail_open(std::string("the broker at ") + endpoint_ + " lost the pool: " + envelope.getError().getMessage().cStr());
        return;
      default:
        return;
    }
  }

  static ProcessOutcome failure(int exit_code, const std::string& why, std::string ran_on) {
    ProcessOutcome outcome;
    outcome.exit_code = exit_code;
    outcome.error_output = "fanout: " + why + "\n";
    outcome.ran_on = std::move(ran_on);
    return outcome;
  }

  static ProcessOutcome outcome_of(wire::Result::Reader result) {
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

  void finish(std::size_t index, ProcessOutcome outcome) {
    {
      const std::lock_guard lock(control_mutex_);
      if (finished_[index]) return;
      finished_[index] = true;
    }
    ++settled_here_;
    settle(index, std::move(outcome));
  }

  void fail_open(const std::string& why) {
    for (std::size_t i = 0; i < specs_.size(); ++i) {
      if (!finished_[i]) finish(i, failure(126, why, "broker " + endpoint_));
    }
    next_ = specs_.size();
  }

  const std::size_t concurrency_;
  const std::string endpoint_;
  const bool stream_;
  const std::uint64_t id_;
  zmq::context_t context_;
  zmq::socket_t socket_;
  mutable std::mutex control_mutex_;
  std::vector<bool> sent_;                                  // guarded by control_mutex_
  std::vector<bool> finished_ = std::vector<bool>(sent_.size(), false);  // written under control_mutex_
  std::size_t next_ = 0;
  std::size_t settled_here_ = 0;
  Clock::time_point last_heard_;
  Clock::time_point last_beat_;
  std::atomic<bool> stop_requested_{false};
  UniqueFd wake_;
  std::thread thread_;  // last: starts once everything it uses exists
};

}  // namespace

std::unique_ptr<PoolRun> start_remote(std::vector<ProcessSpec> specs, std::size_t concurrency, OutputCallback output,
                                      const std::string& endpoint) {
  const bool stream = static_cast<bool>(output);
  return std::make_unique<RemoteRun>(std::move(specs), concurrency, std::move(output), endpoint, stream);
}

}  // namespace fanout::detail
