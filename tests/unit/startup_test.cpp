// Start-up checks that can only be seen from outside a program.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace {

struct Exit {
  int status = 0;
  std::string output;
};

Exit run_capturing(const std::string& command) {
  Exit result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  while (const std::size_t got = std::fread(buffer, 1, sizeof(buffer), pipe)) result.output.append(buffer, got);
  result.status = ::pclose(pipe);
  return result;
}

}  // namespace

TEST_CASE("two tasks with one name stop the program at start-up with a clear message") {
  const Exit exit = run_capturing(FANOUT_DUPLICATE_TASKS_PROGRAM);
  CHECK(exit.status != 0);
  CHECK(exit.output.find("two tasks are named 'startup.duplicate'") != std::string::npos);
  CHECK(exit.output.find("main() was reached") == std::string::npos);
}
