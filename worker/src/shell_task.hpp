// shell_task.hpp: a `fanout.shell` task (a command of a fanout::Process pool or `fanout run
// --broker`) run to its end by an executor of an --allow-shell worker.
//
// The command runs as a child of the executor in a process group of its own (the core's child
// table: posix_spawn, its timeout and idle timeout enforced, stdin from the task's input). Its
// group is written to the executor's running slot, so that a supervisor whose executor dies can
// stop what the command left running.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <fanout/command.hpp>

#include "child_table.hpp"
#include "running_table.hpp"
#include "transport.hpp"

namespace fanout::worker {

class ShellTask {
 public:
  // Live output of the running command (when its client asked for it).
  using OnOutput = std::function<void(OutputType type, std::string_view text)>;

  // `ran_on_prefix`: "worker <id>"; `running`: the executor's slot in the supervisor's table;
  // `pass_env`: the names (or globs) of this process's variables that commands also get
  // (`fanout-worker --pass-env`); commands never get the rest (Environment::declared).
  ShellTask(std::string ran_on_prefix, RunningSlot& running, std::vector<std::string> pass_env = {});

  // Runs the command `task` describes and writes how it ended into `result` (a `shell` outcome,
  // the value `none`). Calls `on_output` with each chunk while it runs when the task asks to
  // stream; blocks until the command has ended.
  void run(wire::Task::Reader task, wire::Result::Builder result, const OnOutput& on_output);

 private:
  const std::string ran_on_prefix_;
  RunningSlot& running_;
  const std::vector<std::string> pass_env_;
  std::shared_ptr<const detail::Environment> environment_;  // declared at the first command
};

}  // namespace fanout::worker
