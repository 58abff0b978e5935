// A program in local mode (no FANOUT_BROKER) that keeps two tasks running for a while: what
// `fanout status --program` looks at. Prints "running" before its batch, exits 0 after it.
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include <fanout/fanout.hpp>

namespace {
const fanout::Task nap{"ops_test.nap", [](int seconds) {
                         std::this_thread::sleep_for(std::chrono::seconds(seconds));
                         return seconds;
                       }};
}

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  std::printf("running\n");
  std::fflush(stdout);
  fanout::Concurrency::run(std::vector<fanout::Call<int>>{nap(30), nap(30)});
  return 0;
}
