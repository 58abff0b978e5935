// job_runner.cpp
#include "job_runner.hpp"

#include <string>

#include <fanout/task.hpp>

namespace fanout::detail {

void run_job(const Job& job, ValueBuilder out) {
  if (job.is_callable()) {
    job.run_callable(job.callable, out);
    return;
  }
  if (job.args == nullptr) throw BadArguments("task '" + std::string(job.task) + "' was sent without arguments");
  job.args->read([&](ValueReader decoded) { invoke_registered(job.task, decoded, out); });
}

}  // namespace fanout::detail
