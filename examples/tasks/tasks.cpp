// libfanout-example-tasks.so: a task library for fanout-worker.
//
//   fanout-worker --connect tcp://127.0.0.1:5555 --load ./libfanout-example-tasks.so
//
// A task library holds only tasks: global fanout::Task objects register themselves when the
// library is loaded. It is built against fanout's headers alone and links no fanout code: the
// worker loads it with dlopen(RTLD_GLOBAL) and its references to fanout (register_task, the codec)
// resolve to the worker's own copy, so there is one task registry per process. A program that
// calls these tasks defines the same names (or links the same sources) to build its calls.
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <fanout/task.hpp>

namespace {

const fanout::Task square{"example.square", [](int x) { return x * x; }};

// Joins `parts` with `separator` between them: concat(", ", {"a", "b"}) == "a, b".
const fanout::Task concat{"example.concat", [](std::string separator, std::vector<std::string> parts) {
                            std::string joined;
                            for (std::size_t i = 0; i < parts.size(); ++i) {
                              if (i > 0) joined += separator;
                              joined += parts[i];
                            }
                            return joined;
                          }};

// Takes down the process running it, the way a segfault or the OOM killer would: what a worker
// does when it loses an executor mid-task can be tested with it.
const fanout::Task crash{"example.crash", [](int) -> int {
                           ::raise(SIGKILL);
                           return 0;
                         }};

// Sleeps `ms` milliseconds and returns it: a task that takes a known time.
const fanout::Task sleep_ms{"example.sleep_ms", [](int ms) {
                              std::this_thread::sleep_for(std::chrono::milliseconds(ms));
                              return ms;
                            }};

}  // namespace
