// machine.hpp: facts about the machine a part runs on.
#pragma once

#include <string>

namespace fanout::sys {

// CPUs this process may run on (its affinity mask), at least 1.
unsigned available_cores() noexcept;

// This machine's host name; "localhost" when it cannot be read.
std::string host_name();

}  // namespace fanout::sys
