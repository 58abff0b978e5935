// child_table.cpp
#include "child_table.hpp"

#include <fcntl.h>
#include <fnmatch.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string_view>

#include "system/child_process.hpp"
#include "system/descriptors.hpp"
#include "system/signals.hpp"
#include "system/spawn.hpp"
#include "system/unique_fd.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace fanout::detail {

using sys::UniqueFd;

namespace {

using Clock = ChildTable::Clock;

// After a timeout or stop(): how long a process group gets between TERM and KILL.
constexpr auto kTimeoutGrace = std::chrono::milliseconds(200);
// Without pidfds (kernels before 5.3), how often a child is polled for its end.
constexpr auto kReapPollInterval = std::chrono::milliseconds(10);
// Output read from one descriptor per wake-up at most, so that one chatty child cannot starve the
// others (or the caller's loop).
constexpr std::size_t kReadBudget = 1 << 18;

// Signals the parent ignores stay ignored across exec; the child gets them back at default. Read
// once: asking the kernel for every signal on every spawn would cost more than the spawn's
// other bookkeeping.
const sigset_t& signals_to_default() {
  static const sigset_t set = [] {
    sigset_t s;
    ::sigemptyset(&s);
    for (int signal = 1; signal < SIGRTMIN; ++signal) {
      struct sigaction action {};
      if (signal == SIGKILL || signal == SIGSTOP) continue;
      if (::sigaction(signal, nullptr, &action) == 0 && action.sa_handler == SIG_IGN) ::sigaddset(&s, signal);
    }
    // SIGPIPE is the usual one to be ignored later by a library (ZeroMQ users do it): always reset it.
    ::sigaddset(&s, SIGPIPE);
    return s;
  }();
  return set;
}

bool is_directory(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

}  // namespace

// ---- Environment ----------------------------------------------------------------------------

std::shared_ptr<const Environment> Environment::capture() {
  auto environment = std::make_shared<Environment>();
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) environment->entries_.emplace_back(*entry);
  for (auto& entry : environment->entries_) environment->pointers_.push_back(entry.data());
  environment->pointers_.push_back(nullptr);
  return environment;
}

std::shared_ptr<const Environment> Environment::declared(const std::vector<std::string>& pass) {
  static const char* const defaults[] = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR"};
  const auto wanted = [&](const std::string& name) {
    const auto matches = [&](const char* pattern) { return ::fnmatch(pattern, name.c_str(), 0) == 0; };
    return std::any_of(std::begin(defaults), std::end(defaults), matches) ||
           std::any_of(pass.begin(), pass.end(), [&](const std::string& p) { return matches(p.c_str()); });
  };
  auto environment = std::make_shared<Environment>();
  std::vector<std::string>& entries = environment->entries_;
  const auto has = [&](std::string_view name) {
    return std::any_of(entries.begin(), entries.end(), [&](const std::string& entry) {
      return entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 && entry[name.size()] == '=';
    });
  };
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const auto equals = text.find('=');
    if (equals == std::string_view::npos || equals == 0) continue;
    if (wanted(std::string(text.substr(0, equals)))) entries.emplace_back(text);
  }
  if (!has("PATH")) entries.emplace_back("PATH=/usr/local/bin:/usr/bin:/bin");
  if (!has("HOME") || !has("USER") || !has("LOGNAME")) {
    if (const passwd* user = ::getpwuid(::geteuid()); user != nullptr) {
      if (!has("HOME")) entries.emplace_back(std::string("HOME=") + user->pw_dir);
      if (!has("USER")) entries.emplace_back(std::string("USER=") + user->pw_name);
      if (!has("LOGNAME")) entries.emplace_back(std::string("LOGNAME=") + user->pw_name);
    }
  }
  if (!has("SHELL")) entries.emplace_back("SHELL=/bin/sh");
  for (auto& entry : entries) environment->pointers_.push_back(entry.data());
  environment->pointers_.push_back(nullptr);
  return environment;
}

