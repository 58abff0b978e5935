// The value codec: bytes as a Value message (the arguments an executor decodes, the result a client
// decodes), read under the reader limits fanout uses and decoded into the C++ types users declare.
// Only fanout::Error (TypeMismatch included) may come out; no crash, no leak, no huge allocation.
// The same value as operator text (value_text.hpp): never longer than asked, never two lines.
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <capnp/serialize.h>

#include <fanout/codec.hpp>

#include "fuzz_frame.hpp"
#include "value_text.hpp"

namespace {

template <class T>
void decode_as(fanout::ValueReader value) {
  try {
    (void)fanout::Codec<T>::decode(value);
  } catch (const fanout::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 8 || size % 8 != 0) return 0;
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(size / 8);
  std::memcpy(words.begin(), data, size);
  try {
    capnp::FlatArrayMessageReader message(words, fanout::wire::reader_options(words.size()));
    const auto root = fanout::wire::wrap(message.getRoot<fanout::wire::Value>());
    fanout_fuzz::read_value(fanout::wire::unwrap(root));
    // As `fanout deferred list` shows a dead task's arguments: bounded, one line.
    const std::string text = fanout::wire::value_text(fanout::wire::unwrap(root), 256);
    if (text.size() > 256 + 3 || text.find('\n') != std::string::npos) __builtin_trap();
    decode_as<std::int64_t>(root);
    decode_as<std::string>(root);
    decode_as<fanout::Bytes>(root);
    decode_as<std::vector<std::int64_t>>(root);
    decode_as<std::vector<std::optional<std::int32_t>>>(root);
    decode_as<std::vector<std::vector<std::string>>>(root);
    decode_as<std::map<std::string, std::vector<double>>>(root);
    decode_as<std::tuple<int, std::string, std::optional<bool>>>(root);
    decode_as<std::vector<std::tuple<>>>(root);
  } catch (const kj::Exception&) {
    // The message itself is unreadable (bad segment table): capnp says so before fanout looks.
  }
  return 0;
}
