// A program that defers one task on the fork driver and returns from main() at once, printing the
// receipt. The task outlives it: it waits for the file argv[2] to appear (the test creates it
// after this program has exited), then writes argv[3] with what it sees of its process: its
// parent's pid and where its stdin leads.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fanout/fanout.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: deferring_caller GO_FILE DONE_FILE\n");
    return 2;
  }
  const std::filesystem::path go = argv[1];
  const std::filesystem::path done = argv[2];
  const fanout::Receipt receipt = fanout::Concurrency::driver("fork").defer([go, done] {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!std::filesystem::exists(go) && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::error_code ignored;
    const auto stdin_target = std::filesystem::read_symlink("/proc/self/fd/0", ignored);
    const auto partial = done.string() + ".partial";
    {
      std::ofstream out(partial);
      out << ::getppid() << '\n' << stdin_target.string() << '\n';
    }
    std::filesystem::rename(partial, done);  // the test sees the whole file or none
  });
  std::printf("%s\n", receipt.id().c_str());
  return 0;
}
