// Start-up checks that can only be seen from outside a program.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <string>

#include "child.hpp"

TEST_CASE("two tasks with one name stop the program at start-up with a clear message") {
  const auto exit = fanout_test::run_to_end({FANOUT_DUPLICATE_TASKS_PROGRAM}, {.merge_output = true});
  CHECK(exit.status != 0);
  CHECK(exit.out.find("two tasks are named 'startup.duplicate'") != std::string::npos);
  CHECK(exit.out.find("main() was reached") == std::string::npos);
}
