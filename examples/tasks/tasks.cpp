// libfanout-example-tasks.so: a task library for fanout-worker.
//
//   fanout-worker --connect tcp://127.0.0.1:5555 --load ./libfanout-example-tasks.so
//
// A task library holds only tasks: global fanout::Task objects register themselves when the
// library is loaded. It is built against fanout's headers alone and links no fanout code: the
// worker loads it with dlopen(RTLD_GLOBAL) and its references to fanout (register_task, the codec)
// resolve to the worker's own copy, so there is one task registry per process. A program that
// calls these tasks includes example_tasks.hpp to build its calls.
#include "example_tasks.hpp"
