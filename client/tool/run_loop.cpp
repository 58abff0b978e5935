// run_loop.cpp: run(), the one poll loop of `fanout run`. It takes each job's arguments from the
// inputs as they come (job_inputs.hpp, or --pipe's chunks), starts a job whenever a slot is free
// (after --delay), retries failed jobs (--retries), stops jobs over their --timeout, hands output
// to the printer (job_printer.hpp), writes the joblog and --results, applies --halt, draws the
// progress line, and turns SIGINT/SIGTERM/SIGHUP into stopping every job (the jobs run in process
// groups of their own, so a terminal's Ctrl-C would not reach them otherwise).
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <fanout/error.hpp>

#include "job_engine.hpp"
#include "job_inputs.hpp"
#include "job_printer.hpp"
#include "joblog.hpp"
#include "pipe_chunks.hpp"
#include "progress.hpp"
#include "replacement.hpp"
#include "results_dir.hpp"
#include "run_command.hpp"
#include "run_options.hpp"
#include "system/poll_timeout.hpp"
#include "system/unique_fd.hpp"

namespace fanout::tool {

namespace {

using Clock = std::chrono::steady_clock;

// Between TERM and KILL when --halt now, a signal or a --timeout N% stops running jobs (GNU
// parallel's --termseq also starts with TERM and 200 ms).
constexpr auto kStopGrace = std::chrono::milliseconds(200);
constexpr std::size_t kRemoteDefaultInFlight = 16;
// Remote jobs handed to the broker beyond -j, so that it always has the next one queued and starts
// it the moment a running one ends (no round trip through this process): twice -j, at least 64,
// at most 4096.
constexpr std::size_t kRemoteMinAhead = 64;
constexpr std::size_t kRemoteMaxAhead = 4096;
// -m / -X: a command line is one argument of `sh -c`, which Linux caps at 128 KiB with its NUL.
constexpr std::size_t kLongestCommandLine = 128 * 1024 - 1;
// Descriptors a running local job holds in this process (its pidfd, stdout, stderr, stdin), and
// those kept for everything else.
constexpr std::size_t kDescriptorsPerJob = 4;
constexpr std::size_t kDescriptorsReserved = 64;

// The median of the run times of the jobs that succeeded (--timeout N%): two heaps.
class RunningMedian {
 public:
  void add(double value) {
    if (low_.empty() || value <= low_.top()) {
      low_.push(value);
    } else {
      high_.push(value);
    }
    if (low_.size() > high_.size() + 1) {
      high_.push(low_.top());
      low_.pop();
    } else if (high_.size() > low_.size()) {
      low_.push(high_.top());
      high_.pop();
    }
  }
  std::optional<double> get() const {
    if (low_.empty()) return std::nullopt;
    return low_.size() > high_.size() ? low_.top() : (low_.top() + high_.top()) / 2;
  }

 private:
  std::priority_queue<double> low_;
  std::priority_queue<double, std::vector<double>, std::greater<>> high_;
};

// How many local jobs can run at once with this process's descriptor limit.
std::size_t local_job_capacity() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 1 << 16;
  const auto descriptors = static_cast<std::size_t>(limit.rlim_cur);
  return descriptors > kDescriptorsReserved + kDescriptorsPerJob ? (descriptors - kDescriptorsReserved) / kDescriptorsPerJob : 1;
}

class Runner {
 public:
  explicit Runner(const RunOptions& options)
      : options_(options),
        out_(STDOUT_FILENO),
        err_(STDERR_FILENO),
        progress_(options.progress, options.eta, options.bar, err_),
        printer_(options.results.empty() ? options.output : OutputMode::group, options.keep_order, options.tag, out_,
                 err_, [this] { progress_.clear(); }) {
    if (options.pipe) {
      pipe_ = std::make_unique<PipeChunks>(options);
    } else {
      inputs_ = std::make_unique<JobInputs>(options);
    }
    const bool remote = !options.broker.empty();
    limit_ = options.jobs;
    if (limit_ == 0) limit_ = remote ? kRemoteDefaultInFlight : std::max(1U, std::thread::hardware_concurrency());
    if (!remote && limit_ > local_job_capacity()) {
      if (options.jobs != kAsManyAsPossible) {
        err_.write("fanout run: only enough file descriptors for " + std::to_string(local_job_capacity()) +
                   " jobs at once (ulimit -n); running that many\n");
      }
      limit_ = local_job_capacity();
    }
    if (remote && limit_ == kAsManyAsPossible) limit_ = kRemoteMaxAhead;  // and no cap at the broker
    if (!options.joblog.empty() && !options.dry_run) {
      if (options.resume || options.resume_failed) skip_ = finished_jobs(options.joblog, !options.resume_failed);
      joblog_.emplace(options.joblog, options.joblog_append                        ? Joblog::Mode::append
                                       : options.resume || options.resume_failed ? Joblog::Mode::append_or_fresh
                                                                                 : Joblog::Mode::fresh);
    }
  }

