// fork_backend.cpp: the "fork" driver. One forked child per slot, at most N at once.
//
// The child runs the slot and writes one framed Result (an 8-byte word count, then a capnp message
// in the flat-array format) to a pipe that only it and the parent share, then _exits. Output the
// task prints goes to the inherited stdout/stderr and can never mix with the result. The parent
// multiplexes the pipes and one pidfd per child with poll(), so large results drain while they are
// written (nothing hangs on a full pipe) and a child's death is seen even if it leaked the pipe to
// a grandchild. Every child is killed and reaped by its owner object, so no path out of execute()
// leaves a zombie or a stray process.
//
// defer() detaches the batch: a double fork (the intermediate calls setsid(), forks the runner and
// exits at once; the caller reaps it) leaves a runner in its own session that nobody waits for. The
// runner runs the batch exactly as execute() does, reports failures on the stderr it inherited, and
// _exits without returning into the caller's code or running its atexit handlers.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <mutex>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <span>
#include <system_error>
#include <vector>

#include <capnp/serialize.h>
#include <kj/exception.h>

#include "wire.hpp"
#include "backends.hpp"
#include "job_runner.hpp"
#include "failure.hpp"
#include "system/child_process.hpp"
#include "system/descriptors.hpp"
#include "system/machine.hpp"
#include "system/os_error.hpp"
#include "system/signals.hpp"
#include "system/unique_fd.hpp"
#include "width.hpp"
#include "wire_kinds.hpp"

namespace fanout::detail {

namespace {

using Clock = std::chrono::steady_clock;

// A result larger than this is refused rather than allocated.
constexpr std::uint64_t kMaxResultWords = (std::uint64_t{1} << 30) / sizeof(capnp::word);
// Exit code of a child that could not write its result (the parent is gone, or the pipe broke).
constexpr int kChildWriteFailed = 125;

// Writes the result frame: an 8-byte word count, then the message in capnp's flat format (segment
// table, segments). Messages of up to kInlineSegments segments, i.e. all but huge ones, go out in
// one writev from stack buffers: a forked child that touches the heap pays copy-on-write faults.
bool write_framed(int fd, capnp::MessageBuilder& message) {
  constexpr std::size_t kInlineSegments = 15;
  const auto segments = message.getSegmentsForOutput();
  if (segments.size() > kInlineSegments) {
    auto flat = capnp::messageToFlatArray(segments);
    std::uint64_t words = flat.size();
    iovec pieces[] = {{&words, sizeof(words)}, {flat.begin(), flat.size() * sizeof(capnp::word)}};
    return sys::write_all(fd, pieces);
  }
  // Segment table: count-1, then each size, as 32-bit words, padded to a whole 64-bit word.
  std::uint32_t table[kInlineSegments + 1] = {};
  const std::size_t table_entries = (segments.size() + 2) & ~std::size_t{1};
  table[0] = static_cast<std::uint32_t>(segments.size() - 1);
  std::uint64_t words = table_entries / 2;
  iovec pieces[kInlineSegments + 2];
  pieces[0] = {&words, sizeof(words)};
  pieces[1] = {table, table_entries * sizeof(std::uint32_t)};
  for (std::size_t i = 0; i < segments.size(); ++i) {
    table[i + 1] = static_cast<std::uint32_t>(segments[i].size());
    words += segments[i].size();
    pieces[i + 2] = {const_cast<capnp::word*>(segments[i].begin()), segments[i].size() * sizeof(capnp::word)};
  }
  return sys::write_all(fd, std::span<iovec>(pieces, segments.size() + 2));
}

// The first call of a shared-library function pays a symbol lookup (lazy binding), and a forked
// child pays it again for everything the parent never called: measured at about 40 µs per child.
// Walking the child's path once in the parent, writing to /dev/null, binds it all before the
// first fork.
void warm_child_path() {
  int death_signal = 0;
  ::prctl(PR_GET_PDEATHSIG, &death_signal);
  (void)::getppid();
  struct sigaction current {};
  ::sigaction(SIGPIPE, nullptr, &current);
  // The argument-reading path: a child decodes its call's arguments, which the parent never does.
  const Payload arguments = Payload::build([](ValueBuilder out) { out.init_tuple(1)[0].set_text("warm-up"); });
  arguments.read([](ValueReader in) { (void)in.as_tuple(nullptr)[0].as_text(nullptr); });
  const sys::UniqueFd sink(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  if (!sink) return;
  capnp::word scratch[64];
  std::memset(scratch, 0, sizeof(scratch));
  capnp::MallocMessageBuilder message(kj::arrayPtr(scratch, 64));
  auto result = message.initRoot<wire::Result>();
  result.initValue().setNone();
  result.setRanOn("warm-up");
  result.initError().setMessage("warm-up");
  (void)write_framed(sink.get(), message);
}

// Runs in the forked child; never returns.
[[noreturn]] void run_child(const Job& job, std::size_t index, int result_fd, pid_t parent) noexcept {
  try {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(kChildWriteFailed);  // the parent died before prctl
    // A vanished parent shows as a write error, not a signal death.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, nullptr);
    const std::string ran_on = "fork pid " + std::to_string(::getpid());

    // Small results fit in this first segment, so most children never touch a fresh heap page.
    capnp::word first_segment[256];
    std::memset(first_segment, 0, sizeof(first_segment));  // capnp requires a zeroed first segment
    capnp::MallocMessageBuilder message(kj::arrayPtr(first_segment, 256));
    auto result = message.initRoot<wire::Result>();
    result.setIndex(static_cast<std::uint32_t>(index));
    const auto started = Clock::now();
    try {
      run_job(job, wire::wrap(result.initValue()));
    } catch (...) {
      const FailureInfo failure = failure_from_current_exception(ran_on);
      auto error = result.initError();
      error.setKind(to_wire(failure.kind));
      error.setRemoteType(failure.remote_type);
      error.setMessage(failure.message);
      error.setRanOn(ran_on);
    }
    result.setElapsedUs(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count()));
    result.setRanOn(ran_on);
    // What the task printed belongs before we vanish; _exit would drop stdio buffers.
    std::fflush(nullptr);

    ::_exit(write_framed(result_fd, message) ? 0 : kChildWriteFailed);
  } catch (...) {
    ::_exit(kChildWriteFailed);
  }
}

// One forked child and everything the parent knows about it. Owns the process (a process group
// of its own): its ChildProcess kills the whole group and reaps it if that has not happened yet.
class ForkedChild {
 public:
  ForkedChild(std::size_t index, pid_t pid, sys::UniqueFd pipe, Clock::time_point started, Clock::time_point deadline)
      : index_(index), process_(pid), ran_on_("fork pid " + std::to_string(pid)), pipe_(std::move(pipe)),
        started_(started), deadline_(deadline) {}

