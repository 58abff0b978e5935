// sync_backend.cpp: the "sync" driver.
#include <chrono>
#include <string>

#include "backends.hpp"
#include "job_runner.hpp"

namespace fanout::detail {

namespace {

class SyncBackend final : public Backend {
 public:
  std::string_view name() const noexcept override { return "sync"; }
  bool runs_plain_callables() const noexcept override { return true; }

  void execute(std::span<const Job> jobs, std::span<SlotResult> results, const RunOptions& options) override {
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      SlotResult& result = results[i];
      result.failure.ran_on = "sync";
      const auto started = std::chrono::steady_clock::now();
      try {
        // The value is encoded and later decoded exactly as if it had crossed a process boundary.
        result.value = Payload::build([&](ValueBuilder out) { run_job(jobs[i], out); });
      } catch (...) {
        result.failure = failure_from_current_exception("sync");
        continue;
      }
      const auto elapsed = std::chrono::steady_clock::now() - started;
      if (options.timeout.count() > 0 && elapsed > options.timeout) {
        // The calling thread cannot be interrupted, so the task ran to its end; the slot still fails
        // as it would on the other drivers.
        result.value.reset();
        result.failure.kind = ErrorKind::timeout;
        result.failure.message =
            "exceeded its time limit of " + std::to_string(options.timeout.count()) + " ms (ran " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()) +
            " ms; the sync driver cannot stop a task early)";
      }
    }
  }
};

}  // namespace

std::shared_ptr<Backend> make_sync_backend() { return std::make_shared<SyncBackend>(); }

}  // namespace fanout::detail
