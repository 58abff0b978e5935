// fanout/init.hpp: the one call every program using fanout makes first.
#pragma once

namespace fanout {

// Call at the top of main(), before anything else runs. It records how to re-execute this program
// (the process driver starts its local workers that way) and, when this process *is* such a
// worker, serves tasks and exits without returning. Safe to call more than once.
void init(int argc, char** argv);

// True once init() has run in this process.
bool initialized() noexcept;

}  // namespace fanout
