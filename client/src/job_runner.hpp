// job_runner.hpp: running one slot of a batch in this process, as the sync driver and forked
// children do (worker executors run registered tasks straight through the registry).
#pragma once

#include <fanout/driver.hpp>
#include <fanout/value.hpp>

namespace fanout::detail {

// Runs `job` here and encodes its value into `out`. Throws what the task throws, UnknownTask for a
// name nobody registered, BadArguments for arguments that do not fit the task. Failures are
// classified by failure_from_current_exception (failure.hpp).
void run_job(const Job& job, ValueBuilder out);

}  // namespace fanout::detail
