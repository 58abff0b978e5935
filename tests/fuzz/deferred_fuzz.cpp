// Deferred administration: a request as the broker reads it (parsed whole: action, receipt,
// index), and the report `fanout deferred` reads back (parsed whole, as broker_queries.cpp does:
// every dead task's texts, the error).
#include "fuzz_frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto message = fanout_fuzz::parse(data, size, fanout::wire::InMessage::Check::whole);
  if (!message) return 0;
  std::size_t seen = 0;
  try {
    const auto envelope = message->envelope();
    if (envelope.isDeferredRequest()) {
      const auto request = envelope.getDeferredRequest();
      seen += static_cast<std::size_t>(request.getAction()) + fanout_fuzz::touch(request.getReceipt()) +
              request.getIndex() + (request.getHasIndex() ? 1 : 0);
    } else if (envelope.isDeferredReport()) {
      const auto report = envelope.getDeferredReport();
      seen += report.getAffected() + fanout_fuzz::touch(report.getError());
      for (const auto dead : report.getDead()) {
        seen += fanout_fuzz::touch(dead.getReceipt()) + dead.getIndex() + fanout_fuzz::touch(dead.getName()) +
                fanout_fuzz::touch(dead.getKey()) + dead.getAttempts() + fanout_fuzz::touch(dead.getMessage());
      }
    } else if (envelope.isStatus()) {
      for (const auto worker : envelope.getStatus().getWorkers()) {
        seen += fanout_fuzz::touch(worker.getWorkerId()) + worker.getFreeSlots();
        for (const auto name : worker.getTaskNames()) seen += fanout_fuzz::touch(name);
      }
    }
  } catch (const kj::Exception&) {
  }
  return seen == 0xdeadbeef;
}
