// Starts local mode, prints the pids of its worker and executors, then waits to be killed.
#include <unistd.h>

#include <cstdio>
#include <set>
#include <thread>
#include <vector>

#include <fanout/fanout.hpp>

const fanout::Task victim_pid{"victim.pid", [] { return std::pair<int, int>(::getpid(), ::getppid()); }};

int main(int argc, char** argv) {
  fanout::init(argc, argv);
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