  int run() {
    // Signals come through a descriptor: blocked before any thread exists, so that every thread
    // (the remote engine's, the library's) inherits the mask. Children get an empty mask.
    sigset_t stop_signals;
    ::sigemptyset(&stop_signals);
    ::sigaddset(&stop_signals, SIGINT);
    ::sigaddset(&stop_signals, SIGTERM);
    ::sigaddset(&stop_signals, SIGHUP);
    ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);  // a closed stdout is seen as EPIPE (children get SIGPIPE back)
    sys::UniqueFd signals(::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signals) throw std::system_error(errno, std::generic_category(), "signalfd");

    std::vector<pollfd> fds;
    for (;;) {
      if (!command_ && (pipe_ || inputs_->header_known())) prepare();
      if (command_) start_jobs();
      if (running_jobs() == 0 && (stopping_ || (retries_.empty() && inputs_exhausted()))) break;

      fds.clear();
      fds.push_back(pollfd{signals.get(), POLLIN, 0});
      const int input = input_fd();
      const bool reading = !stopping_ && input >= 0 && input_wanted();
      if (reading) fds.push_back(pollfd{input, POLLIN, 0});
      auto until = engine_ ? engine_->prepare(fds) : Clock::time_point::max();
      until = std::min({until, progress_.next_draw(), next_timeout_check()});
      if (waiting_for_delay_) until = std::min(until, next_start_at_);
      if (::poll(fds.data(), fds.size(), sys::poll_timeout_ms(until)) < 0 && errno != EINTR) {
        throw std::system_error(errno, std::generic_category(), "poll");
      }
      if (fds[0].revents != 0) take_signal(signals.get());
      if (reading && fds[1].revents != 0) read_input();
      if (engine_) engine_->handle(fds);
      stop_jobs_over_time();
      if (Clock::now() >= progress_.next_draw()) progress_.draw(counts());
    }
    engine_.reset();
    progress_.finish(counts());
    if (fatal_) throw Error(*fatal_);
    if (interrupted_ != 0) return 128 + interrupted_;
    if (halt_status_) return *halt_status_;
    return static_cast<int>(std::min<std::size_t>(failed_, kRunExitTooManyFailed));
  }

 private:
  struct Job {
    std::string command;
    std::optional<std::string> input;  // --pipe: its chunk (kept while a retry may need it)
    std::size_t sent = 0;
    std::chrono::system_clock::time_point started;
    Clock::time_point started_steady;
    std::size_t attempts = 1;
    std::size_t slot = 0;
    bool running = false;           // false while it waits to be retried
    std::string failed_on;          // remote: the worker its last attempt failed on
    bool stopped_for_time = false;  // --timeout N%: this loop stopped it
    std::optional<ResultsDirectory::Files> results;
  };

  // ---- setting up, once the column names (--header) are known

