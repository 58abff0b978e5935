// remote_run.cpp: a pool run on remote workers, through one RemoteSession (remote_session.hpp):
// every process is submitted at once, at most `concurrency` of them run at once (the batch's
// maxRunning: the broker holds the rest, so the next command starts as soon as one ends, without
// a round trip to this client), and at most kWindowTasks are at the broker at a time.
#include <signal.h>

#include <mutex>
#include <string>
#include <vector>

#include "process/pool_run.hpp"
#include "remote_session.hpp"

namespace fanout::detail {

namespace {

constexpr std::size_t kWindowTasks = 16384;

class RemoteRun final : public PoolRun {
 public:
  RemoteRun(std::vector<ProcessSpec> specs, std::size_t concurrency, OutputCallback output, std::string endpoint,
            bool stream)
      : PoolRun(std::move(specs), std::move(output)),
        finished_(specs_.size(), false),
        session_(RemoteSession::Options{std::move(endpoint), concurrency, kWindowTasks, stream},
                 [this](std::size_t index, OutputType type, std::string_view text) { deliver(type, text, index); },
                 [this](std::size_t index, ProcessOutcome outcome) { finish(index, std::move(outcome)); }) {
    for (std::size_t i = 0; i < specs_.size(); ++i) session_.submit(i, specs_[i]);
  }

  // The session's destructor cancels what is still out (the broker kills those commands).
  ~RemoteRun() override = default;

  // Processes sent to the broker and not finished: running on a worker, or next in line there.
  std::vector<std::string> running() const override {
    const std::size_t sent = session_.sent();
    const std::lock_guard lock(mutex_);
    std::vector<std::string> keys;
    for (std::size_t i = 0; i < sent && i < specs_.size(); ++i) {
      if (!finished_[i]) keys.push_back(specs_[i].key);
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
  void request_stop(std::chrono::milliseconds) override { session_.stop(); }

 private:
  void finish(std::size_t index, ProcessOutcome outcome) {
    {
      const std::lock_guard lock(mutex_);
      finished_[index] = true;
    }
    settle(index, std::move(outcome));
  }

  mutable std::mutex mutex_;
  std::vector<bool> finished_;  // guarded by mutex_
  RemoteSession session_;       // last: its thread calls into the members above
};

}  // namespace

std::unique_ptr<PoolRun> start_remote(std::vector<ProcessSpec> specs, std::size_t concurrency, OutputCallback output,
                                      const std::string& endpoint) {
  const bool stream = static_cast<bool>(output);
  return std::make_unique<RemoteRun>(std::move(specs), concurrency, std::move(output), endpoint, stream);
}

}  // namespace fanout::detail
