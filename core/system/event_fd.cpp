// event_fd.cpp
#include "system/event_fd.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "system/os_error.hpp"

namespace fanout::sys {

EventFd::EventFd() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!fd_) throw_os_error("eventfd");
}

void EventFd::notify() const noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto written = ::write(fd_.get(), &one, sizeof(one));
}

void EventFd::clear() const noexcept {
  std::uint64_t count = 0;
  [[maybe_unused]] const auto got = ::read(fd_.get(), &count, sizeof(count));
}

}  // namespace fanout::sys
