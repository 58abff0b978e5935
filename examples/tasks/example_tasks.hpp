// example_tasks.hpp: the example tasks, declared where both sides can see them. The task library
// (tasks.cpp, libfanout-example-tasks.so) defines them by including this header; a program that
// calls them includes it too, so that its calls carry the same names and signatures:
//
//   #include "example_tasks.hpp"
//   auto squares = fanout::Concurrency::run(example::square(2), example::square(3));
//
// Header-only, fanout's public headers alone: nothing to link.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fanout/task.hpp>

namespace example {

inline const fanout::Task square{"example.square", [](int x) { return x * x; }};

// Joins `parts` with `separator` between them: concat(", ", {"a", "b"}) == "a, b".
inline const fanout::Task concat{"example.concat", [](std::string separator, std::vector<std::string> parts) {
  std::string joined;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) joined += separator;
    joined += parts[i];
  }
  return joined;
}};

// Takes down the process running it, the way a segfault or the OOM killer would: what a worker
// does when it loses an executor mid-task can be tested with it.
inline const fanout::Task crash{"example.crash", [](int) -> int {
  ::raise(SIGKILL);
  return 0;
}};

// Sleeps `ms` milliseconds and returns it: a task that takes a known time.
inline const fanout::Task sleep_ms{"example.sleep_ms", [](int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}};

// Appends `line` and a newline to the file at `path` (made 0666 if missing) in one O_APPEND
// write, so that lines from many processes never interleave; returns the bytes written. A task
// with an effect someone can count: the deployment rehearsal (tests/deploy/rehearsal) defers these
// and counts the lines, since nobody collects a deferred task's value.
inline const fanout::Task append_line{"example.append_line", [](std::string path, std::string line) {
  line += '\n';
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  const auto written = ::write(fd, line.data(), line.size());
  ::close(fd);
  if (written != static_cast<ssize_t>(line.size())) throw std::runtime_error("cannot append to " + path);
  return static_cast<int>(written);
}};

}  // namespace example
