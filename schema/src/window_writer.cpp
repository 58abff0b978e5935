// window_writer.cpp: a `tasks` envelope in Cap'n Proto's layout (capnp_layout.hpp).
#include "window_writer.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <utility>

#include <capnp/serialize.h>
#include <fanout/error.hpp>

#include "capnp_layout.hpp"
#include "wire.hpp"

namespace fanout::wire {

namespace {

using namespace layout;

// The structs' sizes as capnp laid them out for fanout.capnp, and where this writer puts fields
// (byte offsets in the data section, pointer slots), as the generated accessors place them;
// transport tests compare a written window with one capnp built.
constexpr std::uint32_t kEnvelopeData = Envelope::_capnpPrivate::dataWordSize;
constexpr std::uint32_t kEnvelopePointers = Envelope::_capnpPrivate::pointerCount;
constexpr std::uint32_t kBatchData = TaskBatch::_capnpPrivate::dataWordSize;
constexpr std::uint32_t kBatchPointers = TaskBatch::_capnpPrivate::pointerCount;
constexpr std::uint32_t kTaskData = Task::_capnpPrivate::dataWordSize;
constexpr std::uint32_t kTaskPointers = Task::_capnpPrivate::pointerCount;
constexpr std::uint32_t kTaskWords = kTaskData + kTaskPointers;
static_assert(kEnvelopeData == 1 && kEnvelopePointers == 1 && kBatchData == 4 && kBatchPointers == 1 && kTaskData == 4 &&
              kTaskPointers == 5, "fanout.capnp changed: check the field positions below");

// Envelope: version (UInt16 0), the union's discriminant (UInt16 1; `tasks` is 0), pointer 0.
constexpr std::size_t kEnvelopeVersion = 0;
// TaskBatch: batchId (UInt64 0), total (UInt32 2), timeoutMs (UInt32 3), deferred (bit 128),
// maxRunning (UInt32 5), settledBefore (UInt32 6); tasks in pointer 0.
constexpr std::size_t kBatchId = 0, kBatchTotal = 8, kBatchTimeout = 12, kBatchDeferred = 16, kBatchMaxRunning = 20,
                      kBatchSettledBefore = 24;
// Task: batchId (UInt64 0), index (UInt32 2), hasKey (bit 96), timeoutMs (UInt32 6); key,
// name and args in pointers 0, 1 and 2.
constexpr std::size_t kTaskBatchId = 0, kTaskIndex = 8, kTaskHasKey = 12, kTaskTimeout = 24;
constexpr std::size_t kTaskKey = 0, kTaskName = 1, kTaskArgs = 2;

template <class T>
void put(std::uint64_t* words, std::size_t struct_at, std::size_t byte, T value) noexcept {
  std::memcpy(reinterpret_cast<unsigned char*>(words + struct_at) + byte, &value, sizeof value);
}

}  // namespace

WindowWriter::WindowWriter(const Header& header, std::size_t count, std::size_t hint_words) : count_(count) {
  if (count > kMaxCount / kTaskWords) throw Error("a window of " + std::to_string(count) + " tasks is too large");
  const std::size_t head = 1 + kEnvelopeData + kEnvelopePointers + kBatchData + kBatchPointers + 1;
  capacity_ = std::min(kMaxWords, head + std::max(count * kTaskWords, hint_words));
  block_ = static_cast<std::uint64_t*>(::operator new((1 + capacity_) * sizeof(std::uint64_t)));
  const std::uint32_t root = allocate(1);
  const std::uint32_t envelope = allocate(kEnvelopeData + kEnvelopePointers);
  const std::uint32_t batch = allocate(kBatchData + kBatchPointers);
  std::uint64_t* words = segment();
  words[root] = struct_pointer(root, envelope, kEnvelopeData, kEnvelopePointers);
  put<std::uint16_t>(words, envelope, kEnvelopeVersion, PROTOCOL_VERSION);
  const std::size_t envelope_tasks = envelope + kEnvelopeData;  // the union's discriminant stays 0: `tasks`
  words[envelope_tasks] = struct_pointer(envelope_tasks, batch, kBatchData, kBatchPointers);
  put(words, batch, kBatchId, header.batch_id);
  put(words, batch, kBatchTotal, header.total);
  put(words, batch, kBatchTimeout, header.timeout_ms);
  put<std::uint8_t>(words, batch, kBatchDeferred, header.deferred ? 1 : 0);
  put(words, batch, kBatchMaxRunning, header.max_running);
  put(words, batch, kBatchSettledBefore, header.settled_before);
  const std::uint32_t tag = allocate(1 + count * kTaskWords);
  words = segment();
  words[tag] = composite_tag(count, kTaskData, kTaskPointers);
  const std::size_t batch_tasks = batch + kBatchData;
  words[batch_tasks] = list_pointer(batch_tasks, tag, kCompositeElements, count * kTaskWords);
  first_task_ = tag + 1;
  for (std::size_t i = 0; i < count; ++i) put(words, first_task_ + i * kTaskWords, kTaskBatchId, header.batch_id);
}

WindowWriter::~WindowWriter() { ::operator delete(block_); }

void WindowWriter::add(std::uint32_t index, std::string_view name, const std::string* key, const Payload* args,
                       std::uint32_t timeout_ms) {
  if (added_ == count_) throw Error("window writer: more tasks than the window holds");
  const std::size_t task = first_task_ + added_++ * kTaskWords;
  const std::size_t pointers = task + kTaskData;
  put(segment(), task, kTaskIndex, index);
  put(segment(), task, kTaskTimeout, timeout_ms);
  if (name.data() != last_name_.data() || name.size() != last_name_.size()) {
    if (last_name_.empty() || name != last_name_) last_name_at_ = text(name);
    last_name_ = name;
  }
  segment()[pointers + kTaskName] = list_pointer(pointers + kTaskName, last_name_at_, kByteElements, name.size() + 1);
  if (key != nullptr) {
    const std::uint32_t at = text(*key);
    segment()[pointers + kTaskKey] = list_pointer(pointers + kTaskKey, at, kByteElements, key->size() + 1);
    put<std::uint8_t>(segment(), task, kTaskHasKey, 1);
  }
  if (args != nullptr) copy_value(pointers + kTaskArgs, *args);
}

zmq::message_t WindowWriter::frame() {
  if (added_ != count_) throw Error("window writer: " + std::to_string(count_ - added_) + " tasks missing");
  const std::uint32_t table[2] = {0, static_cast<std::uint32_t>(used_)};  // one segment, of used_ words
  std::memcpy(block_, table, sizeof table);
  void* block = std::exchange(block_, nullptr);
  return zmq::message_t(block, bytes(), [](void* data, void*) noexcept { ::operator delete(data); }, nullptr);
}

std::uint32_t WindowWriter::allocate(std::size_t words) {
  if (words > capacity_ - used_) {
    if (words > kMaxWords - used_) throw Error("a window larger than a Cap'n Proto segment");
    const std::size_t capacity = std::min(kMaxWords, std::max(used_ + words, capacity_ * 2));
    auto* block = static_cast<std::uint64_t*>(::operator new((1 + capacity) * sizeof(std::uint64_t)));
    std::memcpy(block, block_, (1 + used_) * sizeof(std::uint64_t));
    ::operator delete(block_);
    block_ = block;
    capacity_ = capacity;
  }
  const auto at = static_cast<std::uint32_t>(used_);
  std::memset(segment() + at, 0, words * sizeof(std::uint64_t));  // fields not written read as zero
  used_ += words;
  return at;
}

std::uint32_t WindowWriter::text(std::string_view value) {
  const std::uint32_t at = allocate(words_for_bytes(value.size() + 1));  // and its NUL, already zero
  if (!value.empty()) std::memcpy(segment() + at, value.data(), value.size());
  return at;
}

// The payload's block minus its root pointer goes in whole; the pointer at `pointer` takes the
// root pointer's place, aimed at the same object. A payload that is not one block (received from
// elsewhere: rare for arguments) is first copied into one by capnp.
void WindowWriter::copy_value(std::uint32_t pointer, const Payload& args) {
  std::span<const std::uint64_t> words = args.words();
  kj::Array<capnp::word> flat;
  if (words.empty()) {
    args.read([&](ValueReader value) {
      capnp::MallocMessageBuilder copy(static_cast<unsigned>(unwrap(value).totalSize().wordCount + 8));
      copy.setRoot(unwrap(value));
      flat = capnp::messageToFlatArray(copy);
    });
    // A message of one segment: its table is one word (count - 1 and size), then the segment.
    if (flat.size() < 2 || reinterpret_cast<const std::uint32_t*>(flat.begin())[0] != 0) {
      throw Error("window writer: arguments that do not fit one segment");
    }
    words = std::span<const std::uint64_t>(reinterpret_cast<const std::uint64_t*>(flat.begin()) + 1, flat.size() - 1);
  }
  if (words.size() < 2 || words[0] == 0) return;  // no value: reads as `none`
  const std::size_t root = struct_target(0, words[0]);
  const std::uint32_t at = allocate(words.size() - 1);
  std::memcpy(segment() + at, words.data() + 1, (words.size() - 1) * sizeof(std::uint64_t));
  // The root pointer, moved: the same sizes, the offset from its new place.
  const std::uint64_t sizes = words[0] & 0xffffffff00000000ULL;
  segment()[pointer] = (struct_pointer(pointer, at + root - 1, 0, 0) & 0xffffffffULL) | sizes;
}

}  // namespace fanout::wire