  void prepare() {
    const std::vector<std::string> names = inputs_ ? inputs_->column_names() : std::vector<std::string>{};
    std::vector<std::string> words;
    for (const auto& word : options_.command) words.push_back(rewrite_column_names(word, names));
    command_.emplace(words, options_.names, pipe_ ? CommandTemplate::Use::pipe_command : CommandTemplate::Use::command,
                     options_.packing == ArgumentPacking::context, options_.quote_command);
    if (options_.tagstring) {
      tagstring_.emplace(std::vector<std::string>{rewrite_column_names(*options_.tagstring, names)}, options_.names,
                         CommandTemplate::Use::text);
    }
    if (!options_.results.empty()) results_.emplace(options_, names);
    if (inputs_ && options_.packing != ArgumentPacking::fixed) {
      inputs_->set_line_measure([this](const std::string& value) { return command_->argument_cost(value); },
                                command_->base_length(), kLongestCommandLine, limit_);
    }
    uses_slot_ = command_->uses_slot() || (tagstring_ && tagstring_->uses_slot());
    // Remote jobs queued ahead at the broker start when the broker says, so they cannot have a
    // job slot ({%}), a --delay or a --timeout N% (of the median when they start) of their own;
    // and they cannot be taken back one by one (the protocol cancels whole batches), while --halt
    // soon must let the running jobs end and start no others. In those cases nothing is queued
    // ahead: at most -j jobs are out at a time.
    admit_ = limit_;
    const bool exact = uses_slot_ || options_.delay.count() > 0 || options_.timeout_percent > 0 ||
                       options_.halt.when == HaltPolicy::When::soon;
    if (!options_.broker.empty() && !exact) admit_ += std::clamp(2 * limit_, kRemoteMinAhead, kRemoteMaxAhead);
    if (!options_.dry_run) make_engine();
  }

  void make_engine() {
    const bool stream = options_.results.empty() && options_.output != OutputMode::group;
    auto on_output = [this](std::size_t seq, OutputType type, std::string_view text) { printer_.output(seq, type, text); };
    auto on_finished = [this](std::size_t seq, ProcessResult result) { finished(seq, std::move(result)); };
    if (options_.broker.empty()) {
      engine_ = local_engine(on_output, on_finished, stream);
      return;
    }
    RemoteEnvironment environment;
    for (const auto& name : options_.env) {
      const char* value = std::getenv(name.c_str());
      environment.emplace_back(name, value != nullptr ? std::optional<std::string>(value) : std::nullopt);
    }
    const std::size_t at_broker = options_.jobs == kAsManyAsPossible ? 0 : limit_;
    engine_ = remote_engine(on_output, on_finished, stream, options_.broker, at_broker, std::move(environment));
  }

  // ---- inputs

  int input_fd() const { return pipe_ ? pipe_->pollable_fd() : inputs_->pollable_fd(); }
  bool input_wanted() const {
    if (pipe_) return pipe_->wants_read(std::max<std::size_t>(2, admit_ - std::min(admit_, running_jobs())));
    return inputs_->wants_read(admit_ + 64);
  }
  void read_input() {
    if (pipe_) {
      pipe_->read_some();
    } else {
      inputs_->read_some();
    }
  }
  bool inputs_exhausted() const { return pipe_ ? pipe_->exhausted() : inputs_->exhausted(); }
  std::optional<std::size_t> total() const { return pipe_ ? pipe_->total(started_) : inputs_->total(started_); }

  // ---- starting jobs

  std::size_t running_jobs() const { return engine_ ? engine_->running() : 0; }

  // Whether to hand the engine another job now. Below -j, always. Remote jobs queued ahead are
  // topped up in chunks, from half the lookahead back to all of it, so that they travel to the
  // broker many to a message rather than one message per job (the broker has one thread).
  bool wants_jobs() {
    const std::size_t out = running_jobs();
    if (out < limit_) return true;
    if (out >= admit_) {
      refilling_ = false;
      return false;
    }
    if (out <= limit_ + (admit_ - limit_) / 2) refilling_ = true;
    return refilling_;
  }

