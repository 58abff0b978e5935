// shell_task.cpp
#include "shell_task.hpp"

#include <poll.h>

#include <cerrno>
#include <optional>
#include <vector>

#include "system/poll_timeout.hpp"

namespace fanout::worker {

namespace {

// A shell command task as a process spec (fanout::Process pools sent it).
detail::ProcessSpec shell_spec(wire::Task::Reader task) {
  const auto shell = task.getShell();
  detail::ProcessSpec spec;
  if (shell.getUseShell()) {
    spec.command.emplace(std::string(shell.getScript().cStr(), shell.getScript().size()));
  } else {
    std::vector<std::string> argv;
    for (const auto word : shell.getArgv()) argv.emplace_back(word.cStr(), word.size());
    spec.command.emplace(std::move(argv));
  }
  if (shell.getWorkingDirectory().size() > 0) spec.path = std::string(shell.getWorkingDirectory().cStr());
  for (const auto variable : shell.getEnv()) {
    std::string name(variable.getName().cStr(), variable.getName().size());
    if (variable.getUnset()) {
      spec.env.emplace_back(std::move(name), std::nullopt);
    } else {
      spec.env.emplace_back(std::move(name), std::string(variable.getValue().cStr(), variable.getValue().size()));
    }
  }
  if (shell.getHasInput()) {
    const auto input = shell.getInput();
    spec.input.emplace(reinterpret_cast<const char*>(input.begin()), input.size());
  }
  spec.timeout = std::chrono::milliseconds(task.getTimeoutMs());
  spec.idle_timeout = std::chrono::milliseconds(shell.getIdleTimeoutMs());
  spec.quiet = shell.getQuiet();
  return spec;
}

}  // namespace

ShellTask::ShellTask(std::string ran_on_prefix, RunningSlot& running, std::vector<std::string> pass_env)
    : ran_on_prefix_(std::move(ran_on_prefix)), running_(running), pass_env_(std::move(pass_env)) {}

void ShellTask::run(wire::Task::Reader task, wire::Result::Builder result, const OnOutput& on_output) {
  const detail::ProcessSpec spec = shell_spec(task);
  const bool stream = task.getShell().getStream() && !spec.quiet && on_output;
  // A remote client's command: the declared environment, not this worker's own (which may hold
  // the operator's secrets), plus what the client sent (spec.env).
  if (!environment_) environment_ = detail::Environment::declared(pass_env_);
  std::optional<detail::ProcessOutcome> outcome;
  detail::ChildTable children(
      [&](std::size_t, OutputType type, std::string_view text) {
        if (stream) on_output(type, text);
      },
      [&](std::size_t, detail::ProcessOutcome ended) { outcome = std::move(ended); }, ran_on_prefix_,
      // Not the worker's own command: it must not run on, unowned, if this executor is killed.
      detail::ChildLifetime::kDiesWithThisProcess);
  children.start(0, spec, *environment_);
  if (const auto pid = children.pid_of(0)) running_.set_shell_group(*pid);
  std::vector<pollfd> fds;
  while (!outcome) {
    fds.clear();
    const auto until = children.prepare(fds);
    if (::poll(fds.data(), fds.size(), sys::poll_timeout_ms(until)) < 0 && errno != EINTR) {
      children.stop_all(std::chrono::milliseconds(0));
    }
    children.handle(fds, 0);
  }
  running_.set_shell_group(0);
  auto shell = result.initShell();
  shell.setExitCode(outcome->exit_code);
  shell.setSignal(outcome->signal);
  shell.setTimedOut(outcome->timed_out);
  shell.setIdleTimedOut(outcome->idle_timed_out);
  shell.setStarted(outcome->started);
  shell.setOutput(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(outcome->output.data()), outcome->output.size()));
  shell.setErrorOutput(
      capnp::Data::Reader(reinterpret_cast<const kj::byte*>(outcome->error_output.data()), outcome->error_output.size()));
  result.setExitCode(outcome->exit_code);
  result.initValue();  // `none`: the outcome is in `shell`
  result.setRanOn(outcome->ran_on);
}

}  // namespace fanout::worker
