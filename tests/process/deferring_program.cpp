// A program that defers one task on the process driver in local mode (no FANOUT_BROKER) and
// returns from main() at once, printing the receipt. The task runs in the program's local
// service: it writes argv[2] once argv[1] exists (the test creates it after this program exited).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <fanout/fanout.hpp>

namespace {

const fanout::Task write_when{"test.write_when", [](std::string go, std::string done) {
                                const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
                                while (!std::filesystem::exists(go) && std::chrono::steady_clock::now() < give_up) {
                                  std::this_thread::sleep_for(std::chrono::milliseconds(5));
                                }
                                std::ofstream(done + ".partial") << "ran\n";
                                std::filesystem::rename(done + ".partial", done);
                                return 0;
                              }};

}  // namespace

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  if (argc != 3) {
    std::fprintf(stderr, "usage: deferring_program GO_FILE DONE_FILE\n");
    return 2;
  }
  const auto receipt = fanout::Concurrency::defer(write_when(std::string(argv[1]), std::string(argv[2])));
  std::printf("%s\n", receipt.id().c_str());
  return 0;
}
