// transport.cpp
#include "transport.hpp"

#include "printable.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include <capnp/any.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

namespace fanout::wire {

namespace {

// The first segment is sized for a small envelope; large ones grow by capnp's heuristic.
constexpr unsigned kFirstSegmentWords = 128;

void free_words(void* /*data*/, void* hint) noexcept { delete static_cast<kj::Array<capnp::word>*>(hint); }

}  // namespace

// Builds in one zeroed heap block whose first word is left free: when the message ends up in that
// one segment, the first frame() is that block, with the segment table (one segment, its size)
// written into the free word, shared with ZeroMQ rather than copied. A later frame() of the same
// message (tests send one twice) is a copy; the message must not change once framed.
class FrameBuilder final : public capnp::MessageBuilder {
 public:
  explicit FrameBuilder(unsigned first_segment_words)
      : block_(std::make_shared<kj::Array<capnp::word>>(kj::heapArray<capnp::word>(std::size_t{first_segment_words} + 1))),
        next_size_(std::max(first_segment_words, kFirstSegmentWords)) {
    std::memset(block_->begin(), 0, block_->size() * sizeof(capnp::word));  // capnp builds in zeroed words
  }
  ~FrameBuilder() noexcept(false) override = default;

  kj::ArrayPtr<capnp::word> allocateSegment(unsigned minimum) override {
    if (!first_given_ && minimum <= block_->size() - 1) {
      first_given_ = true;
      return block_->slice(1, block_->size());
    }
    const std::size_t size = std::max<std::size_t>(minimum, next_size_);
    next_size_ = std::min<std::size_t>(size * 2, std::size_t{1} << 26);
    auto segment = kj::heapArray<capnp::word>(size);
    std::memset(segment.begin(), 0, size * sizeof(capnp::word));
    more_.push_back(kj::mv(segment));
    return more_.back();
  }

  zmq::message_t frame() {
    const auto segments = getSegmentsForOutput();
    if (!framed_ && segments.size() == 1 && segments[0].begin() == block_->begin() + 1) {
      framed_ = true;
      const std::uint32_t table[2] = {0, static_cast<std::uint32_t>(segments[0].size())};  // count - 1, size
      std::memcpy(block_->begin(), table, sizeof(table));
      auto* shared = new std::shared_ptr<kj::Array<capnp::word>>(block_);
      return zmq::message_t(block_->begin(), (segments[0].size() + 1) * sizeof(capnp::word), &free_shared, shared);
    }
    auto* words = new kj::Array<capnp::word>(capnp::messageToFlatArray(segments));
    return zmq::message_t(words->begin(), words->size() * sizeof(capnp::word), &free_words, words);
  }

 private:
  static void free_shared(void* /*data*/, void* hint) noexcept {
    delete static_cast<std::shared_ptr<kj::Array<capnp::word>>*>(hint);
  }

