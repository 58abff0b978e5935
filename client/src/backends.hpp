// backends.hpp: the driver engines behind the names "sync", "fork" and "process".
#pragma once

#include <memory>

#include <fanout/driver.hpp>

namespace fanout::detail {

// Runs each slot in order in the calling process, through the same encode/decode path as the
// other drivers, so that it is a faithful stand-in in tests.
std::shared_ptr<Backend> make_sync_backend();

// Forks a child per slot, at most max_concurrency at once; results come back through pipes.
std::shared_ptr<Backend> make_fork_backend();

// The ZeroMQ broker and worker pool driver.
std::shared_ptr<Backend> make_process_backend();

}  // namespace fanout::detail
