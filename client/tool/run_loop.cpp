// run_loop.cpp: run(), the one poll loop of `fanout run`. It reads input lazily (stdin as it comes,
// ::: combinations by index), starts a job whenever a slot is free, prints output as the options
// say, writes the joblog, applies --halt, draws --progress, and turns SIGINT/SIGTERM/SIGHUP into
// stopping every job (the jobs run in process groups of their own, so a terminal's Ctrl-C would
// not reach them otherwise).
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "job_engine.hpp"
#include "system/poll_timeout.hpp"
#include "run_command.hpp"
#include "system/unique_fd.hpp"

namespace fanout::tool {

namespace {

using Clock = std::chrono::steady_clock;

// Between TERM and KILL when --halt now or a signal stops running jobs (GNU parallel's --termseq
// also starts with TERM and 200 ms).
constexpr auto kStopGrace = std::chrono::milliseconds(200);
constexpr auto kProgressInterval = std::chrono::milliseconds(100);
constexpr std::size_t kRemoteDefaultInFlight = 16;
// Remote jobs handed to the broker beyond -j, so that it always has the next one queued and starts
// it the moment a running one ends (no round trip through this process): twice -j, at least 64,
// at most 4096.
constexpr std::size_t kRemoteMinAhead = 64;
constexpr std::size_t kRemoteMaxAhead = 4096;

// ---- input ------------------------------------------------------------------------------------

// The arguments of each job: ::: combinations by index, or stdin one line at a time, read only as
// far as the jobs need (a producer that never ends is fine; 100,000 lines are never all in memory).
class Inputs {
 public:
  explicit Inputs(const RunOptions& options) : combinations_(options.groups), from_stdin_(options.read_stdin) {}

  // The next job's arguments into `out`; false when none is available now.
  bool next(std::vector<std::string>& out) {
    if (!from_stdin_) {
      if (index_ >= combinations_.size()) return false;
      combinations_.get(index_++, out);
      return true;
    }
    if (lines_.empty()) return false;
    out.resize(1);
    out[0] = std::move(lines_.front());
    lines_.pop_front();
    return true;
  }

  bool exhausted() const { return from_stdin_ ? eof_ && lines_.empty() : index_ >= combinations_.size(); }
  // Whether stdin should be polled: more lines are wanted and more may come.
  bool wants_read(std::size_t read_ahead) const { return from_stdin_ && !eof_ && lines_.size() < read_ahead; }
  // Total jobs, once known.
  std::optional<std::size_t> total(std::size_t started) const {
    if (!from_stdin_) return combinations_.size();
    if (eof_) return started + lines_.size();
    return std::nullopt;
  }

  // stdin is readable (or at end): take what is there.
  void read_some() {
    char buffer[65536];
    ssize_t got = 0;
    do {
      got = ::read(STDIN_FILENO, buffer, sizeof(buffer));
    } while (got < 0 && errno == EINTR);
    if (got < 0 && errno == EAGAIN) return;
    if (got <= 0) {  // end of input (an error ends it the same way)
      eof_ = true;
      if (!partial_.empty()) lines_.push_back(std::move(partial_));
      return;
    }
    std::string_view text(buffer, static_cast<std::size_t>(got));
    for (auto newline = text.find('\n'); newline != std::string_view::npos; newline = text.find('\n')) {
      partial_.append(text.substr(0, newline));
      lines_.push_back(std::move(partial_));
      partial_.clear();
      text.remove_prefix(newline + 1);
    }
    partial_.append(text);
  }

 private:
  Combinations combinations_;
  std::size_t index_ = 0;
  bool from_stdin_ = false;
  bool eof_ = false;
  std::deque<std::string> lines_;
  std::string partial_;
};

// ---- output -----------------------------------------------------------------------------------

// Writes all of `text` to `fd`. A reader that went away (EPIPE) is not an error of the jobs: the
// rest of that stream is dropped.
class Sink {
 public:
  explicit Sink(int fd) : fd_(fd) {}
  void write(std::string_view text) {
    while (!text.empty() && !closed_) {
      const ssize_t wrote = ::write(fd_, text.data(), text.size());
      if (wrote < 0 && errno == EINTR) continue;
      if (wrote < 0) {
        closed_ = true;
        return;
      }
      text.remove_prefix(static_cast<std::size_t>(wrote));
    }
  }