std::vector<std::string> Environment::with(const ProcessSpec& spec) const {
  if (spec.env.empty()) return {};
  std::vector<std::string> entries = entries_;
  for (const auto& [name, value] : spec.env) {
    const auto same_name = [&name = name](const std::string& entry) {
      return entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 && entry[name.size()] == '=';
    };
    entries.erase(std::remove_if(entries.begin(), entries.end(), same_name), entries.end());
    if (value) entries.push_back(name + "=" + *value);
  }
  return entries;
}

// ---- ChildTable -----------------------------------------------------------------------------

struct ChildTable::Child {
  std::size_t slot = 0;
  sys::ChildProcess process;  // a process group of its own (posix_spawn's SETPGROUP)
  std::string ran_on;         // "<prefix> pid <pid>"
  UniqueFd out;
  UniqueFd err;
  UniqueFd in;
  std::string input;
  std::size_t input_written = 0;
  bool quiet = false;
  Clock::time_point started;
  Clock::time_point last_output;
  std::chrono::milliseconds idle_timeout{0};
  Clock::time_point deadline = Clock::time_point::max();  // the timeout
  Clock::time_point kill_at = Clock::time_point::max();   // KILL due after a TERM
  bool timed_out = false;
  bool idle_timed_out = false;
  std::optional<int> status;  // its wait status, once reaped
  std::string output;
  std::string error_output;
  // Entries this child put in the poll set in prepare(): pidfd, out, err, in (-1: none).
  int poll_index[4] = {-1, -1, -1, -1};

  Clock::time_point idle_deadline() const noexcept {
    return idle_timeout.count() > 0 ? last_output + idle_timeout : Clock::time_point::max();
  }
};

ChildTable::ChildTable(OnOutput on_output, OnExit on_exit, std::string ran_on_prefix, ChildLifetime lifetime)
    : on_output_(std::move(on_output)),
      on_exit_(std::move(on_exit)),
      ran_on_prefix_(std::move(ran_on_prefix)),
      lifetime_(lifetime) {
  (void)signals_to_default();
}

// Each child's ChildProcess kills its group and reaps it.
ChildTable::~ChildTable() = default;

