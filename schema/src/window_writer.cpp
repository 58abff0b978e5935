// window_writer.cpp: a `tasks` envelope in Cap'n Proto's layout (capnp_layout.hpp).
#include "window_writer.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include <capnp/serialize.h>
#include <fanout/error.hpp>

#include "capnp_layout.hpp"
#include "value_writer.hpp"
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
              kTaskPointers == 7, "fanout.capnp changed: check the field positions below");

// Envelope: version (UInt16 0), the union's discriminant (UInt16 1; `tasks` is 0), pointer 0.
constexpr std::size_t kEnvelopeVersion = 0;
// TaskBatch: batchId (UInt64 0), total (UInt32 2), timeoutMs (UInt32 3), deferred (bit 128),
// maxRunning (UInt32 5), settledBefore (UInt32 6); tasks in pointer 0.
constexpr std::size_t kBatchId = 0, kBatchTotal = 8, kBatchTimeout = 12, kBatchDeferred = 16, kBatchMaxRunning = 20,
                      kBatchSettledBefore = 24;
// Task: batchId (UInt64 0), index (UInt32 2), hasKey (bit 96), timeoutMs (UInt32 6), slots
// (UInt32 7); key, name and args in pointers 0, 1 and 2, scalarArgs and scalarKinds in 5 and 6.
constexpr std::size_t kTaskBatchId = 0, kTaskIndex = 8, kTaskHasKey = 12, kTaskTimeout = 24, kTaskSlots = 28;
constexpr std::size_t kTaskKey = 0, kTaskName = 1, kTaskArgs = 2, kTaskScalarArgs = 5, kTaskScalarKinds = 6;
// Value, as the value writer lays it out (value_writer.hpp, which checks it against the schema):
// the discriminant in bytes 0-1, `list` being member 8; its pointer follows the data words.
constexpr std::uint32_t kValueData = ValueWriter::kValueData;
constexpr std::uint32_t kValuePointers = ValueWriter::kValuePointers;
constexpr std::uint32_t kValueWords = ValueWriter::kValueWords;
constexpr std::uint16_t kValueList = static_cast<std::uint16_t>(Value::LIST);
constexpr std::uint16_t kValueTuple = static_cast<std::uint16_t>(Value::TUPLE);

// The pointer `word`, found at word `from`, rewritten to sit at word `to` and aim at the same
// target (one segment: struct and list pointers only, whose offsets count from their own place).
std::uint64_t moved_pointer(std::uint64_t word, std::size_t from, std::size_t to) {
  if (word == 0) return 0;
  if ((word & 3) > 1) throw Error("window writer: arguments with a far or capability pointer");
  const std::size_t target = struct_target(from, word);  // lists encode their offset the same way
  const auto offset = static_cast<std::int64_t>(target) - static_cast<std::int64_t>(to) - 1;
  return (word & 0xffffffff00000003ULL) | static_cast<std::uint64_t>(static_cast<std::uint32_t>(offset) << 2);
}

template <class T>
void put(std::uint64_t* words, std::size_t struct_at, std::size_t byte, T value) noexcept {
  std::memcpy(reinterpret_cast<unsigned char*>(words + struct_at) + byte, &value, sizeof value);
}

// Blocks of the windows sent lately, kept for the next ones. A window of tens of KB taken fresh
// from the allocator each time came from memory it had just handed back to the system (the heap
// top is trimmed once the last window is freed), and zeroing it faulted in every page: a fifth of
// the calling thread's time on W2 (10,000 tiny tasks in 16 windows). Each block carries its
// segment's capacity in the word before it; ZeroMQ gives a sent window's block back from
// whichever thread frees the message.
class BlockPool {
 public:
  // A block (its table word, then at least `words` words of segment).
  std::uint64_t* take(std::size_t words) {
    {
      const std::lock_guard lock(mutex_);
      for (std::size_t i = 0; i < count_; ++i) {
        if (capacity(blocks_[i]) >= words) {
          std::uint64_t* block = blocks_[i];
          blocks_[i] = blocks_[--count_];
          return block;
        }
      }
    }
    auto* memory = static_cast<std::uint64_t*>(::operator new((2 + words) * sizeof(std::uint64_t)));
    memory[0] = words;
    return memory + 1;
  }

  void give(std::uint64_t* block) noexcept {
    if (block == nullptr) return;
    if (capacity(block) <= kLargestKept) {
      const std::lock_guard lock(mutex_);
      if (count_ < kKept) {
        blocks_[count_++] = block;
        return;
      }
    }
    ::operator delete(block - 1);
  }

  // The words of segment `block` has room for.
  static std::size_t capacity(const std::uint64_t* block) noexcept { return static_cast<std::size_t>(block[-1]); }

  std::size_t kept() {
    const std::lock_guard lock(mutex_);
    return count_;
  }

