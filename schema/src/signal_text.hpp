// signal_text.hpp: a signal as people read it in messages and logs, shared by every part.
#pragma once

#include <string.h>

#include <string>

namespace fanout::detail {

// "signal 9 (SIGKILL, Killed)"; just "signal 70" for a number the C library does not know.
inline std::string describe_signal(int signal) {
  std::string text = "signal " + std::to_string(signal);
  const char* name = ::sigabbrev_np(signal);
  const char* description = ::sigdescr_np(signal);
  if (name != nullptr && description != nullptr) {
    text += std::string(" (SIG") + name + ", " + description + ")";
  } else if (name != nullptr) {
    text += std::string(" (SIG") + name + ")";
  }
  return text;
}

}  // namespace fanout::detail