void ChildTable::start(std::size_t slot, const ProcessSpec& spec, const Environment& environment) {
  const auto started = Clock::now();
  auto cannot_start = [&](int exit_code, std::string why) {
    ProcessOutcome outcome;
    outcome.exit_code = exit_code;
    outcome.error_output = "fanout: " + why + "\n";
    outcome.ran_on = ran_on_prefix_;
    on_exit_(slot, std::move(outcome));
  };
  if (!spec.command) return cannot_start(127, "no command was given");
  const ProcessCommand& command = *spec.command;
  if (!command.uses_shell() && command.argv().empty()) return cannot_start(127, "the command is an empty argv list");
  if (spec.path && !is_directory(*spec.path)) {
    return cannot_start(126, "cannot run '" + command.to_string() + "': working directory '" + *spec.path +
                                 "' does not exist or is not a directory");
  }

  auto child = std::make_unique<Child>();
  child->slot = slot;
  child->quiet = spec.quiet;
  sys::Pipe in, out, err;
  if ((spec.input && !in.open()) || (!spec.quiet && (!out.open() || !err.open()))) {
    return cannot_start(126, std::string("cannot create pipes: ") + std::strerror(errno));
  }

  const std::vector<std::string> changed_env = environment.with(spec);
  std::vector<char*> env_pointers;
  if (!changed_env.empty() || !spec.env.empty()) {
    for (const auto& entry : changed_env) env_pointers.push_back(const_cast<char*>(entry.c_str()));
    env_pointers.push_back(nullptr);
  }

  static const char* const kShell = "/bin/sh";
  std::vector<char*> argv;
  if (command.uses_shell()) {
    argv = {const_cast<char*>(kShell), const_cast<char*>("-c"), const_cast<char*>(command.line().c_str()), nullptr};
  } else {
    for (const auto& word : command.argv()) argv.push_back(const_cast<char*>(word.c_str()));
    argv.push_back(nullptr);
  }
  sys::SpawnPlan plan;
  plan.file = argv[0];
  plan.search_path = !command.uses_shell();
  plan.argv = argv.data();
  plan.envp = env_pointers.empty() ? environment.pointers() : env_pointers.data();
  plan.stdin_fd = spec.input ? in.read.get() : -1;
  plan.stdout_fd = spec.quiet ? -1 : out.write.get();
  plan.stderr_fd = spec.quiet ? -1 : err.write.get();
  plan.directory = spec.path ? spec.path->c_str() : nullptr;
  plan.signals_to_default = &signals_to_default();
  plan.dies_with_parent = lifetime_ == ChildLifetime::kDiesWithThisProcess;
  const sys::Spawned spawned = sys::spawn(plan);
  if (spawned.error != 0) {
    const std::string what = command.uses_shell() ? std::string(kShell) : command.argv()[0];
    if (spawned.error == ENOENT) return cannot_start(127, "cannot run '" + command.to_string() + "': " + what + ": command not found");
    return cannot_start(126, "cannot run '" + command.to_string() + "': " + what + ": " + std::strerror(spawned.error));
  }
  const pid_t pid = spawned.pid;

  child->process = sys::ChildProcess(pid);
  child->ran_on = ran_on_prefix_ + " pid " + std::to_string(pid);
  child->started = started;
  child->last_output = started;
  child->idle_timeout = spec.idle_timeout;
  if (spec.timeout.count() > 0) child->deadline = started + spec.timeout;
  if (spec.input) {
    child->in = std::move(in.write);
    sys::set_nonblocking(child->in.get());
    child->input = *spec.input;
    if (child->input.empty()) child->in.reset();  // empty input: stdin at end of file at once
  }
  if (!spec.quiet) {
    child->out = std::move(out.read);
    child->err = std::move(err.read);
    sys::set_nonblocking(child->out.get());
    sys::set_nonblocking(child->err.get());
  }
  children_.push_back(std::move(child));
}

std::vector<std::size_t> ChildTable::running_slots() const {
  std::vector<std::size_t> slots;
  for (const auto& child : children_) slots.push_back(child->slot);
  return slots;
}

std::optional<pid_t> ChildTable::pid_of(std::size_t slot) const {
  for (const auto& child : children_) {
    if (child->slot == slot) return child->process.pid();
  }
  return std::nullopt;
}

Clock::time_point ChildTable::prepare(std::vector<pollfd>& fds) {
  Clock::time_point earliest = Clock::time_point::max();
  for (const auto& child : children_) {
    auto add = [&](int which, const UniqueFd& fd, short events) {
      child->poll_index[which] = -1;
      if (!fd) return;
      child->poll_index[which] = static_cast<int>(fds.size());
      fds.push_back(pollfd{fd.get(), events, 0});
    };
    child->poll_index[0] = -1;
    if (child->process.pidfd() >= 0) {
      child->poll_index[0] = static_cast<int>(fds.size());
      fds.push_back(pollfd{child->process.pidfd(), POLLIN, 0});
    }
    add(1, child->out, POLLIN);
    add(2, child->err, POLLIN);
    add(3, child->in, POLLOUT);
    if (child->process.pidfd() < 0) earliest = std::min(earliest, Clock::now() + kReapPollInterval);
    earliest = std::min({earliest, child->deadline, child->idle_deadline(), child->kill_at});
  }
  return earliest;
}

