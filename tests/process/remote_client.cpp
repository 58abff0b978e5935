// A client of a remote broker (FANOUT_BROKER), used by the multi-host tests. It declares the tasks
// it calls with the same names and signatures as the task library the workers load.
//
//   process_remote_client                 100 squares, each result checked
//   process_remote_client COUNT MS        COUNT sleeps of MS milliseconds; prints
//                                         "makespan_ms <ms>" once every slot came back once
//   process_remote_client --twice         the 100 squares twice in one program, each batch's
//                                         outcome printed; exit 1 if either failed
//   process_remote_client --executors N   waits (30 s at most) until the broker lists N
//                                         executors of N/2 workers; exit 1 if it never does
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include <fanout/fanout.hpp>

#include "example_tasks.hpp"  // the workers load the library of these tasks

#include "broker_queries.hpp"

namespace {

int squares() {
  std::vector<fanout::Call<int>> calls;
  for (int i = 0; i < 100; ++i) calls.push_back(example::square(i));
  const auto results = fanout::Concurrency::driver("process").timeout(std::chrono::seconds(30)).run(calls);
  for (int i = 0; i < 100; ++i) {
    if (results[static_cast<std::size_t>(i)] != i * i) {
      std::printf("remote client: wrong result at %d\n", i);
      return 1;
    }
  }
  std::printf("remote client: ok, %zu results\n", results.size());
  return 0;
}

int sleeps(int count, int ms) {
  const std::vector<fanout::Call<int>> calls(static_cast<std::size_t>(count), example::sleep_ms(ms));
  std::vector<int> seen(calls.size(), 0);
  const auto started = std::chrono::steady_clock::now();
  const auto results = fanout::Concurrency::driver("process").deadline(std::chrono::minutes(5)).run(
      calls, [&](std::size_t index, fanout::Outcome<int>&&) { ++seen[index]; });
  const auto makespan =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (results[i] != ms || seen[i] != 1) {
      std::printf("remote client: slot %zu came back %d times, with %d\n", i, seen[i], results[i]);
      return 1;
    }
  }
  std::printf("makespan_ms %lld\n", static_cast<long long>(makespan.count()));
  return 0;
}

// Read through the status API (fanout::link::query_counts), as the tests in C++ do.
int wait_for_executors(std::size_t executors) {
  const char* endpoint = std::getenv("FANOUT_BROKER");
  if (endpoint == nullptr) return 2;
  zmq::context_t context;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::optional<fanout::link::StatusCounts> counts;
  while (std::chrono::steady_clock::now() < deadline) {
    counts = fanout::link::query_counts(context, endpoint, std::chrono::seconds(2));
    if (counts && counts->executors == executors && counts->workers == executors / 2) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::printf("remote client: the broker lists %zu executor(s), not %zu\n", counts ? counts->executors : 0, executors);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  try {
    if (argc == 3 && std::string(argv[1]) == "--executors") return wait_for_executors(std::stoul(argv[2]));
    if (argc == 3) return sleeps(std::atoi(argv[1]), std::atoi(argv[2]));
    if (argc == 2 && std::string(argv[1]) == "--twice") {
      int failed = 0;
      for (int batch = 0; batch < 2; ++batch) {
        try {
          failed |= squares();
        } catch (const std::exception& error) {
          std::printf("remote client: batch %d: %s\n", batch + 1, error.what());
          std::fflush(stdout);
          failed = 1;
        }
      }
      return failed;
    }
    return squares();
  } catch (const std::exception& error) {
    std::printf("remote client: %s\n", error.what());
    return 1;
  }
}
