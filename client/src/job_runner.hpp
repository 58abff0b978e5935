// job_runner.hpp: running one job in this process, and turning what it threw into a FailureInfo.
// Shared by the sync driver, forked children and (later) worker executors.
#pragma once

#include <string>

#include <fanout/driver.hpp>
#include <fanout/task_error.hpp>
#include <fanout/value.hpp>

namespace fanout::detail {

// Runs `job` here and encodes its value into `out`. Throws what the task throws, UnknownTask for a
// name nobody registered, BadArguments for arguments that do not fit the task.
void run_job(const Job& job, ValueBuilder out);

// Classifies the exception being handled; call only inside a catch block.
FailureInfo failure_from_current_exception(std::string ran_on);

// Demangles a type name from typeid(...).name() or the exception ABI.
std::string demangle(const char* mangled);

}  // namespace fanout::detail
