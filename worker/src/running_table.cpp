// running_table.cpp
#include "running_table.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <new>
#include <system_error>
#include <utility>

namespace fanout::worker {

RunningTable::RunningTable(std::size_t count) : count_(count) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  bytes_ = ((std::max<std::size_t>(count, 1) * sizeof(RunningSlot) + page - 1) / page) * page;
  void* memory = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the running-task table");
  slots_ = static_cast<RunningSlot*>(memory);
  for (std::size_t i = 0; i < count_; ++i) new (&slots_[i]) RunningSlot();
}

RunningTable::~RunningTable() { release(); }

RunningTable::RunningTable(RunningTable&& other) noexcept
    : slots_(std::exchange(other.slots_, nullptr)),
      count_(std::exchange(other.count_, 0)),
      bytes_(std::exchange(other.bytes_, 0)) {}

RunningTable& RunningTable::operator=(RunningTable&& other) noexcept {
  if (this != &other) {
    release();
    slots_ = std::exchange(other.slots_, nullptr);
    count_ = std::exchange(other.count_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void RunningTable::release() noexcept {
  if (slots_ != nullptr) ::munmap(slots_, bytes_);
  slots_ = nullptr;
}

}  // namespace fanout::worker