 private:
  // At most this many blocks of at most 1 MiB each are kept: a few windows in flight.
  static constexpr std::size_t kKept = 8;
  static constexpr std::size_t kLargestKept = (std::size_t{1} << 20) / sizeof(std::uint64_t);

  std::mutex mutex_;
  std::uint64_t* blocks_[kKept] = {};
  std::size_t count_ = 0;
};

// Never destroyed: ZeroMQ may free a message, and give its block back, as the program exits.
BlockPool& block_pool() {
  static auto* pool = new BlockPool;
  return *pool;
}

}  // namespace

std::size_t kept_window_blocks() noexcept { return block_pool().kept(); }

WindowWriter::WindowWriter(const Header& header, std::size_t count, std::size_t hint_words) : count_(count) {
  if (count > kMaxCount / kTaskWords) throw Error("a window of " + std::to_string(count) + " tasks is too large");
  const std::size_t head = 1 + kEnvelopeData + kEnvelopePointers + kBatchData + kBatchPointers + 1;
  block_ = block_pool().take(std::min(kMaxWords, head + std::max(count * kTaskWords, hint_words)));
  capacity_ = std::min(kMaxWords, BlockPool::capacity(block_));
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

WindowWriter::~WindowWriter() { block_pool().give(block_); }

void WindowWriter::add(std::uint32_t index, std::string_view name, const std::string* key, const Payload* args,
                       std::uint32_t timeout_ms) {
  if (added_ == count_) throw Error("window writer: more tasks than the window holds");
  const std::size_t task = first_task_ + added_++ * kTaskWords;
  const std::size_t pointers = task + kTaskData;
  put(segment(), task, kTaskIndex, index);
  put(segment(), task, kTaskTimeout, timeout_ms);
  name_task(task, name);
  if (key != nullptr) {
    const std::uint32_t at = text(*key);
    segment()[pointers + kTaskKey] = list_pointer(pointers + kTaskKey, at, kByteElements, key->size() + 1);
    put<std::uint8_t>(segment(), task, kTaskHasKey, 1);
  }
  if (args != nullptr) copy_value(pointers + kTaskArgs, *args);
}

void WindowWriter::add_unit(std::uint32_t index, std::string_view name, std::span<const Payload* const> args) {
  if (added_ == count_) throw Error("window writer: more tasks than the window holds");
  if (args.empty() || args.size() > kMaxCount / kValueWords) {
    throw Error("window writer: a unit of " + std::to_string(args.size()) + " slots");
  }
  const std::size_t task = first_task_ + added_++ * kTaskWords;
  const std::size_t pointers = task + kTaskData;
  put(segment(), task, kTaskIndex, index);
  put(segment(), task, kTaskSlots, static_cast<std::uint32_t>(args.size()));
  name_task(task, name);
  // args: a Value whose member is `list`, of one Value per slot: each slot's argument tuple.
  const std::uint32_t value = allocate(kValueWords);
  segment()[pointers + kTaskArgs] = struct_pointer(pointers + kTaskArgs, value, kValueData, kValuePointers);
  put(segment(), value, 0, kValueList);
  const std::uint32_t tag = allocate(1 + args.size() * kValueWords);
  segment()[tag] = composite_tag(args.size(), kValueData, kValuePointers);
  segment()[value + kValueData] = list_pointer(value + kValueData, tag, kCompositeElements, args.size() * kValueWords);
  for (std::size_t slot = 0; slot < args.size(); ++slot) {
    const std::size_t element = tag + 1 + slot * kValueWords;
    detail::Scalar held[Payload::kHeldScalars];
    if (const std::size_t count = args[slot]->held_scalars(held); count > 0) {
      // A call of scalars the Payload holds: its tuple written here, as of_scalars writes it.
      const std::uint32_t list = allocate(1 + count * kValueWords);
      std::uint64_t* words = segment();
      put(words, element, 0, kValueTuple);
      words[element + kValueData] = list_pointer(element + kValueData, list, kCompositeElements, count * kValueWords);
      words[list] = composite_tag(count, kValueData, kValuePointers);
      for (std::size_t i = 0; i < count; ++i) {
        ValueWriter::write_scalar(words + list + 1 + i * kValueWords, static_cast<std::uint16_t>(held[i].kind),
                                  held[i].bits, held[i].kind == ValueKind::boolean);
      }
      continue;
    }
    // The payload's objects go in whole; the element takes its root Value's words, its pointer
    // moved to aim at the same object.
    const auto root = place(*args[slot]);
    if (!root) continue;  // `none`, as the zeroed element reads
    const auto data_words = static_cast<std::uint32_t>(root->sizes >> 32) & 0xffffU;
    const auto pointer_count = static_cast<std::uint32_t>(root->sizes >> 48);
    std::uint64_t* words = segment();
    std::memcpy(words + element, words + root->at, std::min(data_words, kValueData) * sizeof(std::uint64_t));
    if (pointer_count > 0) {
      const std::size_t from = root->at + data_words;
      words[element + kValueData] = moved_pointer(words[from], from, element + kValueData);
    }
  }
}

bool WindowWriter::add_scalar_args(std::uint32_t index, std::string_view name, std::span<const Payload* const> args) {
  if (added_ == count_) throw Error("window writer: more tasks than the window holds");
  if (args.empty() || args.size() > wire::kMostUnitSlots) return false;
  detail::Scalar held[Payload::kHeldScalars];
  const std::size_t arity = args[0]->held_scalars(held);
  if (arity == 0) return false;
  const std::size_t count = args.size() * arity;
  const std::size_t mark = used_;  // a slot of other arguments takes back what was written
  const std::uint32_t bits = allocate(count);
  const std::uint32_t kinds = allocate(words_for_bytes(count));
  for (std::size_t slot = 0; slot < args.size(); ++slot) {
    if (args[slot]->held_scalars(held) != arity) {
      used_ = mark;
      return false;
    }
    std::uint64_t* words = segment();
    for (std::size_t i = 0; i < arity; ++i) {
      words[bits + slot * arity + i] = held[i].bits;
      reinterpret_cast<unsigned char*>(words + kinds)[slot * arity + i] = static_cast<unsigned char>(held[i].kind);
    }
  }
  const std::size_t task = first_task_ + added_++ * kTaskWords;
  const std::size_t pointers = task + kTaskData;
  std::uint64_t* words = segment();
  put(words, task, kTaskIndex, index);
  put(words, task, kTaskSlots, static_cast<std::uint32_t>(args.size()));
  words[pointers + kTaskScalarArgs] = list_pointer(pointers + kTaskScalarArgs, bits, kWordElements, count);
  words[pointers + kTaskScalarKinds] = list_pointer(pointers + kTaskScalarKinds, kinds, kByteElements, count);
  name_task(task, name);
  return true;
}

zmq::message_t WindowWriter::frame() {
  if (added_ != count_) throw Error("window writer: " + std::to_string(count_ - added_) + " tasks missing");
  const std::uint32_t table[2] = {0, static_cast<std::uint32_t>(used_)};  // one segment, of used_ words
  std::memcpy(block_, table, sizeof table);
  void* block = std::exchange(block_, nullptr);
  return zmq::message_t(
      block, bytes(), [](void* data, void*) noexcept { block_pool().give(static_cast<std::uint64_t*>(data)); }, nullptr);
}

std::uint32_t WindowWriter::allocate(std::size_t words) {
  if (words > capacity_ - used_) {
    if (words > kMaxWords - used_) throw Error("a window larger than a Cap'n Proto segment");
    auto* block = block_pool().take(std::min(kMaxWords, std::max(used_ + words, capacity_ * 2)));
    std::memcpy(block, block_, (1 + used_) * sizeof(std::uint64_t));
    block_pool().give(block_);
    block_ = block;
    capacity_ = std::min(kMaxWords, BlockPool::capacity(block));
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

// The task's name: consecutive tasks of one name point to one copy of it.
void WindowWriter::name_task(std::size_t task, std::string_view name) {
  // A Task's calls point to one kept copy of its name (task.hpp): the same pointer, nothing to compare.
  const bool same = last_name_at_ != 0 && ((name.data() == last_name_.data() && name.size() == last_name_.size()) ||
                                           name == last_name_);
  if (!same) {
    last_name_at_ = text(name);
    last_name_ = name;
  }
  const std::size_t pointer = task + kTaskData + kTaskName;
  segment()[pointer] = list_pointer(pointer, last_name_at_, kByteElements, name.size() + 1);
}

// The pointer at `pointer` takes the place of the payload's root pointer, aimed at its root.
void WindowWriter::copy_value(std::uint32_t pointer, const Payload& args) {
  const auto root = place(args);
  if (!root) return;  // no value: reads as `none`
  segment()[pointer] = (struct_pointer(pointer, root->at, 0, 0) & 0xffffffffULL) | root->sizes;
}

// The payload's block minus its root pointer goes in whole. A payload that is not one block
// (received from elsewhere: rare for arguments) is first copied into one by capnp.
std::optional<WindowWriter::Root> WindowWriter::place(const Payload& args) {
  Payload::WordRoom room;
  std::span<const std::uint64_t> words = args.words(room);
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
  if (words.size() < 2 || words[0] == 0) return std::nullopt;
  const std::size_t root = struct_target(0, words[0]);
  const std::uint32_t at = allocate(words.size() - 1);
  std::memcpy(segment() + at, words.data() + 1, (words.size() - 1) * sizeof(std::uint64_t));
  return Root{at + root - 1, words[0] & 0xffffffff00000000ULL};
}

}  // namespace fanout::wire