void ChildTable::handle(const std::vector<pollfd>& fds, std::size_t first) {
  (void)first;  // each child remembers its own entries
  auto ready = [&](int index) { return index >= 0 && fds[static_cast<std::size_t>(index)].revents != 0; };
  char buffer[65536];
  auto drain = [&](Child& child, UniqueFd& fd, OutputType type) {
    std::size_t budget = child.status ? SIZE_MAX : kReadBudget;
    while (fd && budget > 0) {
      const ssize_t got = ::read(fd.get(), buffer, sizeof(buffer));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && errno == EAGAIN) return;
      if (got <= 0) {  // end of file (or an error, which ends the stream the same way)
        fd.reset();
        return;
      }
      budget -= std::min<std::size_t>(budget, static_cast<std::size_t>(got));
      child.last_output = Clock::now();
      const std::string_view text(buffer, static_cast<std::size_t>(got));
      (type == OutputType::out ? child.output : child.error_output).append(text);
      if (on_output_) on_output_(child.slot, type, text);
    }
  };

  for (auto& child : children_) {
    if (ready(child->poll_index[1])) drain(*child, child->out, OutputType::out);
    if (ready(child->poll_index[2])) drain(*child, child->err, OutputType::err);
    if (ready(child->poll_index[3])) {
      sys::block_sigpipe_on_this_thread();
      while (child->in && child->input_written < child->input.size()) {
        const ssize_t wrote =
            ::write(child->in.get(), child->input.data() + child->input_written, child->input.size() - child->input_written);
        if (wrote < 0 && errno == EINTR) continue;
        if (wrote < 0 && errno == EAGAIN) break;
        if (wrote < 0) {  // EPIPE: the child closed its stdin; the rest is not wanted
          sys::consume_sigpipe();
          child->in.reset();
          break;
        }
        child->input_written += static_cast<std::size_t>(wrote);
      }
      if (child->input_written >= child->input.size()) {
        child->in.reset();
        std::string().swap(child->input);
      }
    }
    if (child->process.pidfd() < 0 || ready(child->poll_index[0])) {
      // A timed-out command's whole group goes, not just its leader.
      child->status = child->process.try_reap(child->timed_out);
    }
  }
  check_deadlines(Clock::now());

  // Ended children: whatever they wrote before they ended is in the pipes now; take it, then
  // report. Descendants that still hold the pipes open do not hold the result back.
  std::vector<std::unique_ptr<Child>> ended;
  for (auto it = children_.begin(); it != children_.end();) {
    if ((*it)->status) {
      drain(**it, (*it)->out, OutputType::out);
      drain(**it, (*it)->err, OutputType::err);
      ended.push_back(std::move(*it));
      it = children_.erase(it);
    } else {
      ++it;
    }
  }
  const auto now = Clock::now();
  for (auto& child : ended) {
    ProcessOutcome outcome;
    outcome.started = true;
    outcome.signal = WIFSIGNALED(*child->status) ? WTERMSIG(*child->status) : 0;
    outcome.exit_code = sys::shell_exit_code(*child->status);
    outcome.timed_out = child->timed_out;
    outcome.idle_timed_out = child->idle_timed_out;
    outcome.output = std::move(child->output);
    outcome.error_output = std::move(child->error_output);
    outcome.ran_on = std::move(child->ran_on);
    outcome.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(now - child->started);
    on_exit_(child->slot, std::move(outcome));
  }
}

void ChildTable::check_deadlines(Clock::time_point now) {
  for (auto& child : children_) {
    if (child->status) continue;
    if (!child->timed_out && (now >= child->deadline || now >= child->idle_deadline())) {
      child->timed_out = true;
      child->idle_timed_out = now < child->deadline;
      child->process.signal_group(SIGTERM);
      child->kill_at = now + kTimeoutGrace;
    } else if (now >= child->kill_at) {
      child->process.signal_group(SIGKILL);
      child->kill_at = Clock::time_point::max();
    }
  }
}

void ChildTable::signal_all(int signal) noexcept {
  for (const auto& child : children_) {
    if (!child->status) child->process.signal_group(signal);
  }
}

void ChildTable::stop_all(std::chrono::milliseconds grace) noexcept {
  const auto kill_at = Clock::now() + grace;
  for (auto& child : children_) {
    if (child->status) continue;
    child->process.signal_group(SIGTERM);
    child->kill_at = std::min(child->kill_at, kill_at);
  }
}

}  // namespace fanout::detail
