// job_engine.cpp: the local engine (a ChildTable driven by the tool's own poll loop: no thread, no
// hand-off per job) and the remote engine (a thread per slot, each running one remote Process at a
// time and reporting through a queue and an eventfd that the poll loop watches).
#include "job_engine.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>

#include "process/children.hpp"
#include "unique_fd.hpp"

namespace fanout::tool {

namespace {

// ---- local ------------------------------------------------------------------------------------

class LocalEngine final : public JobEngine {
 public:
  LocalEngine(OnOutput on_output, OnFinished on_finished, bool stream_output)
      : on_output_(std::move(on_output)),
        on_finished_(std::move(on_finished)),
        environment_(detail::Environment::capture()),
        children_(stream_output ? detail::ChildTable::OnOutput([this](std::size_t seq, OutputType type,
                                                                      std::string_view text) {
          on_output_(seq, type, text);
        })
                                : detail::ChildTable::OnOutput{},
                  [this](std::size_t seq, detail::ProcessOutcome outcome) { ended(seq, std::move(outcome)); }) {}

  void start(std::size_t seq, std::string command, std::chrono::milliseconds timeout) override {
    spec_.command.emplace(command);
    spec_.timeout = timeout;
    commands_.emplace(seq, std::move(command));
    children_.start(seq, spec_, *environment_);  // may end the job at once (cannot start)
  }

  std::size_t running() const override { return children_.running(); }

  void stop_all(std::chrono::milliseconds grace) override { children_.stop_all(grace); }

  Clock::time_point prepare(std::vector<pollfd>& fds) override { return children_.prepare(fds); }

  void handle(const std::vector<pollfd>& fds) override { children_.handle(fds, 0); }

 private:
  void ended(std::size_t seq, detail::ProcessOutcome outcome) {
    auto found = commands_.find(seq);
    std::string command = std::move(found->second);
    commands_.erase(found);
    on_finished_(seq, ProcessResult({}, ProcessCommand(std::move(command)), std::move(outcome)));
  }

  OnOutput on_output_;
  OnFinished on_finished_;
  std::shared_ptr<const detail::Environment> environment_;
  detail::ProcessSpec spec_;  // reused: only command and timeout change from job to job
  std::unordered_map<std::size_t, std::string> commands_;  // of the jobs running
  detail::ChildTable children_;  // last: its destructor kills and reaps before the rest goes
};

// ---- remote -----------------------------------------------------------------------------------

class RemoteEngine final : public JobEngine {
 public:
  RemoteEngine(OnOutput on_output, OnFinished on_finished, bool stream_output, std::string broker,
               std::size_t concurrency)
      : on_output_(std::move(on_output)),
        on_finished_(std::move(on_finished)),
        stream_output_(stream_output),
        broker_(std::move(broker)),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!wake_) throw std::system_error(errno, std::generic_category(), "eventfd");
    for (std::size_t i = 0; i < concurrency; ++i) threads_.emplace_back([this] { slot(); });
  }

  ~RemoteEngine() override {
    {
      const std::lock_guard lock(mutex_);
      closing_ = true;
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (auto& thread : threads_) thread.join();
  }

  void start(std::size_t seq, std::string command, std::chrono::milliseconds timeout) override {
    {
      const std::lock_guard lock(mutex_);
      work_.push_back(Work{seq, std::move(command), timeout});
    }
    ++running_;
    work_cv_.notify_one();
  }

  std::size_t running() const override { return running_; }

  void stop_all(std::chrono::milliseconds grace) override {
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
      grace_ = grace;
    }
    work_cv_.notify_all();
  }

  Clock::time_point prepare(std::vector<pollfd>& fds) override {
    fds.push_back(pollfd{wake_.get(), POLLIN, 0});
    return Clock::time_point::max();
  }

