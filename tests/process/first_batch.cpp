// Runs one small batch of slow tasks as its program's first, on the process driver in local mode,
// and prints how many different executors ran it ("executors N"): a small first batch starts its
// pool as wide as itself (process_backend.cpp, first_width).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <thread>
#include <vector>

#include <fanout/fanout.hpp>

const fanout::Task first_batch_pid{"first_batch.pid", [](int ms) {
                                     std::this_thread::sleep_for(std::chrono::milliseconds(ms));
                                     return static_cast<int>(::getpid());
                                   }};

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  const int count = argc > 1 ? std::atoi(argv[1]) : 3;
  const std::vector<fanout::Call<int>> calls(static_cast<std::size_t>(count), first_batch_pid(300));
  const auto pids = fanout::Concurrency::driver("process").run(calls);
  std::printf("executors %zu\n", std::set<int>(pids.begin(), pids.end()).size());
  return 0;
}