  std::size_t index() const noexcept { return index_; }
  int pipe_fd() const noexcept { return eof_ ? -1 : pipe_.get(); }
  int pidfd() const noexcept { return process_.pidfd(); }
  Clock::time_point started() const noexcept { return started_; }
  Clock::time_point deadline() const noexcept { return deadline_; }
  bool timed_out() const noexcept { return timed_out_; }

  // Reads whatever the pipe holds now. Returns true once the write end is closed.
  bool drain() {
    while (!eof_) {
      char* target = nullptr;
      std::size_t room = 0;
      char discard[4096];
      if (header_read_ < sizeof(header_)) {
        target = reinterpret_cast<char*>(&header_) + header_read_;
        room = sizeof(header_) - header_read_;
      } else if (body_read_ < body_.size() * sizeof(capnp::word)) {
        target = reinterpret_cast<char*>(body_.begin()) + body_read_;
        room = body_.size() * sizeof(capnp::word) - body_read_;
      } else {
        target = discard;  // bytes past the announced message: a broken child
        room = sizeof(discard);
      }
      const ssize_t got = ::read(pipe_.get(), target, room);
      if (got < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return false;
        protocol_error_ = sys::os_error("read of the result pipe").what();
        eof_ = true;
        break;
      }
      if (got == 0) {
        eof_ = true;
        break;
      }
      if (target == discard) {
        protocol_error_ = "the child wrote more than its result";
      } else if (header_read_ < sizeof(header_)) {
        header_read_ += static_cast<std::size_t>(got);
        if (header_read_ == sizeof(header_)) start_body();
      } else {
        body_read_ += static_cast<std::size_t>(got);
      }
    }
    return true;
  }

  // Whether the child is done with its slot: its whole result arrived or its pipe closed. It may
  // still be exiting; it no longer counts against the concurrency limit, because all that is left
  // of it is kernel teardown, which overlaps with the next child's start.
  bool delivered() const noexcept {
    return eof_ || (body_.size() > 0 && body_read_ == body_.size() * sizeof(capnp::word)) ||
           !protocol_error_.empty();
  }

  // Whether the process has ended (pidfd readable); without pidfds, the pipe's end stands in.
  bool has_ended(short pidfd_events) const noexcept {
    return process_.pidfd() >= 0 ? (pidfd_events & POLLIN) != 0 : eof_;
  }

