// Starts local mode, prints the pids of its worker and executors, then waits to be killed. With
// --driver-only it only gets the process driver, runs no batch, prints "ready" and waits.
#include <unistd.h>

#include <cstdio>
#include <set>
#include <string_view>
#include <thread>
#include <vector>

#include <fanout/fanout.hpp>

const fanout::Task victim_pid{"victim.pid", [] { return std::pair<int, int>(::getpid(), ::getppid()); }};

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  if (argc > 1 && std::string_view(argv[1]) == "--driver-only") {
    (void)fanout::Concurrency::driver("process");
    std::printf("ready\n");
    std::fflush(stdout);
    while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  std::vector<fanout::Call<std::pair<int, int>>> calls(32, victim_pid());
  std::set<int> pids;
  for (const auto& [pid, parent] : fanout::Concurrency::driver("process").run(calls)) {
    pids.insert(pid);
    pids.insert(parent);
  }
  for (const int pid : pids) std::printf("%d\n", pid);
  std::printf("ready\n");
  std::fflush(stdout);
  while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
}