 private:
  int fd_;
  bool closed_ = false;
};

// `text` with `tag` and a TAB before every line (a last line without newline too).
std::string tagged(std::string_view text, const std::string& tag) {
  std::string out;
  out.reserve(text.size() + tag.size() + 2);
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    end = end == std::string_view::npos ? text.size() : end + 1;
    out += tag;
    out += '\t';
    out.append(text.substr(start, end - start));
    start = end;
  }
  return out;
}

std::string format_duration(double seconds) {
  const long total = static_cast<long>(seconds + 0.5);
  char text[32];
  std::snprintf(text, sizeof(text), "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
  return text;
}

// ---- the run ----------------------------------------------------------------------------------

class Runner {
 public:
  explicit Runner(const RunOptions& options)
      : options_(options),
        template_(options.command),
        inputs_(options),
        out_(STDOUT_FILENO),
        err_(STDERR_FILENO),
        show_progress_(options.progress && ::isatty(STDERR_FILENO) == 1) {
    const std::size_t arguments_per_job = options.read_stdin ? 1 : options.groups.size();
    if (template_.highest_argument() > arguments_per_job) {
      throw UsageError("{" + std::to_string(template_.highest_argument()) + "} in the command, but each job has " +
                       std::to_string(arguments_per_job) + " argument" + (arguments_per_job == 1 ? "" : "s"));
    }
    if (options.joblog == "-") {
      joblog_ = stdout;  // as GNU parallel: the joblog on stdout
      joblog_owned_ = false;
    } else if (!options.joblog.empty()) {
      joblog_ = std::fopen(options.joblog.c_str(), "w");
      if (joblog_ == nullptr) {
        throw std::system_error(errno, std::generic_category(), "cannot write the joblog " + options.joblog);
      }
    }
    if (joblog_ != nullptr) {
      std::fprintf(joblog_, "%s\n", joblog_header().c_str());
      std::fflush(joblog_);
    }
    limit_ = options.jobs;
    if (limit_ == 0) {
      limit_ = options.broker.empty() ? std::max(1U, std::thread::hardware_concurrency()) : kRemoteDefaultInFlight;
    }
    // Remote jobs queued ahead at the broker cannot be taken back one by one (the protocol cancels
    // whole batches, running jobs too), so with --halt soon, which must let the running jobs end
    // and start no others, nothing is queued ahead: at most -j jobs are out at a time, and the next
    // goes out when one ends. (--halt now cancels them all anyway, queued ones included.)
    admit_ = limit_;
    if (!options.broker.empty() && options.halt.when != HaltPolicy::When::soon) {
      admit_ += std::clamp(2 * limit_, kRemoteMinAhead, kRemoteMaxAhead);
    }
  }

  ~Runner() {
    if (joblog_ != nullptr && joblog_owned_) std::fclose(joblog_);
  }
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

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

    const bool stream = options_.line_buffer;
    auto on_output = [this](std::size_t seq, OutputType type, std::string_view text) { output(seq, type, text); };
    auto on_finished = [this](std::size_t seq, ProcessResult result) { finished(seq, std::move(result)); };
    engine_ = options_.broker.empty() ? local_engine(on_output, on_finished, stream)
                                      : remote_engine(on_output, on_finished, stream, options_.broker, limit_);
    started_at_ = Clock::now();

    std::vector<pollfd> fds;
    std::vector<std::string> arguments;
    const std::size_t read_ahead = admit_ + 64;
    for (;;) {
      while (!stopping_ && wants_jobs() && inputs_.next(arguments)) start(arguments);
      if (engine_->running() == 0 && (stopping_ || inputs_.exhausted())) break;

      fds.clear();
      fds.push_back(pollfd{signals.get(), POLLIN, 0});
      const bool reading = !stopping_ && inputs_.wants_read(read_ahead);
      if (reading) fds.push_back(pollfd{STDIN_FILENO, POLLIN, 0});
      auto until = engine_->prepare(fds);
      if (show_progress_) until = std::min(until, next_progress_);
      if (::poll(fds.data(), fds.size(), sys::poll_timeout_ms(until)) < 0 && errno != EINTR) {
        throw std::system_error(errno, std::generic_category(), "poll");
      }
      if (fds[0].revents != 0) take_signal(signals.get());
      if (reading && fds[1].revents != 0) inputs_.read_some();
      engine_->handle(fds);
      if (show_progress_ && Clock::now() >= next_progress_) draw_progress(false);
    }
    engine_.reset();
    if (show_progress_) draw_progress(true);
    if (interrupted_ != 0) return 128 + interrupted_;
    if (halt_status_) return *halt_status_;
    return static_cast<int>(std::min<std::size_t>(failed_, kRunExitTooManyFailed));
  }

 private:
  struct Job {
    std::string tag;
    std::chrono::system_clock::time_point started;
    std::string out;  // --line-buffer: what has not been printed yet
    std::string err;
  };
  struct Ready {  // --keep-order: a finished job waiting for its turn
    std::string out;
    std::string err;
    std::string tag;
    bool print = true;
  };

  void start(const std::vector<std::string>& arguments) {
    const std::size_t seq = ++started_;
    Job& job = jobs_[seq];
    job.started = std::chrono::system_clock::now();
    if (options_.tag) {
      for (std::size_t a = 0; a < arguments.size(); ++a) {
        if (a > 0) job.tag += ' ';
        job.tag += arguments[a];
      }
    }
    engine_->start(seq, template_.expand(seq, arguments), options_.timeout.value_or(std::chrono::milliseconds(0)));
  }

  // Whether to hand the engine another job now. Below -j, always. Remote jobs queued ahead are
  // topped up in chunks, from half the lookahead back to all of it, so that they travel to the
  // broker many to a message rather than one message per job (the broker has one thread).
  bool wants_jobs() {
    const std::size_t out = engine_->running();
    if (out < limit_) return true;
    if (out >= admit_) {
      refilling_ = false;
      return false;
    }
    if (out <= limit_ + (admit_ - limit_) / 2) refilling_ = true;
    return refilling_;
  }

  // Jobs running now, as far as this process knows: remote jobs handed over beyond -j wait at
  // the broker.
  std::size_t running() const { return std::min(engine_->running(), limit_); }

  // Whether job `seq`'s output may go out now (not waiting behind an earlier job).
  bool may_print(std::size_t seq) const { return !options_.keep_order || seq == next_to_print_; }

  void print(std::string_view out, std::string_view err, const std::string& tag) {
    if (out.empty() && err.empty()) return;
    clear_progress();
    if (options_.tag) {
      if (!out.empty()) out_.write(tagged(out, tag));
      if (!err.empty()) err_.write(tagged(err, tag));
    } else {
      out_.write(out);
      err_.write(err);
    }
  }

  // --line-buffer: prints the whole lines of `job` that are there.
  void print_lines(Job& job) {
    const auto out_end = job.out.rfind('\n');
    const auto err_end = job.err.rfind('\n');
    const std::string_view out =
        out_end == std::string::npos ? std::string_view() : std::string_view(job.out).substr(0, out_end + 1);
    const std::string_view err =
        err_end == std::string::npos ? std::string_view() : std::string_view(job.err).substr(0, err_end + 1);
    print(out, err, job.tag);
    if (out_end != std::string::npos) job.out.erase(0, out_end + 1);
    if (err_end != std::string::npos) job.err.erase(0, err_end + 1);
  }

  void output(std::size_t seq, OutputType type, std::string_view text) {
    const auto found = jobs_.find(seq);
    if (found == jobs_.end()) return;
    Job& job = found->second;
    (type == OutputType::out ? job.out : job.err).append(text);
    if (may_print(seq) && text.find('\n') != std::string_view::npos) print_lines(job);
  }

  void finished(std::size_t seq, ProcessResult result) {
    const auto found = jobs_.find(seq);
    Job job = std::move(found->second);
    jobs_.erase(found);
    // GNU parallel neither prints nor logs jobs that --halt now killed. Remote jobs stopped by a
    // signal are treated alike: the broker cancels running and queued ones at once and sends back
    // no output of theirs, only "cancelled", which would be printed once per queued job otherwise.
    const bool killed_by_halt = halting_now_ || (interrupted_ != 0 && !options_.broker.empty());
    Ready ready;
    ready.print = !killed_by_halt;
    ready.tag = std::move(job.tag);
    if (options_.line_buffer) {
      ready.out = std::move(job.out);
      ready.err = std::move(job.err);
    } else {
      ready.out = result.output();
      ready.err = result.error_output();
    }
    if (!options_.broker.empty()) {
      // A remote job may have waited at the broker after it was handed over: it started when it
      // ended less its run time, as far as this machine can tell.
      const auto ran = std::chrono::duration_cast<std::chrono::system_clock::duration>(result.elapsed());
      job.started = std::max(job.started, std::chrono::system_clock::now() - ran);
    }
    if (!killed_by_halt) account(seq, result, job.started);

    if (!options_.keep_order) {
      if (ready.print) print(ready.out, ready.err, ready.tag);
      return;
    }
    ready_.emplace(seq, std::move(ready));
    // Print every finished job whose turn has come; the next one, if running, may stream now.
    for (auto next = ready_.find(next_to_print_); next != ready_.end(); next = ready_.find(next_to_print_)) {
      if (next->second.print) print(next->second.out, next->second.err, next->second.tag);
      ready_.erase(next);
      ++next_to_print_;
    }
    if (options_.line_buffer) {
      const auto head = jobs_.find(next_to_print_);
      if (head != jobs_.end()) print_lines(head->second);
    }
  }

  // Counts, joblog, messages and --halt for a job that ended on its own.
  void account(std::size_t seq, const ProcessResult& result, std::chrono::system_clock::time_point started) {
    ++done_;
    const bool failed = result.failed();
    if (failed) {
      ++failed_;
    } else {
      ++succeeded_;
    }
    if (result.timed_out()) {
      clear_progress();
      err_.write("fanout run: job " + std::to_string(seq) + " timed out and was killed: " + result.command() + "\n");
    }
    if (joblog_ != nullptr) {
      const std::string line = joblog_line(seq, result, started, result.output().size() + result.error_output().size());
      std::fprintf(joblog_, "%s\n", line.c_str());
      std::fflush(joblog_);
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
    const std::size_t others = running();  // this job is no longer among them
    if (halt.when == HaltPolicy::When::now) {
      halting_now_ = true;
      engine_->stop_all(kStopGrace);
      message += others > 0 ? ", killing the " + std::to_string(others) + " still running\n" : "\n";
    } else {
      message += others > 0 ? ", waiting for the " + std::to_string(others) + " still running\n" : "\n";
    }
    clear_progress();
    err_.write(message);
  }

  void take_signal(int fd) {
    signalfd_siginfo info{};
    if (::read(fd, &info, sizeof(info)) != static_cast<ssize_t>(sizeof(info))) return;
    if (interrupted_ == 0) {
      interrupted_ = static_cast<int>(info.ssi_signo);
      stopping_ = true;
      engine_->stop_all(kStopGrace);
    } else {
      engine_->stop_all(std::chrono::milliseconds(0));  // a second signal: KILL now
    }
  }

  void draw_progress(bool last) {
    next_progress_ = Clock::now() + kProgressInterval;
    const auto total = inputs_.total(started_);
    const double elapsed = std::chrono::duration<double>(Clock::now() - started_at_).count();
    std::string line = "\r\033[Kfanout: " + std::to_string(done_) + "/" + (total ? std::to_string(*total) : "?") +
                       " done, " + std::to_string(engine_ ? running() : 0) + " running, " +
                       std::to_string(failed_) + " failed";
    if (last) {
      line += ", " + format_duration(elapsed) + "\n";
    } else if (total && done_ > 0) {
      const double left = elapsed / static_cast<double>(done_) * static_cast<double>(*total - std::min(*total, done_));
      line += ", ETA " + format_duration(left);
    }
    err_.write(line);
    progress_shown_ = !last;
  }

  void clear_progress() {
    if (!progress_shown_) return;
    err_.write("\r\033[K");
    progress_shown_ = false;
    next_progress_ = Clock::now();  // redrawn at the next turn of the loop
  }

  const RunOptions& options_;
  CommandTemplate template_;
  Inputs inputs_;
  Sink out_;
  Sink err_;
  const bool show_progress_;
  bool progress_shown_ = false;
  std::FILE* joblog_ = nullptr;
  bool joblog_owned_ = true;
  std::size_t limit_ = 1;  // jobs at once (-j)
  std::size_t admit_ = 1;  // jobs handed to the engine and not finished, at most
  bool refilling_ = false;  // topping up remote jobs queued ahead (see wants_jobs)
  std::unique_ptr<JobEngine> engine_;
  Clock::time_point started_at_;
  Clock::time_point next_progress_{};

  std::unordered_map<std::size_t, Job> jobs_;  // running
  std::map<std::size_t, Ready> ready_;          // --keep-order: finished, not printed yet
  std::size_t next_to_print_ = 1;
  std::size_t started_ = 0;
  std::size_t done_ = 0;
  std::size_t failed_ = 0;
  std::size_t succeeded_ = 0;
  bool stopping_ = false;     // start no more jobs
  bool halting_now_ = false;  // --halt now fired: what ends from now on was killed by us
  std::optional<int> halt_status_;
  int interrupted_ = 0;
};

}  // namespace

int run(const RunOptions& options) { return Runner(options).run(); }

}  // namespace fanout::tool
