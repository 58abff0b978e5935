// program.hpp: how this program was started, as recorded by fanout::init, and the roles a copy of
// it takes when fanout re-executes it (local mode's worker pool, the local service).
#pragma once

#include <string>
#include <vector>

namespace fanout::detail {

// Set in the environment of a re-executed local worker; its value is the broker endpoint.
inline constexpr const char* kWorkerRoleVariable = "FANOUT_LOCAL_WORKER";
// How many executors a local worker runs (default: the number of cores).
inline constexpr const char* kWorkerProcessesVariable = "FANOUT_PROCESSES";
// Set (to 1) in the environment of the program re-executed as its local service.
inline constexpr const char* kServiceRoleVariable = "FANOUT_LOCAL_SERVICE";
// Exit code of a re-executed program that reached a batch without calling fanout::init.
inline constexpr int kForgotInitExitCode = 70;

// The running executable (/proc/self/exe resolved), for re-executing it.
std::string program_path();
// argv as given to fanout::init (empty when init was not called).
std::vector<std::string> program_arguments();

}  // namespace fanout::detail