  void kill_for_timeout() noexcept {
    timed_out_ = true;
    process_.signal_group(SIGKILL);
  }

  void kill_for_cancel() noexcept {
    cancelled_ = true;
    process_.signal_group(SIGKILL);
  }

  // Reaps the (ended) child and delivers the slot's outcome.
  void finish(const RunOptions& options, Results& results) {
    drain();
    // A task's grandchildren may outlive it in its process group; a slot that is over owns nothing.
    const int status = process_.wait(/*kill_group=*/true);
    const std::string& ran_on = ran_on_;
    FailureInfo failure{ErrorKind::crashed, "", "", ran_on};
    if (cancelled_) {
      failure.kind = ErrorKind::cancelled;
      failure.message = "the batch was cancelled";
      return results.failure(index_, std::move(failure));
    }
    if (timed_out_) {
      failure.kind = ErrorKind::timeout;
      failure.message = "exceeded its time limit of " + std::to_string(options.timeout.count()) + " ms and was killed";
      return results.failure(index_, std::move(failure));
    }
    const bool complete = header_read_ == sizeof(header_) && body_.size() > 0 &&
                          body_read_ == body_.size() * sizeof(capnp::word);
    if (WIFSIGNALED(status)) {
      failure.message = "the child was killed by " + sys::describe_signal(WTERMSIG(status));
      return results.failure(index_, std::move(failure));
    }
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code != 0 || !complete) {
      failure.message = code == kChildWriteFailed ? "the child could not send its result back"
                                                  : "the child exited with code " + std::to_string(code) +
                                                        " before returning a result";
      return results.failure(index_, std::move(failure));
    }
    if (!protocol_error_.empty()) {
      failure.kind = ErrorKind::bad_message;
      failure.message = protocol_error_;
      return results.failure(index_, std::move(failure));
    }
    deliver(ran_on, results);
  }

 private:
  void start_body() {
    if (header_ == 0 || header_ > kMaxResultWords) {
      protocol_error_ = "the child announced a result of " + std::to_string(header_) + " words";
      return;
    }
    body_ = kj::heapArray<capnp::word>(header_);
  }

  // Reads the child's Result message in place and hands its value (or error) to `results`.
  void deliver(const std::string& ran_on, Results& results) {
    FailureInfo failure{ErrorKind::bad_message, "", "", ran_on};
    try {
      capnp::FlatArrayMessageReader message(body_, wire::reader_options(body_.size()));
      const auto root = message.getRoot<wire::Result>();
      if (root.getIndex() != index_) {
        failure.message = "the child answered for slot " + std::to_string(root.getIndex());
      } else if (root.isValue()) {
        return results.value(index_, wire::wrap(root.getValue()), ran_on);
      } else if (root.isError()) {
        const auto error = root.getError();
        failure.kind = from_wire(error.getKind());
        failure.remote_type = error.getRemoteType();
        failure.message = error.getMessage();
      } else {
        failure.message = "the child's result holds neither a value nor an error";
      }
    } catch (const kj::Exception& error) {
      failure.kind = ErrorKind::bad_message;
      failure.message = std::string("unreadable result from the child: ") + error.getDescription().cStr();
    }
    results.failure(index_, std::move(failure));
  }

  std::size_t index_;
  sys::ChildProcess process_;
  std::string ran_on_;  // "fork pid <pid>"
  sys::UniqueFd pipe_;
  Clock::time_point started_;
  Clock::time_point deadline_;
  bool timed_out_ = false;
  bool cancelled_ = false;
  bool eof_ = false;
  std::uint64_t header_ = 0;
  std::size_t header_read_ = 0;
  kj::Array<capnp::word> body_;
  std::size_t body_read_ = 0;
  std::string protocol_error_;
};

// The runner's view of a deferred batch: values go nowhere, failures go to stderr as they settle.
class ReportingBatch final : public Batch {
 public:
  ReportingBatch(Batch& inner, const char* receipt) : inner_(inner), receipt_(receipt) {}
  std::size_t size() const noexcept override { return inner_.size(); }
  Job job(std::size_t index) const override { return inner_.job(index); }
  void store(std::size_t, ValueReader) override {}
  void settled(std::size_t index, const FailureInfo* failure) override {
    if (failure == nullptr) return;
    ++failed_;
    const TaskError error = make_task_error(*failure, inner_.job(index), index);
    std::fprintf(stderr, "fanout: deferred batch %s: %s\n", receipt_, error.what());
    std::fflush(stderr);
  }
  std::size_t failed() const noexcept { return failed_; }

