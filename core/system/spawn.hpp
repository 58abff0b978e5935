// spawn.hpp: starting a command in a process group of its own, the one way fanout's parts do it
// (Process pools, `fanout run`, workers' shell tasks).
//
// Two lifetimes. A plain spawn (posix_spawn: no copy of the caller's memory) may outlive the
// process that started it if that process is killed outright; its owner kills the group on every
// other path. A guarded spawn does not: the command runs under a small guardian process, the
// leader of the command's group, which the kernel tells when its parent dies (PR_SET_PDEATHSIG)
// even when the parent was SIGKILLed, and which then kills the whole group. Workers use it, so
// that a remote client's command never runs on, unowned, after its worker is gone (and runs a
// second time where the broker sent the task next).
//
// The guardian is invisible to the owner: its pid is the group's id, it exits with the command's
// exit code or dies by the command's signal, and a signal the owner sends to the group reaches the
// command as before. What it cannot catch: a command that leaves the group (setsid, setpgid) and
// a parent thread that exits while its process lives on (PR_SET_PDEATHSIG is per thread).
#pragma once

#include <signal.h>
#include <sys/types.h>

namespace fanout::sys {

struct SpawnPlan {
  const char* file = nullptr;  // the program: a path, or a name looked up in PATH (search_path)
  bool search_path = false;
  char* const* argv = nullptr;  // null-terminated, argv[0] first
  char* const* envp = nullptr;  // null-terminated
  int stdin_fd = -1;            // descriptors placed on 0, 1 and 2; -1: /dev/null
  int stdout_fd = -1;
  int stderr_fd = -1;
  const char* directory = nullptr;                // working directory, when set
  const sigset_t* signals_to_default = nullptr;   // dispositions reset to default (the mask is emptied always)
  bool dies_with_parent = false;                  // under a guardian (see above)
};

struct Spawned {
  pid_t pid = -1;  // the leader of the command's process group (the guardian when guarded)
  int error = 0;   // an errno value when the command could not start (pid is then -1)
};

// Starts `plan`. Returns once the command runs (its exec succeeded) or could not start; allocates
// nothing after forking, so it is safe in a multi-threaded process.
Spawned spawn(const SpawnPlan& plan) noexcept;

}  // namespace fanout::sys
