// link_keeper.cpp: see link_keeper.hpp.
#include "link_keeper.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "batch_link.hpp"

namespace fanout::link::keeper {

namespace {

// Often enough that a due heartbeat leaves late by a fifth of its interval at most.
constexpr std::chrono::milliseconds kTick{100};

struct Keeper {
  std::mutex mutex;
  std::condition_variable wake;
  std::vector<BatchLink*> links;
  pid_t thread_of = 0;  // the process whose keeper thread runs; another after fork()
  pid_t links_of = 0;   // the process whose links are listed
};

// Never destroyed: its thread may still run while statics are destroyed at exit.
Keeper& the_keeper() {
  static auto* keeper = [] {
    auto* made = new Keeper;
    // fork() waits for the keeper's lock and holds it across the fork: a child never starts with
    // the lock held by a thread it does not have (its first watch() would wait forever).
    ::pthread_atfork([] { the_keeper().mutex.lock(); }, [] { the_keeper().mutex.unlock(); },
                     [] { the_keeper().mutex.unlock(); });
    return made;
  }();
  return *keeper;
}

void keep(Keeper& keeper) {
  std::unique_lock lock(keeper.mutex);
  for (;;) {
    keeper.wake.wait(lock, [&] { return !keeper.links.empty(); });
    keeper.wake.wait_for(lock, kTick);
    const auto now = BatchLink::Clock::now();
    for (BatchLink* link : keeper.links) link->beat_if_lent(now);
  }
}

}  // namespace

void watch(BatchLink& link) {
  Keeper& keeper = the_keeper();
  const std::lock_guard lock(keeper.mutex);
  // In a child forked since, the links listed are the parent's copies.
  if (keeper.links_of != ::getpid()) {
    keeper.links.clear();
    keeper.links_of = ::getpid();
  }
  keeper.links.push_back(&link);
  if (keeper.thread_of != ::getpid()) {
    try {
      std::thread(keep, std::ref(keeper)).detach();
      keeper.thread_of = ::getpid();
    } catch (const std::system_error& error) {
      // Without it the batch still runs; only a callback longer than the broker's patience
      // risks it being dropped and sent again.
      std::fprintf(stderr,
                   "fanout: no thread to heartbeat during callbacks (%s); a callback of seconds may have the broker "
                   "drop the batch\n",
                   error.what());
    }
  }
  keeper.wake.notify_one();
}

void unwatch(BatchLink& link) noexcept {
  Keeper& keeper = the_keeper();
  const std::lock_guard lock(keeper.mutex);
  keeper.links.erase(std::remove(keeper.links.begin(), keeper.links.end(), &link), keeper.links.end());
}

}  // namespace fanout::link::keeper
