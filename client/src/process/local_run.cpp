// local_run.cpp: a pool run on this machine. One thread per started pool runs a poll loop over
// its children (ChildTable) and a wake-up eventfd through which the caller's thread asks for
// signal() and stop().
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <system_error>
#include <thread>

#include "child_table.hpp"
#include "process/pool_run.hpp"
#include "system/event_fd.hpp"
#include "system/os_error.hpp"
#include "system/poll_timeout.hpp"

namespace fanout::detail {

namespace {

using Clock = std::chrono::steady_clock;

class LocalRun final : public PoolRun {
 public:
  LocalRun(std::vector<ProcessSpec> specs, std::size_t concurrency, OutputCallback output)
      : PoolRun(std::move(specs), std::move(output)),
        concurrency_(concurrency == 0 ? specs_.size() : concurrency),
        environment_(Environment::capture()) {
    thread_ = std::thread([this] { loop(); });
  }

  ~LocalRun() override {
    if (thread_.joinable()) {
      request_stop(kDestroyGrace);
      thread_.join();
    }
  }

  std::vector<std::string> running() const override {
    const std::lock_guard lock(control_mutex_);
    std::vector<std::size_t> slots = running_;
    std::sort(slots.begin(), slots.end());
    std::vector<std::string> keys;
    for (const std::size_t slot : slots) keys.push_back(specs_[slot].key);
    return keys;
  }

  void signal(int signal) override {
    {
      const std::lock_guard lock(control_mutex_);
      signals_.push_back(signal);
    }
    wake_.notify();
  }

  void request_stop(std::chrono::milliseconds grace) override {
    {
      const std::lock_guard lock(control_mutex_);
      if (!stop_grace_ || grace < *stop_grace_) stop_grace_ = grace;
    }
    wake_.notify();
  }

 private:
  static constexpr auto kDestroyGrace = std::chrono::seconds(2);

  void loop() {
    ChildTable children([this](std::size_t slot, OutputType type, std::string_view text) { deliver(type, text, slot); },
                        [this](std::size_t slot, ProcessOutcome outcome) { ended(slot, std::move(outcome)); });
    std::vector<pollfd> fds;
    bool stopping = false;
    std::size_t next = 0;
    while (!all_settled()) {
      while (!stopping && next < specs_.size() && children.running() < concurrency_) {
        children.start(next, specs_[next], *environment_);
        ++next;
        publish_running(children);
      }
      if (stopping) {
        for (; next < specs_.size(); ++next) {
          ProcessOutcome outcome;
          outcome.exit_code = 128 + SIGTERM;
          outcome.error_output = "fanout: the pool was stopped before this process started\n";
          outcome.ran_on = "local";
          settle(next, std::move(outcome));
        }
      }
      if (all_settled()) break;

      fds.clear();
      fds.push_back(pollfd{wake_.fd(), POLLIN, 0});
      const auto until = children.prepare(fds);
      if (::poll(fds.data(), fds.size(), sys::poll_timeout_ms(until)) < 0 && errno != EINTR) {
        sys::throw_os_error("poll of the local pool");
      }
      if (fds[0].revents != 0) {
        wake_.clear();
        std::vector<int> signals;
        std::optional<std::chrono::milliseconds> grace;
        {
          const std::lock_guard lock(control_mutex_);
          signals.swap(signals_);
          grace = std::exchange(stop_grace_, std::nullopt);
        }
        for (const int signal : signals) children.signal_all(signal);
        if (grace) {
          stopping = true;
          children.stop_all(*grace);
        }
      }
      children.handle(fds, 1);
      publish_running(children);
    }
    publish_running(children);
  }

  // Out of running() before its result is visible: a caller whose wait() returned must not see it
  // still running.
  void ended(std::size_t slot, ProcessOutcome outcome) {
    {
      const std::lock_guard lock(control_mutex_);
      std::erase(running_, slot);
    }
    settle(slot, std::move(outcome));
  }

  void publish_running(const ChildTable& children) {
    auto slots = children.running_slots();
    const std::lock_guard lock(control_mutex_);
    running_ = std::move(slots);
  }

  const std::size_t concurrency_;
  const std::shared_ptr<const Environment> environment_;
  sys::EventFd wake_;
  mutable std::mutex control_mutex_;
  std::vector<std::size_t> running_;  // guarded by control_mutex_
  std::vector<int> signals_;          // guarded by control_mutex_
  std::optional<std::chrono::milliseconds> stop_grace_;  // guarded by control_mutex_
  std::thread thread_;  // last: starts once everything it uses exists
};

}  // namespace

std::unique_ptr<PoolRun> start_local(std::vector<ProcessSpec> specs, std::size_t concurrency, OutputCallback output) {
  return std::make_unique<LocalRun>(std::move(specs), concurrency, std::move(output));
}

}  // namespace fanout::detail
