// A client of a remote broker (FANOUT_BROKER), used by the multi-host tests. It declares the task
// it calls with the same name and signature as the task library the workers load.
#include <cstdio>
#include <vector>

#include <fanout/fanout.hpp>

const fanout::Task square{"example.square", [](int x) { return x * x; }};

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  std::vector<fanout::Call<int>> calls;
  for (int i = 0; i < 100; ++i) calls.push_back(square(i));
  try {
    const auto results = fanout::Concurrency::driver("process").timeout(std::chrono::seconds(30)).run(calls);
    for (int i = 0; i < 100; ++i) {
      if (results[static_cast<std::size_t>(i)] != i * i) {
        std::printf("remote client: wrong result at %d\n", i);
        return 1;
      }
    }
    std::printf("remote client: ok, %zu results\n", results.size());
    return 0;
  } catch (const std::exception& error) {
    std::printf("remote client: %s\n", error.what());
    return 1;
  }
}
