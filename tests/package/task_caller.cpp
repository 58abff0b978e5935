// Calls the consumer's task library through a remote broker (FANOUT_BROKER) whose worker loaded
// it: proves that a library built against the installed fanout::task_library registers its tasks
// in the worker that loads it.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <fanout/fanout.hpp>

#include "consumer_tasks.hpp"

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  std::vector<fanout::Call<std::string>> calls{consumer::echo_twice("a"), consumer::echo_twice("b")};
  const auto results = fanout::Concurrency::driver("process").timeout(std::chrono::seconds(30)).run(calls);
  if (results != std::vector<std::string>{"a a", "b b"}) {
    std::printf("package task library: wrong results\n");
    return 1;
  }
  std::printf("package task library: ok (%s, %s)\n", results[0].c_str(), results[1].c_str());
  return 0;
}
