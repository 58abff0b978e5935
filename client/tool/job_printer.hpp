// job_printer.hpp: how the output of `fanout run`'s jobs reaches stdout and stderr.
//
// - group (default): a job's output whole when it ends: its stdout to stdout, its stderr to
//   stderr, never mixed with another job's;
// - --line-buffer: whole lines as they come (lines of different jobs interleave, never mid-line);
// - -u: chunks as they come, even half lines (--tag does not apply, as in GNU parallel);
// - -k: in input order; with --line-buffer the oldest unfinished job streams, the others wait.
// --tag puts a job's tag and a TAB before each of its lines; -v puts its command line before its
// output.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>

#include <fanout/process.hpp>

#include "run_options.hpp"

namespace fanout::tool {

// Writes all of a text to a descriptor. A reader that went away (EPIPE) is not an error of the
// jobs: the rest of that stream is dropped.
class Sink {
 public:
  explicit Sink(int fd) : fd_(fd) {}
  void write(std::string_view text);

 private:
  int fd_;
  bool closed_ = false;
};

class JobPrinter {
 public:
  // `before_writing` is called before anything is written (to clear a progress line).
  JobPrinter(OutputMode mode, bool keep_order, bool tag, Sink& out, Sink& err, std::function<void()> before_writing);

  // Job `seq` has started; `tag` is its --tag text; `command_line` its command when -v.
  void started(std::size_t seq, std::string tag, const std::string& command_line);
  // Output of a running job, as it arrives (--line-buffer and -u only).
  void output(std::size_t seq, OutputType type, std::string_view text);
  // A failed job will run again (--retries): what it wrote so far is dropped where it can be.
  void restarting(std::size_t seq);
  // Job `seq` is over: `out` and `err` are its whole output (group mode; ignored otherwise, the
  // printer has it). Not printed when `print` is false (--halt now killed it, or --results).
  void finished(std::size_t seq, const std::string& out, const std::string& err, bool print);
  // A job that does not run (--resume found it done): nothing to print, but -k moves past it.
  void skipped(std::size_t seq);
  // Text not belonging to a job (--dry-run's lines), printed at once.
  void print_now(std::string_view out);

 private:
  struct Job {
    std::string tag;
    std::string out;  // streamed modes: not printed yet
    std::string err;
    std::string command_line;  // group mode with -v
  };
  struct Ready {
    std::string out;
    std::string err;
    std::string tag;
    bool print = true;
  };
  bool may_print(std::size_t seq) const { return !keep_order_ || seq == next_to_print_; }
  void print(std::string_view out, std::string_view err, const std::string& tag);
  void print_lines(Job& job);
  void release_in_order();

  const OutputMode mode_;
  const bool keep_order_;
  const bool tag_;
  Sink& out_;
  Sink& err_;
  std::function<void()> before_writing_;
  std::unordered_map<std::size_t, Job> jobs_;  // started, not finished
  std::map<std::size_t, Ready> ready_;          // -k: finished, waiting for their turn
  std::size_t next_to_print_ = 1;
};

}  // namespace fanout::tool
