// joblog.hpp: GNU parallel's --joblog (one tab-separated line per finished job) and what --resume
// and --resume-failed read back from it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>
#include <unordered_set>

#include <fanout/process.hpp>

namespace fanout::tool {

// The joblog's Host column: ":" for this machine, else the worker from ran_on().
std::string joblog_host(const std::string& ran_on);
// The worker a remote job ran on, from its ran_on ("worker host-a/77 pid 1234" -> "host-a/77");
// empty for a local job.
std::string worker_of(const std::string& ran_on);

// One joblog line (no newline). `started` is wall-clock time; `sent` the bytes given on stdin
// (--pipe), `received` the bytes of stdout.
std::string joblog_line(std::size_t seq, const ProcessResult& result, std::chrono::system_clock::time_point started,
                        std::size_t sent, std::size_t received);

class Joblog {
 public:
  Joblog() = default;  // no joblog
  enum class Mode {
    fresh,           // truncated, header first
    append,          // --joblog +FILE: appended to, never a header (as GNU parallel)
    append_or_fresh  // --resume: appended to a joblog that has lines, else fresh
  };
  // Opens `path` ("-": stdout, fresh). Throws std::system_error when it cannot be written.
  Joblog(const std::string& path, Mode mode);
  ~Joblog();
  Joblog(const Joblog&) = delete;
  Joblog& operator=(const Joblog&) = delete;

  explicit operator bool() const noexcept { return file_ != nullptr; }
  // Writes and flushes one line (written as jobs end, so that a killed run leaves a usable log).
  void write(const std::string& line);

 private:
  std::FILE* file_ = nullptr;
  bool owned_ = false;
};

// The sequence numbers --resume skips: every job in the joblog at `path` (`failed_too` false:
// --resume-failed, only those that succeeded, exit value 0 and no signal). A missing file is an
// empty log. Throws UsageError for a file that is not a joblog.
std::unordered_set<std::size_t> finished_jobs(const std::string& path, bool failed_too);

}  // namespace fanout::tool
