// machine.cpp
#include "system/machine.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

namespace fanout::sys {

unsigned available_cores() noexcept {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
  return static_cast<unsigned>(std::max<long>(1, ::sysconf(_SC_NPROCESSORS_ONLN)));
}

std::string host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace fanout::sys