 private:
  Batch& inner_;
  const char* receipt_;
  std::size_t failed_ = 0;
};

// What the intermediate process tells the caller: the runner's pid, or why there is none.
struct RunnerStarted {
  pid_t pid = -1;
  int error = 0;  // errno of the failed fork
};

// The runner starts with what a fresh program would have: no blocked signals, default handlers
// for the signals the caller caught (they belong to the caller's code, e.g. a SIGTERM flag that
// nothing reads here), SIGCHLD at its default so that children can be reaped, and stdin from
// /dev/null. Ignored signals stay ignored (as across exec); stdout, stderr and every other
// descriptor stay open, since the batch's callables may use them.
void become_runner() noexcept {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int signal = 1; signal < NSIG; ++signal) {
    if (signal == SIGKILL || signal == SIGSTOP) continue;
    struct sigaction current {};
    if (::sigaction(signal, nullptr, &current) != 0) continue;
    const bool caught = (current.sa_flags & SA_SIGINFO) != 0 ||
                        (current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN);
    if (caught || signal == SIGCHLD) {
      struct sigaction reset {};
      reset.sa_handler = SIG_DFL;
      ::sigaction(signal, &reset, nullptr);
    }
  }
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, STDIN_FILENO);  // dup2 clears close-on-exec on the copy
    if (null != STDIN_FILENO) ::close(null);
  }
}

class ForkBackend final : public Backend {
 public:
  std::string_view name() const noexcept override { return "fork"; }
  bool runs_plain_callables() const noexcept override { return true; }

