// The consumer's task library (consumer_tasks.cpp, built against fanout::task_library and loaded by
// an installed fanout-worker) and the program that calls it (task_caller.cpp) both include this,
// so the calls carry the task's name and signature.
#pragma once

#include <string>

#include <fanout/task.hpp>

namespace consumer {

inline const fanout::Task echo_twice{"consumer.echo_twice", [](std::string word) { return word + " " + word; }};

}  // namespace consumer
