// process_backend.cpp: the "process" driver (ZeroMQ broker and worker processes).
#include "backends.hpp"

namespace fanout::detail {

namespace {

// Until the broker and workers land, the process driver says so instead of pretending: creating it
// is harmless (empty batches and driver lookups work), running a batch is a clear error.
class ProcessBackend final : public Backend {
 public:
  std::string_view name() const noexcept override { return "process"; }
  bool runs_plain_callables() const noexcept override { return false; }

  void execute(Batch&, Results&, const RunOptions&) override {
    throw Error(
        "the 'process' driver is not built yet: its broker and workers are still to come. "
        "Set FANOUT_DRIVER=fork (or sync), or use Concurrency::driver(\"fork\")");
  }
};

}  // namespace

std::shared_ptr<Backend> make_process_backend() { return std::make_shared<ProcessBackend>(); }

}  // namespace fanout::detail