  void start_jobs() {
    waiting_for_delay_ = false;
    while (!stopping_ && wants_jobs()) {
      if (options_.delay.count() > 0 && Clock::now() < next_start_at_) {
        waiting_for_delay_ = !retries_.empty() || !inputs_exhausted();
        return;
      }
      if (!retries_.empty()) {
        const std::size_t seq = retries_.front();
        retries_.pop_front();
        launch(seq, jobs_.at(seq));
        continue;
      }
      if (pipe_) {
        std::string chunk;
        if (!pipe_->next(chunk)) return;
        start_new({}, std::move(chunk));
      } else {
        if (!inputs_->next(records_)) return;
        start_new(records_, std::nullopt);
      }
    }
  }

  void start_new(const std::vector<Record>& records, std::optional<std::string> chunk) {
    const std::size_t seq = ++started_;
    if (skip_.count(seq) != 0) {  // --resume: in the joblog already
      printer_.skipped(seq);
      return;
    }
    arguments_.clear();
    for (const Record& record : records) arguments_.insert(arguments_.end(), record.begin(), record.end());
    const std::size_t slot = take_slot();
    Job job;
    job.command = command_->expand(arguments_, seq, slot);
    if (results_) {
      job.results = results_->files_for(seq, slot, records);
      if (options_.resume && ResultsDirectory::has_output(*job.results)) {
        give_back_slot(slot);
        printer_.skipped(seq);
        return;
      }
    }
    std::string tag;
    if (options_.tag) {
      if (tagstring_) {
        tag = tagstring_->expand(arguments_, seq, slot);
      } else {
        for (std::size_t a = 0; a < arguments_.size(); ++a) tag += (a > 0 ? " " : "") + arguments_[a];
      }
    }
    if (options_.dry_run) {
      give_back_slot(slot);
      printer_.print_now((options_.tag ? tag + "\t" : std::string()) + job.command + "\n");
      return;
    }
    job.slot = slot;
    job.sent = chunk ? chunk->size() : 0;
    job.input = std::move(chunk);
    printer_.started(seq, std::move(tag), options_.print_command ? job.command : std::string());
    // In the table before the engine hears of it: a job that cannot start ends at once.
    launch(seq, jobs_.insert_or_assign(seq, std::move(job)).first->second, true);
  }

  // Hands job `seq` to the engine (again, for a retry: with a new slot).
  void launch(std::size_t seq, Job& job, bool slot_taken = false) {
    if (!slot_taken) job.slot = take_slot();
    job.started = std::chrono::system_clock::now();
    job.started_steady = Clock::now();
    job.stopped_for_time = false;
    job.running = true;
    if (options_.trace_command) err_.write(job.command + "\n");
    if (options_.delay.count() > 0) next_start_at_ = job.started_steady + options_.delay;
    JobSpec spec;
    spec.command = job.command;
    spec.timeout = timeout_for_next();
    spec.avoid_worker = job.failed_on;
    // The chunk is kept only while a retry may need it.
    if (job.input) spec.input = options_.attempts == 1 ? std::move(*job.input) : *job.input;
    engine_->start(seq, std::move(spec));
  }

  // --timeout: fixed, or N% of the median run time so far. A local job's N% limit follows the
  // median as it moves (stop_jobs_over_time); a remote job gets the limit of when it is handed
  // over (one remote job cannot be stopped alone).
  std::chrono::milliseconds timeout_for_next() const {
    if (options_.timeout) return *options_.timeout;
    if (options_.timeout_percent <= 0 || options_.broker.empty()) return std::chrono::milliseconds(0);
    const auto median = median_.get();
    if (!median) return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(static_cast<long long>(*median * options_.timeout_percent * 10) + 1);
  }

