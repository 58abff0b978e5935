// A task library for `fanout-worker --load`, built the way a user builds one: a MODULE linking
// fanout::task_library from the installed package, and nothing else.
#include "consumer_tasks.hpp"
