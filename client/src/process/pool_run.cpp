// pool_run.cpp: results and waiting, shared by local and remote pools.
#include "process/pool_run.hpp"

namespace fanout::detail {

PoolRun::PoolRun(std::vector<ProcessSpec> specs, OutputCallback output)
    : specs_(std::move(specs)), output_(std::move(output)), results_(specs_.size()) {}

PoolRun::~PoolRun() = default;

std::size_t PoolRun::pending() const {
  const std::lock_guard lock(mutex_);
  return results_.size() - settled_;
}

bool PoolRun::all_settled() const {
  const std::lock_guard lock(mutex_);
  return settled_ == results_.size();
}

void PoolRun::settle(std::size_t index, ProcessOutcome outcome) {
  {
    const std::lock_guard lock(mutex_);
    if (index >= results_.size() || results_[index]) return;
    const ProcessSpec& spec = specs_[index];
    results_[index].emplace(spec.key, spec.command.value_or(ProcessCommand(std::vector<std::string>{})),
                            std::move(outcome));
    ++settled_;
    if (settled_ < results_.size()) return;
  }
  settled_cv_.notify_all();
}

void PoolRun::deliver(OutputType type, std::string_view text, std::size_t index) {
  if (!output_ || callback_error_) return;
  try {
    output_(type, text, specs_[index].key);
  } catch (...) {
    callback_error_ = std::current_exception();
  }
}

PoolResults PoolRun::wait() {
  std::unique_lock lock(mutex_);
  settled_cv_.wait(lock, [this] { return settled_ == results_.size(); });
  // Every process settled, so the engine no longer calls the callback: its error is safe to read.
  if (callback_error_) std::rethrow_exception(callback_error_);
  std::vector<ProcessResult> results;
  results.reserve(results_.size());
  for (const auto& result : results_) results.push_back(*result);
  return PoolResults(std::move(results));
}

bool PoolRun::wait_for(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex_);
  return settled_cv_.wait_for(lock, limit, [this] { return settled_ == results_.size(); });
}

}  // namespace fanout::detail
