// os_error.hpp: how every part reports a failed system call: a std::system_error whose what()
// names the call and what it was for ("fork of executor host/1/0: Resource temporarily
// unavailable"), so that a log line or an exception message says which step failed and why.
#pragma once

#include <cerrno>
#include <string>
#include <system_error>

namespace fanout::sys {

// `what` names the call and its subject; `error` is the errno it failed with.
inline std::system_error os_error(std::string what, int error = errno) {
  return std::system_error(error, std::generic_category(), std::move(what));
}

[[noreturn]] inline void throw_os_error(std::string what, int error = errno) { throw os_error(std::move(what), error); }

}  // namespace fanout::sys