  std::optional<Clock::duration> percent_limit() const {
    if (options_.timeout_percent <= 0 || !options_.broker.empty()) return std::nullopt;
    const auto median = median_.get();
    if (!median) return std::nullopt;
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*median * options_.timeout_percent / 100));
  }

  Clock::time_point next_timeout_check() const {
    const auto limit = percent_limit();
    if (!limit) return Clock::time_point::max();
    auto earliest = Clock::time_point::max();
    for (const auto& [seq, job] : jobs_) {
      if (job.running && !job.stopped_for_time) earliest = std::min(earliest, job.started_steady + *limit);
    }
    return earliest;
  }

  void stop_jobs_over_time() {
    const auto limit = percent_limit();
    if (!limit || stopping_) return;
    const auto now = Clock::now();
    for (auto& [seq, job] : jobs_) {
      if (!job.running || job.stopped_for_time || now < job.started_steady + *limit) continue;
      job.stopped_for_time = engine_->stop(seq, kStopGrace);
    }
  }

  // {%}: the lowest job slot free, from 1.
  std::size_t take_slot() {
    if (free_slots_.empty()) return ++slots_made_;
    const std::size_t slot = free_slots_.top();
    free_slots_.pop();
    return slot;
  }
  void give_back_slot(std::size_t slot) { free_slots_.push(slot); }

  // ---- jobs ending

  void finished(std::size_t seq, ProcessResult result) {
    const auto found = jobs_.find(seq);
    if (found == jobs_.end()) return;
    Job& job = found->second;
    job.running = false;
    give_back_slot(job.slot);
    if (job.stopped_for_time) {
      detail::ProcessOutcome outcome;
      outcome.exit_code = result.exit_code();
      outcome.signal = result.signal();
      outcome.timed_out = true;
      outcome.started = true;
      outcome.output = result.output();
      outcome.error_output = result.error_output();
      outcome.ran_on = result.ran_on();
      outcome.elapsed = result.elapsed();
      result = ProcessResult({}, ProcessCommand(result.command()), std::move(outcome));
    }
    // GNU parallel neither prints nor logs jobs that --halt now killed. Remote jobs stopped by a
    // signal are treated alike: the broker cancels running and queued ones at once and sends back
    // no output of theirs, only "cancelled", which would be printed once per queued job otherwise.
    const bool killed_by_halt = halting_now_ || (interrupted_ != 0 && !options_.broker.empty());
    if (result.failed() && !killed_by_halt && !stopping_ &&
        (options_.attempts == 0 || job.attempts < options_.attempts)) {
      ++job.attempts;  // --retries: it runs again, before any new job; this attempt is forgotten
      job.failed_on = worker_of(result.ran_on());  // on another worker, when there is one
      printer_.restarting(seq);
      retries_.push_back(seq);
      return;
    }
    printer_.finished(seq, result.output(), result.error_output(), !killed_by_halt && !results_);
    if (!options_.broker.empty()) {
      // A remote job may have waited at the broker after it was handed over: it started when it
      // ended less its run time, as far as this machine can tell.
      const auto ran = std::chrono::duration_cast<std::chrono::system_clock::duration>(result.elapsed());
      job.started = std::max(job.started, std::chrono::system_clock::now() - ran);
    }
    if (!killed_by_halt) {
      if (job.results) write_results(seq, *job.results, result);
      if (result.successful()) median_.add(std::chrono::duration<double>(result.elapsed()).count());
      account(seq, result, job);
    }
    jobs_.erase(found);
  }

  void write_results(std::size_t seq, const ResultsDirectory::Files& files, const ProcessResult& result) {
    try {
      ResultsDirectory::write(files, seq, result.output(), result.error_output());
    } catch (const Error& error) {
      // Thrown from inside the engine's callback: end the run cleanly instead, then report it.
      if (!fatal_) fatal_ = error.what();
      stop_everything();
    }
  }

  // Counts, joblog, messages and --halt for a job that ended on its own.
  void account(std::size_t seq, const ProcessResult& result, const Job& job) {
    ++done_;
    const bool failed = result.failed();
    if (failed) {
      ++failed_;
    } else {
      ++succeeded_;
    }
    if (result.timed_out()) {
      progress_.clear();
      err_.write("fanout run: job " + std::to_string(seq) + " timed out and was killed: " + result.command() + "\n");
    }
    if (joblog_) {
      // Receive: the bytes of stdout, as GNU parallel counts them.
      joblog_->write(joblog_line(seq, result, job.started, job.sent, result.output().size()));
    }
    const HaltPolicy& halt = options_.halt;
    if (halt.when == HaltPolicy::When::never || stopping_) return;
    const std::size_t count = halt.why == HaltPolicy::Why::fail      ? failed_
                              : halt.why == HaltPolicy::Why::success ? succeeded_
                                                                     : done_;
    const bool relevant = halt.why == HaltPolicy::Why::done || (halt.why == HaltPolicy::Why::fail) == failed;
    if (!relevant || count < halt.count) return;

    stopping_ = true;
    if (halt.why == HaltPolicy::Why::fail && halt.count == 1) {
      halt_status_ = job_status(result);
    } else if (halt.why == HaltPolicy::Why::success) {
      halt_status_ = 0;
    } else {
      halt_status_ = static_cast<int>(std::min<std::size_t>(failed_, kRunExitTooManyFailed));
    }
    std::string message = "fanout run: --halt: job " + std::to_string(seq) + (failed ? " failed" : " ended") + " (" +
                          result.command() + "); starting no more jobs";
    const std::size_t others = std::min(running_jobs(), limit_);  // this job is no longer among them
    if (halt.when == HaltPolicy::When::now) {
      halting_now_ = true;
      engine_->stop_all(kStopGrace);
      message += others > 0 ? ", killing the " + std::to_string(others) + " still running\n" : "\n";
    } else {
      message += others > 0 ? ", waiting for the " + std::to_string(others) + " still running\n" : "\n";
    }
    progress_.clear();
    err_.write(message);
  }

  void stop_everything() {
    stopping_ = true;
    if (engine_) engine_->stop_all(kStopGrace);
  }

  void take_signal(int fd) {
    signalfd_siginfo info{};
    if (::read(fd, &info, sizeof(info)) != static_cast<ssize_t>(sizeof(info))) return;
    if (interrupted_ == 0) {
      interrupted_ = static_cast<int>(info.ssi_signo);
      stop_everything();
    } else if (engine_) {
      engine_->stop_all(std::chrono::milliseconds(0));  // a second signal: KILL now
    }
  }

  Progress::Counts counts() const {
    return Progress::Counts{done_, std::min(running_jobs(), limit_), failed_, total()};
  }

  const RunOptions& options_;
  Sink out_;
  Sink err_;
  Progress progress_;
  JobPrinter printer_;
  std::unique_ptr<JobInputs> inputs_;  // or
  std::unique_ptr<PipeChunks> pipe_;
  std::optional<CommandTemplate> command_;  // once the column names are known
  std::optional<CommandTemplate> tagstring_;
  std::optional<ResultsDirectory> results_;
  std::optional<Joblog> joblog_;
  std::unordered_set<std::size_t> skip_;  // --resume
  std::size_t limit_ = 1;  // jobs at once (-j)
  std::size_t admit_ = 1;  // jobs handed to the engine and not finished, at most
  bool refilling_ = false;  // topping up remote jobs queued ahead (see wants_jobs)
  bool uses_slot_ = false;
  std::unique_ptr<JobEngine> engine_;

  std::unordered_map<std::size_t, Job> jobs_;  // started (or waiting for a retry), not finished
  std::deque<std::size_t> retries_;            // failed jobs to run again, before new ones
  std::vector<Record> records_;                // reused: the next job's records
  std::vector<std::string> arguments_;         // reused: the next job's arguments, flattened
  std::priority_queue<std::size_t, std::vector<std::size_t>, std::greater<>> free_slots_;
  std::size_t slots_made_ = 0;
  RunningMedian median_;
  Clock::time_point next_start_at_{};  // --delay
  bool waiting_for_delay_ = false;

  std::size_t started_ = 0;
  std::size_t done_ = 0;
  std::size_t failed_ = 0;
  std::size_t succeeded_ = 0;
  bool stopping_ = false;     // start no more jobs
  bool halting_now_ = false;  // --halt now fired: what ends from now on was killed by us
  std::optional<int> halt_status_;
  std::optional<std::string> fatal_;
  int interrupted_ = 0;
};

}  // namespace

int run(const RunOptions& options) { return Runner(options).run(); }

}  // namespace fanout::tool
