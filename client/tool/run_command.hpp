// run_command.hpp: `fanout run`, GNU-parallel-like. main.cpp parses the command line into
// RunOptions (run_options.hpp) and calls run() (run_loop.cpp). Here: the rules every part shares,
// usage errors, --halt and exit statuses.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

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

// A job's exit status as GNU parallel reports it: the exit code, 128+N for signal N, 255 (its -1)
// for a timed-out job.
int job_status(const ProcessResult& result);

struct RunOptions;  // run_options.hpp

// Runs every job; returns the exit status (see above). Reads stdin when the options say so.
// Throws UsageError for bad input found once running (a missing input file, a bad joblog), and
// fanout::Error (or std::system_error) for errors of the tool itself; the caller exits 255.
int run(const RunOptions& options);

}  // namespace fanout::tool