  Receipt defer(Batch& batch, const RunOptions& options) override {
    std::fflush(nullptr);  // unflushed stdio would be printed again by the runner
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) sys::throw_os_error("fork driver: defer: pipe");
    sys::UniqueFd read_end(ends[0]);
    sys::UniqueFd write_end(ends[1]);
    const pid_t intermediate = ::fork();
    if (intermediate < 0) sys::throw_os_error("fork driver: defer: fork");
    if (intermediate == 0) {
      ::close(read_end.get());
      ::setsid();  // a session of its own: no terminal's hangup or Ctrl-C reaches the runner
      RunnerStarted started;
      started.pid = ::fork();
      if (started.pid == 0) {
        ::close(write_end.get());
        run_deferred(batch, options);
      }
      if (started.pid < 0) started.error = errno;
      (void)!::write(write_end.get(), &started, sizeof(started));
      ::_exit(0);
    }
    write_end.reset();
    RunnerStarted started;
    std::size_t got = 0;
    while (got < sizeof(started)) {
      const ssize_t n = ::read(read_end.get(), reinterpret_cast<char*>(&started) + got, sizeof(started) - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    // Reap the intermediate (it exits at once); ECHILD when the caller ignores SIGCHLD or reaped
    // it itself.
    sys::ChildProcess(intermediate, /*group_leader=*/false).wait();
    if (got != sizeof(started)) throw Error("fork driver: defer: the process starting the runner died");
    if (started.pid < 0) {
      sys::throw_os_error("fork driver: defer: fork of the runner", started.error);
    }
    return Receipt("fork-" + std::to_string(started.pid), "fork", batch.size());
  }

  void execute(Batch& batch, Results& results, const RunOptions& options) override {
    static std::once_flag warmed;
    std::call_once(warmed, warm_child_path);
    // With no cap, the width grows past one child per core while children wait (width.hpp).
    const bool capped = options.max_concurrency > 0;
    const std::size_t cores = sys::available_cores();
    const std::size_t maximum = capped ? options.max_concurrency : max_processes();
    std::vector<std::unique_ptr<ForkedChild>> running;
    const std::size_t total = batch.size();
    running.reserve(std::min(maximum, total));
    std::vector<pollfd> fds;
    std::size_t next = 0;
    bool cancelling = false;

    while (next < total || !running.empty()) {
      const auto now = Clock::now();
      // Children still working on their slot, and how many of them have turned slow.
      std::size_t busy = 0;
      std::size_t slow = 0;
      for (const auto& child : running) {
        if (child->delivered()) continue;
        ++busy;
        if (now - child->started() >= kSlowSlot) ++slow;
      }
      const std::size_t width = capped ? maximum : uncapped_width(slow, cores, maximum);
      if (!cancelling && results.cancelled()) {
        cancelling = true;
        next = total;  // start nothing more; finish() fails the slots never started
        for (auto& child : running) child->kill_for_cancel();
      }
      for (; next < total && busy < width; ++next, ++busy) start(batch.job(next), next, options, running, results);
      if (running.empty()) continue;

      fds.clear();
      auto nearest = Clock::time_point::max();
      for (const auto& child : running) {
        fds.push_back({child->pipe_fd(), POLLIN, 0});
        fds.push_back({child->pidfd(), POLLIN, 0});
        if (!child->timed_out()) nearest = std::min(nearest, child->deadline());
      }
      // Slots still waiting start as soon as a running child turns slow.
      if (!capped && next < total && width < maximum) {
        for (const auto& child : running) {
          if (!child->delivered() && child->started() + kSlowSlot > now) {
            nearest = std::min(nearest, child->started() + kSlowSlot);
          }
        }
      }
      // With a cancellation token, wake up now and then to look at it.
      int wait_ms = options.cancelled ? 50 : -1;
      if (nearest != Clock::time_point::max()) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(nearest - Clock::now()).count();
        wait_ms = static_cast<int>(std::clamp<long long>(left, 0, wait_ms < 0 ? 60'000 : wait_ms));
      }
      if (::poll(fds.data(), fds.size(), wait_ms) < 0 && errno != EINTR) {
        sys::throw_os_error("fork driver: poll");
      }

      const auto after = Clock::now();
      for (std::size_t i = running.size(); i-- > 0;) {
        ForkedChild& child = *running[i];
        if (fds[2 * i].revents != 0) child.drain();
        if (!child.timed_out() && after >= child.deadline()) child.kill_for_timeout();
        if (child.has_ended(fds[2 * i + 1].revents)) {
          child.finish(options, results);
          running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
        }
      }
    }
  }

 private:
  static void start(const Job& job, std::size_t index, const RunOptions& options,
                    std::vector<std::unique_ptr<ForkedChild>>& running, Results& results) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) {
      fail_to_start(results, index, "pipe");
      return;
    }
    sys::UniqueFd read_end(ends[0]);
    sys::UniqueFd write_end(ends[1]);
    // What the program (its progress and result callbacks included) printed into stdio buffers
    // since the last fork would otherwise be inherited and printed again by the child.
    std::fflush(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      fail_to_start(results, index, "fork");
      return;
    }
    if (pid == 0) {
      ::setpgid(0, 0);  // its own group, so a timeout also stops what the task started
      for (auto& sibling : running) {
        ::close(sibling->pipe_fd());
        ::close(sibling->pidfd());
      }
      ::close(read_end.get());
      run_child(job, index, write_end.get(), parent);
    }
    ::setpgid(pid, pid);  // both sides set it, so the group exists before either relies on it
    write_end.reset();
    ::fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
    const auto started = Clock::now();
    const auto deadline = options.timeout.count() > 0 ? started + options.timeout : Clock::time_point::max();
    running.push_back(std::make_unique<ForkedChild>(index, pid, std::move(read_end), started, deadline));
  }

  // The runner's whole life; never returns into the caller's code.
  [[noreturn]] void run_deferred(Batch& batch, const RunOptions& options) noexcept {
    int code = 0;
    char receipt[32];
    std::snprintf(receipt, sizeof(receipt), "fork-%ld", static_cast<long>(::getpid()));
    try {
      become_runner();
      RunOptions detached = options;  // nobody watches progress or holds a token in this process
      detached.on_progress = nullptr;
      detached.cancelled = nullptr;
      ReportingBatch reporting(batch, receipt);
      Results results(reporting, detached);
      execute(reporting, results, detached);
      results.finish();
      if (reporting.failed() > 0) {
        std::fprintf(stderr, "fanout: deferred batch %s: %zu of %zu tasks failed\n", receipt,
                     reporting.failed(), reporting.size());
        code = 1;
      }
    } catch (const std::exception& error) {
      std::fprintf(stderr, "fanout: deferred batch %s: the runner failed: %s\n", receipt, error.what());
      code = 2;
    } catch (...) {
      std::fprintf(stderr, "fanout: deferred batch %s: the runner failed\n", receipt);
      code = 2;
    }
    std::fflush(nullptr);
    ::_exit(code);
  }

  static void fail_to_start(Results& results, std::size_t index, const char* what) {
    results.failure(index, FailureInfo{ErrorKind::crashed, "",
                                       std::string("could not start a child: ") + sys::os_error(what).what(),
                                       "fork"});
  }
};

}  // namespace

std::shared_ptr<Backend> make_fork_backend() { return std::make_shared<ForkBackend>(); }

}  // namespace fanout::detail
