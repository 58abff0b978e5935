// The journal, which the broker reads back at start: a record body as decode_body() reads it
// (then applied to the deferred state, as recovery does, and a batch's payload parsed whole as
// DeferredBatches::recover parses it), and the bytes as a whole journal file scanned for records
// (resynchronising after damage). No crash, and no allocation a record's size does not justify.
#include <cstring>
#include <string>

#include "deferred_store.hpp"
#include "fuzz_frame.hpp"
#include "journal_scan.hpp"

namespace broker = fanout::broker;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  broker::DeferredState state;
  {
    broker::JournalRecord record;
    if (broker::decode_body(reinterpret_cast<const char*>(data), size, record)) {
      if (const auto* accepted = std::get_if<broker::BatchAccepted>(&record)) {
        zmq::message_t frame(accepted->payload.data(), accepted->payload.size());
        (void)fanout::wire::InMessage::parse(std::move(frame), nullptr, accepted->payload.size() + 8,
                                             fanout::wire::InMessage::Check::whole);
      }
      (void)state.apply(std::move(record));
    }
  }
  // Salt 0 and a small record limit: the fuzzer may find CRCs of short records.
  (void)broker::journal_io::scan_records(data, size, 0, 0, 1 << 16, [&](std::uint64_t, broker::JournalRecord record) {
    (void)state.apply(std::move(record));
  });
  return 0;
}
