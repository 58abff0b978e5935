// A program whose one task always throws, for `fanout deferred`'s tests. Started with
// FANOUT_WORKER=<broker> it is a worker serving that task; otherwise it defers a keyed batch of
// two such tasks (to FANOUT_BROKER, or in local mode to its own local service), prints the
// receipt and exits.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fanout/fanout.hpp>

namespace {

const fanout::Task always_fails{"tool_test.always_fails", [](int n) -> int {
                                  throw std::runtime_error("task " + std::to_string(n) + " failed on purpose");
                                }};

}  // namespace

int main(int argc, char** argv) {
  fanout::init(argc, argv);  // as a worker or as the local service: serves and never returns
  std::vector<std::pair<std::string, fanout::Call<int>>> batch{{"first", always_fails(1)}, {"second", always_fails(2)}};
  try {
    const fanout::Receipt receipt = fanout::Concurrency::defer(batch);
    std::printf("%s\n", receipt.id().c_str());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "failing_program: %s\n", error.what());
    return 1;
  }
  return 0;
}
