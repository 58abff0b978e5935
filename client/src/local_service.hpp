// local_service.hpp: where deferred batches go in local mode (no FANOUT_BROKER).
//
// A program may exit right after Concurrency::defer returns, so its deferred tasks cannot live in
// the program's own embedded broker. They go to the program's local service instead: the same
// program re-executed, detached (its own session, no parent to die with), running a broker with a
// journal and a worker pool of the program (so it serves the program's own tasks). One service per
// user and program: it listens on a socket file in the user's private runtime directory (see
// system/private_directory.hpp) named after its journal directory, keeps its journal under
// $XDG_STATE_HOME/fanout (~/.local/state/fanout, mode 0700), and stops itself once it has had
// nothing to do for a while (FANOUT_SERVICE_IDLE_MS, default 10 s). The next defer starts it
// again; its journal brings back whatever was still pending.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace fanout::detail {

// The endpoint of this program's local service, started first when it is not running. Throws
// fanout::Error when it cannot be started or does not answer.
std::string ensure_local_service();

// This program's local service endpoint and journal directory (whether or not it runs).
std::string local_service_endpoint();
std::filesystem::path local_service_directory();

// The same for the program at `program_path`, an absolute path with symlinks resolved (what
// /proc/self/exe reads in that program): for `fanout deferred --program PATH`. The service is
// that program re-executed with `arguments` (argv[0] first) and FANOUT_LOCAL_SERVICE=1.
std::string local_service_endpoint_for(const std::string& program_path);
std::filesystem::path local_service_directory_for(const std::string& program_path);
std::string ensure_local_service_for(const std::string& program_path, std::vector<std::string> arguments);

// Runs this process as the local service until it has been idle long enough; never returns.
[[noreturn]] void run_local_service();

}  // namespace fanout::detail
