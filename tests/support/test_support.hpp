// test_support.hpp: the small helpers every test area uses: the environment and a directory for a
// scope, files, waiting on a condition with a deadline, and what /proc says about processes.
// Processes the tests start themselves are child.hpp's; brokers and workers are cluster.hpp's.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace fanout_test {

// How long a test waits for something that should happen "soon" when nothing more precise is
// known. Generous: the tests must pass on two busy cores and under sanitizers, and a passing test
// never waits it out.
inline constexpr std::chrono::milliseconds kPatience{15000};

// Polls `condition` every 5 ms until it holds or `limit` passes; returns whether it held.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return condition();
}

// ---- the environment and the file system, for a scope -----------------------------------------

// Sets (or, with nullptr, unsets) an environment variable for a scope, then puts back what was there.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// A fresh directory under the system's temporary directory, removed with everything in it at the
// end of the scope. Move-only; a moved-from TempDir owns nothing. Throws std::system_error.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// The whole content of a file, byte for byte; empty when it cannot be read (not there yet).
std::string read_file(const std::filesystem::path& path);
// Replaces the file's content with `bytes`.
void write_file(const std::filesystem::path& path, const std::string& bytes);
// Creates an empty file (or empties it): the marker a job or a command waits for.
void touch(const std::filesystem::path& path);

// Points this process's stdout and stderr (or stderr alone) at `file` for a scope, then back.
// Processes forked meanwhile keep the file.
class RedirectedOutput {
 public:
  enum Streams { stdout_and_stderr, stderr_only };
  explicit RedirectedOutput(const std::filesystem::path& file, Streams streams = stdout_and_stderr);
  ~RedirectedOutput();
  RedirectedOutput(const RedirectedOutput&) = delete;
  RedirectedOutput& operator=(const RedirectedOutput&) = delete;

 private:
  int saved_out_ = -1;
  int saved_err_ = -1;
};

// ---- processes, as /proc sees them ---------------------------------------------------------------

// Field `field` (1-based, as in proc(5): 3 is the state, 4 the parent, 6 the session) of
// /proc/<pid>/stat; nullopt when the process is gone.
std::optional<std::string> stat_field(pid_t pid, int field);
// The parent of `pid`; nullopt when it is gone.
std::optional<pid_t> parent_of(pid_t pid);
// Processes (zombies included) whose parent is `parent`: a worker's executors, say.
std::vector<pid_t> children_of(pid_t parent);
// Processes (zombies included) whose parent is this process.
int child_count();
// Whether `pid` exists (a zombie does).
bool process_alive(pid_t pid);
// Whether `pid` has ended: gone, or a zombie nobody has reaped yet. Either way it runs nothing.
bool process_ended(pid_t pid);

// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER): processes
// whose parent a test killed come back to it, so that reap_orphans() can reap them rather than
// leave zombies to an init that may never reap them (as in some containers).
void become_subreaper();
// Reaps every child of this process, waiting up to `limit` for those still running. Call only
// when no child is owned by anyone (a Child would lose its exit status).
void reap_orphans(std::chrono::milliseconds limit = std::chrono::seconds(5));

}  // namespace fanout_test
