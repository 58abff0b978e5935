// run_command.hpp: `fanout run`, GNU-parallel-like. main.cpp parses the flags into RunOptions and
// calls run(); the pieces below (command templates, inputs, halt policy, joblog lines, exit
// status) are separate so that each rule lives in one place.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fanout/process.hpp>

namespace fanout::tool {

// Exit statuses of `fanout run` (GNU parallel's): 0 every job succeeded; 1-100 that many jobs
// failed; 101 more than 100 failed; 255 bad usage or another error of the tool itself. With
// --halt ...,fail=1 the status is the failing job's own (255 for a timed-out one).
constexpr int kRunExitTooManyFailed = 101;
constexpr int kRunExitError = 255;

// A mistake in the command line; main prints it with the usage hint and exits 255.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// --halt: when to stop early. `never` (the default) runs every job whatever happens.
struct HaltPolicy {
  enum class When { never, soon, now };  // soon: start no new jobs; now: also kill running ones
  enum class Why { fail, success, done };
  When when = When::never;
  Why why = Why::fail;
  std::size_t count = 0;

  // "never", "soon,fail=3", "now,fail=1", "now,success=1", "soon,done=10", and GNU parallel's
  // old forms 0, 1 (soon,fail=1), 2 (now,fail=1). Percentages are refused. Throws UsageError.
  static HaltPolicy parse(std::string_view text);
};

// A command line with placeholders: {} (every argument, each shell-quoted, joined by spaces),
// {N} (argument N of a combination, from 1), {#} (the job's sequence number, from 1). A command
// without any placeholder gets the arguments appended, quoted, after a space.
class CommandTemplate {
 public:
  explicit CommandTemplate(std::string text);
  // The shell line of job `seq` for `arguments` (one per ::: group).
  std::string expand(std::size_t seq, const std::vector<std::string>& arguments) const;
  // The highest N of the {N} placeholders; 0 when there is none.
  std::size_t highest_argument() const noexcept;

 private:
  struct Part {
    enum class Kind { text, all_arguments, argument, seq } kind;
    std::string text;        // Kind::text
    std::size_t number = 0;  // Kind::argument, from 1
  };
  std::vector<Part> parts_;
  std::size_t highest_argument_ = 0;
};

// The combinations of several ::: groups, GNU parallel's order (the last group varies fastest),
// computed one at a time: nothing of size product is ever built.
class Combinations {
 public:
  // Throws UsageError when the number of combinations does not fit in 64 bits.
  explicit Combinations(std::vector<std::vector<std::string>> groups);
  std::size_t size() const noexcept { return size_; }
  // Combination number `index` (from 0) into `out` (reused to spare allocations).
  void get(std::size_t index, std::vector<std::string>& out) const;

 private:
  std::vector<std::vector<std::string>> groups_;
  std::size_t size_ = 0;
};

// A line of GNU parallel's joblog (no newline). `started` is wall-clock time.
std::string joblog_header();
std::string joblog_line(std::size_t seq, const ProcessResult& result, std::chrono::system_clock::time_point started,
                        std::size_t received_bytes);
// The joblog's Host column: ":" for this machine, else the worker from ran_on().
std::string joblog_host(const std::string& ran_on);

// A job's exit status as GNU parallel reports it: the exit code, 128+N for signal N, 255 (its -1)
// for a timed-out job.
int job_status(const ProcessResult& result);

struct RunOptions {
  std::size_t jobs = 0;  // at once; 0: the number of cores (local) or 16 in flight (remote)
  std::optional<std::chrono::milliseconds> timeout;
  bool tag = false;
  bool keep_order = false;
  bool line_buffer = false;
  bool progress = false;
  std::string joblog;   // path; empty: none
  std::string broker;   // empty: run here
  HaltPolicy halt;
  std::string command;  // the words before the first :::, joined by spaces
  // The ::: groups, in order; none: one argument per line of stdin.
  std::vector<std::vector<std::string>> groups;
  bool read_stdin = true;
};

// Splits `words` (everything after run's own flags) into the command and the ::: groups.
// Throws UsageError when there is no command.
void split_command(const std::vector<std::string>& words, RunOptions& options);

// Runs every job; returns the exit status (see above). Reads stdin when options.read_stdin.
// Throws fanout::Error (or std::system_error) for errors of the tool itself (the caller exits 255).
int run(const RunOptions& options);

}  // namespace fanout::tool
