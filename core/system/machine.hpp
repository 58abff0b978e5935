// machine.hpp: facts about the machine a part runs on.
#pragma once

#include <string>
#include <string_view>

namespace fanout::sys {

// CPUs this process may run on (its affinity mask), at least 1.
unsigned available_cores() noexcept;

// This machine's host name; "localhost" when it cannot be read.
std::string host_name();

// Whether `host` names this machine's loopback: a literal 127.0.0.0/8 or ::1 (brackets allowed),
// or "localhost". Names of interfaces and other host names are not, even when they look alike
// ("127.0.0.1.example.com"): what may listen without authentication is decided by this.
bool is_loopback_host(std::string_view host);

}  // namespace fanout::sys
