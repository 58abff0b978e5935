// Live output of a shell command: from an executor to the broker (parsed whole, batch and index
// matched) and on to the client (parsed envelope only), its bytes read as text.
#include <string_view>

#include "fuzz_frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::size_t seen = 0;
  for (const auto check : {fanout::wire::InMessage::Check::whole, fanout::wire::InMessage::Check::envelope}) {
    auto message = fanout_fuzz::parse(data, size, check);
    if (!message || !message->envelope().isOutput()) continue;
    try {
      const auto chunk = message->envelope().getOutput();
      const auto bytes = chunk.getData();
      const std::string_view text(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
      seen += chunk.getBatchId() + chunk.getIndex() + static_cast<std::size_t>(chunk.getStream()) + text.size();
    } catch (const kj::Exception&) {
    }
  }
  return seen == 0xdeadbeef;
}
