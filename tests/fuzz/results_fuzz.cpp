// Results as the broker takes them from an executor (parsed with Check::whole_except_results,
// so not walked whole: each matched by batch and index, errors read for their kind and message)
// and as a client then reads them (parsed envelope only: capnp checks as it reads, each result
// under its own guard), values decoded in place. Check::whole is kept for the other decoders'
// sake.
#include "fuzz_frame.hpp"

namespace {

std::size_t read_results(capnp::List<fanout::wire::Result>::Reader results) {
  std::size_t seen = 0;
  for (const auto result : results) {
    seen += result.getBatchId() + result.getIndex() + result.getElapsedUs() + fanout_fuzz::touch(result.getRanOn());
    if (result.isValue()) {
      fanout_fuzz::read_value(result.getValue());
    } else if (result.isError()) {
      const auto error = result.getError();
      seen += static_cast<std::size_t>(error.getKind()) + fanout_fuzz::touch(error.getMessage()) +
              fanout_fuzz::touch(error.getRemoteType());
    }
    if (result.hasShell()) seen += result.getShell().totalSize().wordCount;
    for (const auto bits : result.getScalarValues()) seen += bits;  // a unit's values laid out together
    for (const auto kind : result.getScalarKinds()) seen += kind;
  }
  return seen;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::size_t seen = 0;
  for (const auto check : {fanout::wire::InMessage::Check::whole, fanout::wire::InMessage::Check::whole_except_results,
                           fanout::wire::InMessage::Check::envelope}) {
    auto message = fanout_fuzz::parse(data, size, check);
    if (!message || !message->envelope().isResults()) continue;
    try {
      seen += read_results(message->envelope().getResults());
    } catch (const kj::Exception&) {
    }
  }
  return seen == 0xdeadbeef;
}
