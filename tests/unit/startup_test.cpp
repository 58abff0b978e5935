// Start-up checks that can only be seen from outside a program.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "test_support.hpp"

TEST_CASE("two tasks with one name stop the program at start-up with a clear message") {
  const auto exit = fanout_test::run_capturing(FANOUT_DUPLICATE_TASKS_PROGRAM);
  CHECK(exit.status != 0);
  CHECK(exit.text.find("two tasks are named 'startup.duplicate'") != std::string::npos);
  CHECK(exit.text.find("main() was reached") == std::string::npos);
}