  std::shared_ptr<kj::Array<capnp::word>> block_;  // shared with the frames made of it
  bool first_given_ = false;
  bool framed_ = false;
  std::size_t next_size_;
  std::vector<kj::Array<capnp::word>> more_;
};

OutMessage::OutMessage() : OutMessage(kFirstSegmentWords) {}

OutMessage::OutMessage(unsigned first_segment_words)
    : builder_(std::make_unique<FrameBuilder>(first_segment_words)), envelope_(builder_->initRoot<Envelope>()) {
  envelope_.setVersion(PROTOCOL_VERSION);
}

OutMessage::~OutMessage() = default;
OutMessage::OutMessage(OutMessage&&) noexcept = default;
OutMessage& OutMessage::operator=(OutMessage&&) noexcept = default;

capnp::MessageBuilder& OutMessage::builder() noexcept { return *builder_; }

zmq::message_t OutMessage::frame() { return builder_->frame(); }

InMessage::~InMessage() = default;

std::optional<InMessage> InMessage::parse(zmq::message_t&& frame, std::string* error, std::size_t max_bytes, Check check,
                                          Fault* fault) {
  const auto fail = [&](std::string why, Fault kind = Fault::unreadable) -> std::optional<InMessage> {
    if (error != nullptr) *error = std::move(why);
    if (fault != nullptr) *fault = kind;
    return std::nullopt;
  };
  const std::size_t size = frame.size();
  if (size == 0 || size % sizeof(capnp::word) != 0) {
    return fail("frame of " + std::to_string(size) + " bytes is not a whole number of 8-byte words");
  }
  if (size > max_bytes) {
    return fail("frame of " + std::to_string(size) + " bytes exceeds the limit of " + std::to_string(max_bytes) +
                    " bytes (FANOUT_MAX_FRAME_BYTES)", Fault::over_limit);
  }
  InMessage message;
  message.frame_ = std::move(frame);
  const auto* data = static_cast<const capnp::word*>(message.frame_.data());
  const std::size_t words = size / sizeof(capnp::word);
  kj::ArrayPtr<const capnp::word> view(data, words);
  // ZeroMQ stores small frames (up to 33 bytes: `bye`, `statusRequest`) inside the message_t
  // object itself, so their data moves whenever the InMessage does; those are copied too, like
  // unaligned frames, so that the reader never points into a moved-from object.
  const auto object = reinterpret_cast<std::uintptr_t>(message.frame_.handle());
  const auto address = reinterpret_cast<std::uintptr_t>(data);
  const bool stored_inline = address >= object && address < object + sizeof(zmq_msg_t);
  if (stored_inline || address % alignof(capnp::word) != 0) {
    message.aligned_copy_ = kj::heapArray<capnp::word>(words);
    std::memcpy(message.aligned_copy_.begin(), data, size);
    view = message.aligned_copy_.asPtr();
  }
  try {
    message.reader_ = std::make_unique<capnp::FlatArrayMessageReader>(view, reader_options(words));
    if (message.reader_->getEnd() != view.end()) return fail("frame has bytes after its message");
    const bool walk = check == Check::whole ||
                      (check == Check::whole_except_results && !message.reader_->getRoot<Envelope>().isResults());
    if (walk) {
      // Walk every pointer once, now, under the traversal limit (so pointers that share their
      // targets cannot make it expensive): bounds, nesting, no capabilities.
      if (message.reader_->getRoot<capnp::AnyPointer>().targetSize().capCount != 0) {
        return fail("message holds capability pointers, which fanout never sends");
      }
      // The walk has bounded what reading costs; from here on reads and copies must not fail,
      // however often a part is read again (a task copied anew each time it is requeued).
      capnp::ReaderOptions options = reader_options(words);
      options.traversalLimitInWords = std::numeric_limits<std::uint64_t>::max();
      message.reader_ = std::make_unique<capnp::FlatArrayMessageReader>(view, options);
    }
    message.envelope_ = message.reader_->getRoot<Envelope>();
    const auto version = message.envelope_.getVersion();
    if (version != PROTOCOL_VERSION) {
      std::string why = "protocol version " + std::to_string(version) + ", this peer speaks " + std::to_string(PROTOCOL_VERSION);
      // A peer of another version answers with an Error naming both (the schema's promise): the
      // one thing worth reading in such a message, so that both sides can say what is wrong.
      if (message.envelope_.isError()) {
        const auto said = message.envelope_.getError().getMessage();
        why += "; it says: " + printable(std::string_view(said.cStr(), said.size()), kLogTextLimit);
      }
      return fail(std::move(why), Fault::other_version);
    }
    // Before anything iterates a list or sizes a container by it.
    if (check == Check::whole_except_results && !walk) {
      // Counted as a walked message is, without a traversal limit: a list of zero-sized elements
      // would otherwise hit the limit first and be refused as unreadable, not for what it is.
      // Reading one list pointer costs nothing; the message itself keeps its limit.
      capnp::ReaderOptions options = reader_options(words);
      options.traversalLimitInWords = std::numeric_limits<std::uint64_t>::max();
      capnp::FlatArrayMessageReader counted(view, options);
      if (auto why = check_counts(counted.getRoot<Envelope>())) return fail(std::move(*why), Fault::over_limit);
    } else if (auto why = check_counts(message.envelope_)) {
      return fail(std::move(*why), Fault::over_limit);
    }
  } catch (const kj::Exception& exception) {
    return fail(std::string("unreadable message: ") + exception.getDescription().cStr());
  }
  return message;
}

void configure_socket(zmq::socket_t& socket, std::size_t frame_limit) {
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(frame_limit));
  socket.set(zmq::sockopt::sndhwm, 100000);
  socket.set(zmq::sockopt::rcvhwm, 100000);
}

bool send_to(zmq::socket_t& router, std::string_view routing_id, zmq::message_t&& frame) {
  try {
    if (!router.send(zmq::buffer(routing_id.data(), routing_id.size()), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      return false;
    }
    return router.send(frame, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& error) {
    if (error.num() == EHOSTUNREACH) return false;
    throw;
  }
}

std::int64_t unix_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace fanout::wire
