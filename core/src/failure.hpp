// failure.hpp: what a task threw, as the FailureInfo that travels back to the caller. Shared by
// every place a job runs: the sync driver, forked children and worker executors.
#pragma once

#include <string>

#include <fanout/task_error.hpp>

namespace fanout::detail {

// Classifies the exception being handled (UnknownTask, BadArguments, any std::exception with its
// demangled type, kj::Exception, anything else); call only inside a catch block.
FailureInfo failure_from_current_exception(std::string ran_on);

// Demangles a type name from typeid(...).name() or the exception ABI, spelling standard types the
// way users write them (std::string, not std::__cxx11::basic_string<...>).
std::string demangle(const char* mangled);

}  // namespace fanout::detail
