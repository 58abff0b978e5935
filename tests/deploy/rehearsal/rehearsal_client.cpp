// The client of the deployment rehearsal (rehearsal_test.py): a program in a client pod of its
// own, pointed at the broker by its Service name (FANOUT_BROKER=tcp://fanout-broker:5555) with its
// CurveZMQ key (FANOUT_KEY, FANOUT_BROKER_KEY). It calls the example tasks, which the dev
// overlay's worker image carries.
//
//   rehearsal_client run COUNT             COUNT sleeps of 20-50 ms (slot i sleeps 20 + i % 31);
//                                          prints "progress N" every 10 results as they come,
//                                          then "run ok ..." once every slot came back exactly
//                                          once with its own value; exit 1 otherwise
//   rehearsal_client defer TAG COUNT FILE  defers COUNT appends of the line "TAG-i" to FILE;
//                                          prints "acknowledged TAG COUNT RECEIPT" once the
//                                          broker has journaled the batch; exit 1 if it refuses
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fanout/fanout.hpp>

#include "example_tasks.hpp"  // the worker image loads the library of these tasks

namespace {

int sleep_of(std::size_t slot) { return 20 + static_cast<int>(slot % 31); }

int run(std::size_t count) {
  std::vector<fanout::Call<int>> calls;
  for (std::size_t i = 0; i < count; ++i) calls.push_back(example::sleep_ms(sleep_of(i)));
  std::vector<int> seen(count, 0);
  std::size_t done = 0;
  const auto started = std::chrono::steady_clock::now();
  const auto results = fanout::Concurrency::driver("process").deadline(std::chrono::minutes(3)).run(
      calls, [&](std::size_t index, fanout::Outcome<int>&&) {
        ++seen[index];
        if (++done % 10 == 0) {
          std::printf("progress %zu\n", done);
          std::fflush(stdout);
        }
      });
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  int wrong = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (seen[i] != 1 || results[i] != sleep_of(i)) {
      std::printf("slot %zu came back %d time(s), with %d (expected %d)\n", i, seen[i], results[i], sleep_of(i));
      ++wrong;
    }
  }
  if (wrong > 0) return 1;
  std::printf("run ok: %zu slots, each once and right, in %lld ms\n", count, static_cast<long long>(took.count()));
  return 0;
}

int defer(const std::string& tag, std::size_t count, const std::string& file) {
  std::vector<fanout::Call<int>> calls;
  for (std::size_t i = 0; i < count; ++i) calls.push_back(example::append_line(file, tag + "-" + std::to_string(i)));
  const auto receipt = fanout::Concurrency::driver("process").timeout(std::chrono::seconds(20)).defer(calls);
  std::printf("acknowledged %s %zu %s\n", tag.c_str(), count, receipt.id().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "run") return run(std::stoul(args[1]));
    if (args.size() == 4 && args[0] == "defer") return defer(args[1], std::stoul(args[2]), args[3]);
    std::fprintf(stderr, "usage: rehearsal_client run COUNT | defer TAG COUNT FILE\n");
    return 2;
  } catch (const std::exception& error) {
    std::printf("rehearsal client: %s\n", error.what());
    return 1;
  }
}
