// process.cpp: the public Process, Pool and result classes; the engines are in pool_run.hpp.
#include <fanout/process.hpp>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "process/pool_run.hpp"

namespace fanout {

namespace {

// Remote pools by configuration: a program's pools go to this broker without a code change.
std::string configured_broker() {
  const char* endpoint = std::getenv("FANOUT_PROCESS_BROKER");
  return endpoint != nullptr ? endpoint : "";
}

std::unique_ptr<detail::PoolRun> start_run(std::vector<detail::ProcessSpec> specs, std::size_t concurrency,
                                           OutputCallback output, std::string broker) {
  if (broker.empty()) broker = configured_broker();
  if (broker.empty()) return detail::start_local(std::move(specs), concurrency, std::move(output));
  return detail::start_remote(std::move(specs), concurrency, std::move(output), broker);
}

}  // namespace

// ---- results ----------------------------------------------------------------------------------

const ProcessResult& ProcessResult::throw_if_failed() const {
  if (failed()) throw ProcessFailed(*this);
  return *this;
}

namespace {

std::string failure_message(const ProcessResult& result) {
  std::string message = "The command \"" + result.command() + "\" failed.\n\nExit Code: " +
                        std::to_string(result.exit_code());
  if (result.idle_timed_out()) {
    message += " (no output for longer than its idle timeout)";
  } else if (result.timed_out()) {
    message += " (it exceeded its timeout)";
  } else if (result.signal() != 0) {
    message += " (killed by signal " + std::to_string(result.signal()) + ")";
  }
  message += "\n\nOutput:\n================\n" + result.output();
  message += "\n\nError Output:\n================\n" + result.error_output();
  return message;
}

}  // namespace

ProcessFailed::ProcessFailed(ProcessResult result) : Error(failure_message(result)), result_(std::move(result)) {}

const ProcessResult& PoolResults::operator[](std::string_view key) const {
  for (const auto& result : results_) {
    if (result.key() == key) return result;
  }
  throw std::out_of_range("no process in the pool has the key '" + std::string(key) + "'");
}

bool PoolResults::contains(std::string_view key) const noexcept {
  return std::any_of(results_.begin(), results_.end(), [&](const ProcessResult& r) { return r.key() == key; });
}

bool PoolResults::successful() const noexcept {
  return std::all_of(results_.begin(), results_.end(), [](const ProcessResult& r) { return r.successful(); });
}

std::vector<std::string> PoolResults::keys() const {
  std::vector<std::string> keys;
  for (const auto& result : results_) keys.push_back(result.key());
  return keys;
}

// ---- PendingProcess ---------------------------------------------------------------------------

PendingProcess& PendingProcess::command(ProcessCommand command) {
  spec_.command = std::move(command);
  return *this;
}
PendingProcess& PendingProcess::as(std::string key) {
  spec_.key = std::move(key);
  return *this;
}
PendingProcess& PendingProcess::forever() {
  spec_.timeout = spec_.idle_timeout = std::chrono::milliseconds(0);
  return *this;
}
PendingProcess& PendingProcess::path(std::string working_directory) {
  spec_.path = std::move(working_directory);
  return *this;
}
PendingProcess& PendingProcess::env(std::string name, std::string value) {
  spec_.env.emplace_back(std::move(name), std::move(value));
  return *this;
}
PendingProcess& PendingProcess::env(const std::map<std::string, std::string>& variables) {
  for (const auto& [name, value] : variables) spec_.env.emplace_back(name, value);
  return *this;
}
PendingProcess& PendingProcess::without_env(std::string name) {
  spec_.env.emplace_back(std::move(name), std::nullopt);
  return *this;
}
PendingProcess& PendingProcess::input(std::string data) {
  spec_.input = std::move(data);
  return *this;
}
PendingProcess& PendingProcess::quietly() {
  spec_.quiet = true;
  return *this;
}
PendingProcess& PendingProcess::broker(std::string endpoint) {
  broker_ = std::move(endpoint);
  return *this;
}

ProcessResult PendingProcess::run() const { return start().wait(); }

ProcessResult PendingProcess::run(ProcessCommand command) const { return start(std::move(command)).wait(); }

InvokedProcess PendingProcess::start(OutputCallback output) const {
  detail::ProcessSpec spec = spec_;
  if (spec.key.empty()) spec.key = "0";
  std::vector<detail::ProcessSpec> specs{std::move(spec)};
  return InvokedProcess(InvokedPool(start_run(std::move(specs), 1, std::move(output), broker_)));
}

InvokedProcess PendingProcess::start(ProcessCommand command, OutputCallback output) const {
  PendingProcess copy = *this;
  copy.command(std::move(command));
  return copy.start(std::move(output));
}

// ---- pools ------------------------------------------------------------------------------------

PendingProcess& Pool::as(std::string key) { return add().as(std::move(key)); }

PendingProcess& Pool::command(ProcessCommand command) { return add().command(std::move(command)); }

PendingProcess& Pool::add(PendingProcess process) { return processes_.emplace_back(std::move(process)); }

PendingPool::PendingPool(const std::function<void(Pool&)>& build) {
  Pool pool;
  build(pool);
  for (std::size_t position = 0; position < pool.processes_.size(); ++position) {
    detail::ProcessSpec spec = pool.processes_[position].spec();
    if (spec.key.empty()) spec.key = std::to_string(position);
    const bool taken = std::any_of(specs_.begin(), specs_.end(), [&](const auto& s) { return s.key == spec.key; });
    if (taken) throw Error("two processes of the pool have the key '" + spec.key + "'");
    if (!pool.processes_[position].broker_endpoint().empty()) broker_ = pool.processes_[position].broker_endpoint();
    specs_.push_back(std::move(spec));
  }
}

PendingPool& PendingPool::concurrency(std::size_t limit) {
  concurrency_ = limit;
  return *this;
}

PendingPool& PendingPool::broker(std::string endpoint) {
  broker_ = std::move(endpoint);
  return *this;
}

InvokedPool PendingPool::start(OutputCallback output) const {
  return InvokedPool(start_run(specs_, concurrency_, std::move(output), broker_));
}

PoolResults PendingPool::wait() const { return start().wait(); }

InvokedPool::InvokedPool(std::unique_ptr<detail::PoolRun> run) : run_(std::move(run)) {}
InvokedPool::~InvokedPool() = default;  // the engine stops and reaps what still runs
InvokedPool::InvokedPool(InvokedPool&&) noexcept = default;
InvokedPool& InvokedPool::operator=(InvokedPool&&) noexcept = default;

std::vector<std::string> InvokedPool::running() const { return run_->running(); }
std::size_t InvokedPool::pending() const { return run_->pending(); }
void InvokedPool::signal(int signal) { run_->signal(signal); }
PoolResults InvokedPool::stop(std::chrono::milliseconds grace) {
  run_->request_stop(grace);
  return run_->wait();
}
PoolResults InvokedPool::wait() { return run_->wait(); }
bool InvokedPool::wait_for(std::chrono::milliseconds limit) { return run_->wait_for(limit); }

}  // namespace fanout
