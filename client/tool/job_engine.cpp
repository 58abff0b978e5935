// job_engine.cpp: the local engine (a ChildTable driven by the tool's own poll loop: no thread, no
// hand-off per job) and the remote engine (one RemoteSession for the whole run, reporting through
// a queue and an eventfd that the poll loop watches).
#include "job_engine.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <variant>

#include "child_table.hpp"
#include "remote_session.hpp"
#include "system/unique_fd.hpp"

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

// Every job goes through one RemoteSession (one socket, one thread, one broker batch whose
// maxRunning is -j); its callbacks post events to a queue that the loop drains when the eventfd
// it polls says there is something.
class RemoteEngine final : public JobEngine {
 public:
  RemoteEngine(OnOutput on_output, OnFinished on_finished, bool stream_output, std::string broker,
               std::size_t concurrency)
      : on_output_(std::move(on_output)),
        on_finished_(std::move(on_finished)),
        broker_(std::move(broker)),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!wake_) throw std::system_error(errno, std::generic_category(), "eventfd");
    detail::RemoteSession::OnOutput output;
    if (stream_output) {
      output = [this](std::size_t seq, OutputType type, std::string_view text) {
        post(Output{seq, type, std::string(text)});
      };
    }
    // The loop bounds what it hands over (-j plus its lookahead); the session need not.
    session_.emplace(detail::RemoteSession::Options{broker_, concurrency, std::numeric_limits<std::size_t>::max(),
                                                    stream_output},
                     std::move(output),
                     [this](std::size_t seq, detail::ProcessOutcome outcome) { post(Finished{seq, std::move(outcome)}); },
                     [this](const std::string& message) { post(Failure{message}); });
  }

  // The session goes first (its thread posts into the members below): with jobs outstanding it
  // cancels them at the broker; either way it says bye.
  ~RemoteEngine() override { session_.reset(); }

  void start(std::size_t seq, std::string command, std::chrono::milliseconds timeout) override {
    detail::ProcessSpec spec;
    spec.command.emplace(command);
    spec.timeout = timeout;
    commands_.emplace(seq, std::move(command));
    session_->submit(seq, std::move(spec));
  }

  std::size_t running() const override { return commands_.size(); }

  // Remote jobs get no grace: the broker has the executors that run them replaced.
  void stop_all(std::chrono::milliseconds /*grace*/) override { session_->stop(); }

  Clock::time_point prepare(std::vector<pollfd>& fds) override {
    fds.push_back(pollfd{wake_.get(), POLLIN, 0});
    return Clock::time_point::max();
  }

  void handle(const std::vector<pollfd>& /*fds*/) override {
    std::uint64_t count = 0;
    [[maybe_unused]] const auto got = ::read(wake_.get(), &count, sizeof(count));
    {
      const std::lock_guard lock(mutex_);
      handling_.swap(events_);
    }
    for (auto& event : handling_) {
      if (auto* output = std::get_if<Output>(&event)) {
        on_output_(output->seq, output->type, output->text);
      } else if (auto* finished = std::get_if<Finished>(&event)) {
        auto found = commands_.find(finished->seq);
        if (found == commands_.end()) continue;
        ProcessCommand command(std::move(found->second));
        commands_.erase(found);
        on_finished_(finished->seq, ProcessResult({}, std::move(command), std::move(finished->outcome)));
      } else {
        const std::string message = std::get<Failure>(event).message;
        handling_.clear();
        throw Error("cannot run jobs on broker " + broker_ + ": " + message);
      }
    }
    handling_.clear();
  }

 private:
  struct Output {
    std::size_t seq;
    OutputType type;
    std::string text;
  };
  struct Finished {
    std::size_t seq;
    detail::ProcessOutcome outcome;
  };
  struct Failure {  // logistics (no broker, the broker lost the batch): ends the whole run
    std::string message;
  };
  using Event = std::variant<Output, Finished, Failure>;

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

  OnOutput on_output_;
  OnFinished on_finished_;
  const std::string broker_;
  sys::UniqueFd wake_;
  std::unordered_map<std::size_t, std::string> commands_;  // the loop's thread only: jobs handed over
  std::deque<Event> handling_;                             // the loop's thread only

  std::mutex mutex_;
  std::deque<Event> events_;  // guarded by mutex_
  std::optional<detail::RemoteSession> session_;  // last: its thread uses everything above
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
