// job_engine.cpp: the local engine (a ChildTable driven by the tool's own poll loop: no thread, no
// hand-off per job) and the remote engine (one RemoteSession for the whole run, reporting through
// a queue and an eventfd that the poll loop watches).
#include "job_engine.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
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
#include "system/event_fd.hpp"
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

  void start(std::size_t seq, JobSpec job) override {
    spec_.command.emplace(job.command);
    spec_.timeout = job.timeout;
    spec_.input = std::move(job.input);
    commands_.insert_or_assign(seq, std::move(job.command));
    children_.start(seq, spec_, *environment_);  // may end the job at once (cannot start)
    spec_.input.reset();
  }

  std::size_t running() const override { return children_.running(); }

  // The pid is the group's leader and is not reaped before handle() runs on this same thread, so
  // the group cannot have been reused by another process.
  bool stop(std::size_t seq, std::chrono::milliseconds grace) override {
    const auto pid = children_.pid_of(seq);
    if (!pid) return false;
    ::kill(-*pid, SIGTERM);
    kills_due_.emplace_back(seq, Clock::now() + grace);
    return true;
  }

  void stop_all(std::chrono::milliseconds grace) override { children_.stop_all(grace); }

  Clock::time_point prepare(std::vector<pollfd>& fds) override {
    auto until = children_.prepare(fds);
    for (const auto& [seq, when] : kills_due_) until = std::min(until, when);
    return until;
  }

  void handle(const std::vector<pollfd>& fds) override {
    children_.handle(fds, 0);
    if (kills_due_.empty()) return;
    const auto now = Clock::now();
    std::erase_if(kills_due_, [&](const std::pair<std::size_t, Clock::time_point>& due) {
      if (due.second > now) return false;
      if (const auto pid = children_.pid_of(due.first)) ::kill(-*pid, SIGKILL);
      return true;
    });
  }

 private:
  void ended(std::size_t seq, detail::ProcessOutcome outcome) {
    auto found = commands_.find(seq);
    std::string command = std::move(found->second);
    commands_.erase(found);
    // A KILL still due belongs to this run of the job, not to a retry under the same seq.
    if (!kills_due_.empty()) std::erase_if(kills_due_, [seq](const auto& due) { return due.first == seq; });
    on_finished_(seq, ProcessResult({}, ProcessCommand(std::move(command)), std::move(outcome)));
  }

  OnOutput on_output_;
  OnFinished on_finished_;
  std::shared_ptr<const detail::Environment> environment_;
  detail::ProcessSpec spec_;  // reused: only command and timeout change from job to job
  std::unordered_map<std::size_t, std::string> commands_;  // of the jobs running
  std::vector<std::pair<std::size_t, Clock::time_point>> kills_due_;  // stop(): KILL at that time
  detail::ChildTable children_;  // last: its destructor kills and reaps before the rest goes
};

// ---- remote -----------------------------------------------------------------------------------

// Every job goes through one RemoteSession (one socket, one thread, one broker batch whose
// maxRunning is -j); its callbacks post events to a queue that the loop drains when the eventfd
// it polls says there is something.
class RemoteEngine final : public JobEngine {
 public:
  RemoteEngine(OnOutput on_output, OnFinished on_finished, bool stream_output, std::string broker,
               std::size_t concurrency, RemoteEnvironment environment)
      : on_output_(std::move(on_output)),
        on_finished_(std::move(on_finished)),
        broker_(std::move(broker)),
        environment_(std::move(environment)),
        wake_() {
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

  void start(std::size_t seq, JobSpec job) override {
    detail::ProcessSpec spec;
    spec.command.emplace(job.command);
    spec.timeout = job.timeout;
    spec.input = std::move(job.input);
    spec.env = environment_;
    spec.avoid_worker = std::move(job.avoid_worker);
    commands_.insert_or_assign(seq, std::move(job.command));
    session_->submit(seq, std::move(spec));
  }

  std::size_t running() const override { return commands_.size(); }

  // The protocol cancels whole batches only.
  bool stop(std::size_t /*seq*/, std::chrono::milliseconds /*grace*/) override { return false; }

  // Remote jobs get no grace: the broker has the executors that run them replaced.
  void stop_all(std::chrono::milliseconds /*grace*/) override { session_->stop(); }

  Clock::time_point prepare(std::vector<pollfd>& fds) override {
    fds.push_back(pollfd{wake_.fd(), POLLIN, 0});
    return Clock::time_point::max();
  }

  void handle(const std::vector<pollfd>& /*fds*/) override {
    wake_.clear();
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
    if (was_empty) wake_.notify();
  }

  OnOutput on_output_;
  OnFinished on_finished_;
  const std::string broker_;
  const RemoteEnvironment environment_;
  sys::EventFd wake_;
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
                                         bool stream_output, std::string broker, std::size_t concurrency,
                                         RemoteEnvironment environment) {
  return std::make_unique<RemoteEngine>(std::move(on_output), std::move(on_finished), stream_output,
                                        std::move(broker), concurrency, std::move(environment));
}

}  // namespace fanout::tool
