// sync_backend.cpp: the "sync" driver.
#include <atomic>
#include <chrono>
#include <optional>
#include <string>

#include "backends.hpp"
#include "failure.hpp"
#include "job_runner.hpp"

namespace fanout::detail {

namespace {

class SyncBackend final : public Backend {
 public:
  std::string_view name() const noexcept override { return "sync"; }
  bool runs_plain_callables() const noexcept override { return true; }

  void execute(Batch& batch, Results& results, const RunOptions& options) override {
    for (std::size_t i = 0; i < batch.size() && !results.cancelled(); ++i) {
      const Job job = batch.job(i);
      const auto started = std::chrono::steady_clock::now();
      std::optional<Payload> value;
      try {
        // The value is encoded and decoded exactly as if it had crossed a process boundary.
        value = Payload::build([&](ValueBuilder out) { run_job(job, out); });
      } catch (...) {
        results.failure(i, failure_from_current_exception("sync"));
        continue;
      }
      const auto elapsed = std::chrono::steady_clock::now() - started;
      if (options.timeout.count() > 0 && elapsed > options.timeout) {
        // The calling thread cannot be interrupted, so the task ran to its end; the slot still fails
        // as it would on the other drivers.
        results.failure(
            i, FailureInfo{ErrorKind::timeout, "",
                           "exceeded its time limit of " + std::to_string(options.timeout.count()) + " ms (ran " +
                               std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()) +
                               " ms; the sync driver cannot stop a task early)",
                           "sync"});
        continue;
      }
      value->read([&](ValueReader reader) { results.value(i, reader, "sync"); });
    }
  }

  // Runs the batch here and now, like run: a stand-in for the other drivers in tests. A failed slot
  // is not swallowed (nothing would report it): the first one is rethrown after the whole batch ran.
  Receipt defer(Batch& batch, const RunOptions& options) override {
    static std::atomic<std::uint64_t> deferred{0};
    const std::string id = "sync-" + std::to_string(deferred.fetch_add(1, std::memory_order_relaxed) + 1);
    RunOptions quiet = options;  // progress and cancellation are for batches someone waits on
    quiet.on_progress = nullptr;
    quiet.cancelled = nullptr;
    Results results(batch, quiet);
    execute(batch, results, quiet);
    results.finish();
    if (const auto failed = results.first_failure()) {
      throw make_task_error(*results.failure_of(*failed), batch.job(*failed), *failed);
    }
    return Receipt(id, "sync", batch.size());
  }
};

}  // namespace

std::shared_ptr<Backend> make_sync_backend() { return std::make_shared<SyncBackend>(); }

}  // namespace fanout::detail
