// event_fd.hpp: a wake-up another thread can give a poll loop (an eventfd).
#pragma once

#include "system/unique_fd.hpp"

namespace fanout::sys {

// Any thread may notify(); the loop polls fd() for POLLIN and calls clear() when it wakes.
// Notifications coalesce: one wake-up covers every notify() since the last clear().
class EventFd {
 public:
  // Throws std::system_error when the kernel refuses an eventfd.
  EventFd();

  int fd() const noexcept { return fd_.get(); }
  void notify() const noexcept;
  void clear() const noexcept;

 private:
  UniqueFd fd_;
};

}  // namespace fanout::sys