  void handle(const std::vector<pollfd>& /*fds*/) override {
    std::uint64_t count = 0;
    [[maybe_unused]] const auto got = ::read(wake_.get(), &count, sizeof(count));
    std::deque<Event> events;
    {
      const std::lock_guard lock(mutex_);
      events.swap(events_);
    }
    for (auto& event : events) {
      if (auto* output = std::get_if<Output>(&event)) {
        on_output_(output->seq, output->type, output->text);
      } else if (auto* finished = std::get_if<Finished>(&event)) {
        --running_;
        on_finished_(finished->seq, std::move(finished->result));
      } else {
        throw Error(std::get<Failure>(event).message);
      }
    }
  }

 private:
  struct Work {
    std::size_t seq;
    std::string command;
    std::chrono::milliseconds timeout;
  };
  struct Output {
    std::size_t seq;
    OutputType type;
    std::string text;
  };
  struct Finished {
    std::size_t seq;
    ProcessResult result;
  };
  struct Failure {  // logistics (no broker, remote pools unavailable): ends the whole run
    std::string message;
  };
  using Event = std::variant<Output, Finished, Failure>;

  // How often a slot looks whether the run is being stopped while its process runs.
  static constexpr auto kStopCheck = std::chrono::milliseconds(50);

  void post(Event event) {
    bool was_empty = false;
    {
      const std::lock_guard lock(mutex_);
      was_empty = events_.empty();
      events_.push_back(std::move(event));
    }
    if (was_empty) {
      const std::uint64_t one = 1;
      [[maybe_unused]] const auto written = ::write(wake_.get(), &one, sizeof(one));
    }
  }

  void slot() {
    for (;;) {
      Work work;
      {
        std::unique_lock lock(mutex_);
        work_cv_.wait(lock, [this] { return closing_ || !work_.empty(); });
        if (work_.empty()) return;
        work = std::move(work_.front());
        work_.pop_front();
      }
      try {
        PendingProcess pending;
        pending.broker(broker_);
        if (work.timeout.count() > 0) pending.timeout(work.timeout);
        OutputCallback output;
        if (stream_output_) {
          output = [this, seq = work.seq](OutputType type, std::string_view text, const std::string&) {
            post(Output{seq, type, std::string(text)});
          };
        }
        InvokedProcess process = pending.start(ProcessCommand(work.command), std::move(output));
        std::optional<ProcessResult> result;
        while (!result && !process.wait_for(kStopCheck)) {
          std::chrono::milliseconds grace{0};
          {
            const std::lock_guard lock(mutex_);
            if (!stopping_) continue;
            grace = grace_;
          }
          result = process.stop(grace);
        }
        if (!result) result = process.wait();
        post(Finished{work.seq, std::move(*result)});
      } catch (const std::exception& error) {
        post(Failure{std::string("cannot run jobs on broker ") + broker_ + ": " + error.what()});
      }
    }
  }

  OnOutput on_output_;
  OnFinished on_finished_;
  const bool stream_output_;
  const std::string broker_;
  detail::UniqueFd wake_;
  std::size_t running_ = 0;  // the loop's thread only

  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::deque<Work> work_;      // guarded by mutex_
  std::deque<Event> events_;   // guarded by mutex_
  bool stopping_ = false;      // guarded by mutex_
  bool closing_ = false;       // guarded by mutex_
  std::chrono::milliseconds grace_{200};  // guarded by mutex_
  std::vector<std::thread> threads_;  // last: they start once everything they use exists
};

}  // namespace

std::unique_ptr<JobEngine> local_engine(JobEngine::OnOutput on_output, JobEngine::OnFinished on_finished,
                                        bool stream_output) {
  return std::make_unique<LocalEngine>(std::move(on_output), std::move(on_finished), stream_output);
}

std::unique_ptr<JobEngine> remote_engine(JobEngine::OnOutput on_output, JobEngine::OnFinished on_finished,
                                         bool stream_output, std::string broker, std::size_t concurrency) {
  return std::make_unique<RemoteEngine>(std::move(on_output), std::move(on_finished), stream_output,
                                        std::move(broker), concurrency);
}

}  // namespace fanout::tool
