// WindowWriter writes a window of tasks in Cap'n Proto's layout by hand: it must make the message
// capnp's own builder makes, field for field, for every kind of task a client sends.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <capnp/serialize.h>
#include <fanout/codec.hpp>

#include "window_writer.hpp"
#include "wire.hpp"

namespace {

using fanout::wire::WindowWriter;

struct Slot {
  std::uint32_t index;
  std::string name;
  std::optional<std::string> key;
  std::optional<fanout::Payload> args;
  std::uint32_t timeout_ms = 0;
  std::vector<fanout::Payload> unit = {};  // not empty: a unit of these slots' arguments (then no key, args or limit)
  bool laid_out = false;  // the unit's scalars laid out together (Task.scalarArgs) rather than a tuple each
};

kj::Array<capnp::word> written_by_hand(const WindowWriter::Header& header, const std::vector<Slot>& slots) {
  WindowWriter window(header, slots.size(), 0);  // no hint: the buffer grows as it goes
  for (const Slot& slot : slots) {
    if (!slot.unit.empty()) {
      std::vector<const fanout::Payload*> args;
      for (const auto& payload : slot.unit) args.push_back(&payload);
      if (slot.laid_out) {
        REQUIRE(window.add_scalar_args(slot.index, slot.name, args));
      } else {
        window.add_unit(slot.index, slot.name, args);
      }
      continue;
    }
    window.add(slot.index, slot.name, slot.key ? &*slot.key : nullptr, slot.args ? &*slot.args : nullptr,
               slot.timeout_ms);
  }
  const std::size_t bytes = window.bytes();
  zmq::message_t frame = window.frame();
  REQUIRE(frame.size() == bytes);
  auto words = kj::heapArray<capnp::word>(frame.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), frame.data(), frame.size());
  capnp::FlatArrayMessageReader reader(words);
  return capnp::canonicalize(reader.getRoot<fanout::wire::Envelope>());
}

kj::Array<capnp::word> built_by_capnp(const WindowWriter::Header& header, const std::vector<Slot>& slots) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<fanout::wire::Envelope>();
  envelope.setVersion(fanout::wire::PROTOCOL_VERSION);
  auto window = envelope.initTasks();
  window.setBatchId(header.batch_id);
  window.setTotal(header.total);
  window.setTimeoutMs(header.timeout_ms);
  window.setMaxRunning(header.max_running);
  window.setDeferred(header.deferred);
  window.setSettledBefore(header.settled_before);
  auto tasks = window.initTasks(static_cast<unsigned>(slots.size()));
  for (unsigned i = 0; i < slots.size(); ++i) {
    auto task = tasks[i];
    task.setBatchId(header.batch_id);
    task.setIndex(slots[i].index);
    task.setName(slots[i].name);
    if (slots[i].key) {
      task.setKey(*slots[i].key);
      task.setHasKey(true);
    }
    task.setTimeoutMs(slots[i].timeout_ms);
    if (slots[i].laid_out) {
      task.setSlots(static_cast<std::uint32_t>(slots[i].unit.size()));
      std::vector<fanout::detail::Scalar> all;
      for (const auto& payload : slots[i].unit) {
        fanout::detail::Scalar held[fanout::Payload::kHeldScalars];
        const std::size_t count = payload.held_scalars(held);
        all.insert(all.end(), held, held + count);
      }
      auto bits = task.initScalarArgs(static_cast<unsigned>(all.size()));
      auto kinds = task.initScalarKinds(static_cast<unsigned>(all.size()));
      for (unsigned j = 0; j < all.size(); ++j) {
        bits.set(j, all[j].bits);
        kinds.set(j, static_cast<std::uint8_t>(all[j].kind));
      }
    } else if (!slots[i].unit.empty()) {
      task.setSlots(static_cast<std::uint32_t>(slots[i].unit.size()));
      auto list = task.initArgs().initList(static_cast<unsigned>(slots[i].unit.size()));
      for (unsigned j = 0; j < slots[i].unit.size(); ++j) {
        slots[i].unit[j].read([&](fanout::ValueReader args) { list.setWithCaveats(j, fanout::wire::unwrap(args)); });
      }
    }
    if (slots[i].args) slots[i].args->read([&](fanout::ValueReader args) { task.setArgs(fanout::wire::unwrap(args)); });
  }
  return capnp::canonicalize(message.getRoot<fanout::wire::Envelope>().asReader());
}

void check_same(const WindowWriter::Header& header, const std::vector<Slot>& slots) {
  const auto by_hand = written_by_hand(header, slots);
  const auto by_capnp = built_by_capnp(header, slots);
  REQUIRE(by_hand.size() == by_capnp.size());
  CHECK(std::memcmp(by_hand.begin(), by_capnp.begin(), by_capnp.size() * sizeof(capnp::word)) == 0);
}

}  // namespace

TEST_CASE("a window written by hand is the window capnp's builder makes") {
  const WindowWriter::Header header{0x0123456789abcdefULL, 70000, 1500, 3, false, 12};

  SUBCASE("tasks of one name, their arguments copied whole") {
    std::vector<Slot> slots;
    for (std::uint32_t i = 0; i < 50; ++i) slots.push_back({i, "bench.twice", {}, fanout::encode_payload(std::tuple<int>{int(i)})});
    check_same(header, slots);
  }
  SUBCASE("names that change, keys (the empty one too), no arguments, per-task limits") {
    const std::vector<Slot> slots{
        {7, "a", std::string("users"), fanout::encode_payload(std::tuple<std::string>{"x"}), 250},
        {8, "a", std::string(""), std::nullopt, 0},
        {9, "longer.task.name.than.a.word", {}, fanout::encode_payload(std::tuple<>{}), 0},
        {10, "a", {}, fanout::encode_payload(std::tuple<std::vector<std::string>, double>{{"p", "q"}, 2.5}), 1},
        {11, "", {}, fanout::encode_payload(std::tuple<int>{-1}), 0},
    };
    check_same(header, slots);
  }
  SUBCASE("a deferred window, arguments larger than the writer's first guess") {
    const WindowWriter::Header deferred{42, 2, 0, 0, true, 0};
    const std::vector<Slot> slots{
        {0, "blob", {}, fanout::encode_payload(std::tuple<fanout::Bytes>{fanout::Bytes(70000, std::byte{3})})},
        {1, "blob", {}, fanout::encode_payload(std::tuple<fanout::Bytes>{fanout::Bytes(5, std::byte{4})})},
    };
    check_same(deferred, slots);
  }
  SUBCASE("arguments that are not one block of words (received from elsewhere) are copied by capnp") {
    capnp::MallocMessageBuilder source;
    fanout::Codec<std::tuple<std::string, int>>::encode(
        fanout::wire::wrap(source.initRoot<fanout::wire::Value>()), std::tuple<std::string, int>{"far", 9});
    const auto args = fanout::wire::payload_from_flat(capnp::messageToFlatArray(source), fanout::wire::PayloadRoot::value);
    fanout::Payload::WordRoom room;
    REQUIRE(args.words(room).empty());
    check_same(header, {{3, "t", {}, args}});
  }
}

TEST_CASE("a unit of slots is one task whose arguments are the list of the slots' argument tuples") {
  const WindowWriter::Header header{77, 40, 0, 0, false, 0};
  std::vector<fanout::Payload> ints;
  for (int i = 0; i < 64; ++i) ints.push_back(fanout::encode_payload(std::tuple<int>{i * 3}));
  SUBCASE("units of one name, a plain task of it between them") {
    const std::vector<Slot> slots{
        {0, "bench.twice", {}, {}, 0, {ints.begin(), ints.begin() + 30}},
        {1, "bench.twice", {}, fanout::encode_payload(std::tuple<int>{5}), 0, {}},
        {2, "bench.twice", {}, {}, 0, {ints.begin() + 30, ints.end()}},
    };
    check_same(header, slots);
  }
  SUBCASE("calls of one or two numbers, which their Payload holds without words of its own") {
    std::vector<fanout::Payload> held;
    for (int i = 0; i < 20; ++i) {
      const fanout::detail::Scalar one[] = {fanout::detail::scalar_of(i)};
      const fanout::detail::Scalar two[] = {fanout::detail::scalar_of(i % 2 == 0), fanout::detail::scalar_of(i * 0.5)};
      held.push_back(i % 3 == 0 ? fanout::Payload::of_scalars(two) : fanout::Payload::of_scalars(one));
    }
    check_same(header, {{0, "bench.twice", {}, {}, 0, held}, {1, "bench.twice", {}, held[1], 0, {}}});
  }
  SUBCASE("arguments with pointers of their own, a none payload, one slot, one not in one block") {
    capnp::MallocMessageBuilder source;
    fanout::Codec<std::tuple<std::string, int>>::encode(
        fanout::wire::wrap(source.initRoot<fanout::wire::Value>()), std::tuple<std::string, int>{"far", 9});
    const auto far = fanout::wire::payload_from_flat(capnp::messageToFlatArray(source), fanout::wire::PayloadRoot::value);
    fanout::Payload::WordRoom room;
    REQUIRE(far.words(room).empty());
    const std::vector<Slot> slots{
        {3, "t", {}, {}, 0,
         {fanout::encode_payload(std::tuple<std::vector<std::string>, double>{{"p", "a longer text than a word"}, 2.5}),
          fanout::Payload{}, far, fanout::encode_payload(std::tuple<fanout::Bytes>{fanout::Bytes(300, std::byte{9})}),
          fanout::encode_payload(std::tuple<>{})}},
        {4, "t", {}, {}, 0, {fanout::encode_payload(std::tuple<int>{-7})}},
    };
    check_same(header, slots);
  }
}

TEST_CASE("a unit of calls of scalars lays their arguments out together: a word and a kind byte each") {
  const WindowWriter::Header header{78, 900, 0, 0, false, 0};
  const auto one = [](auto value) {
    const fanout::detail::Scalar scalars[] = {fanout::detail::scalar_of(value)};
    return fanout::Payload::of_scalars(scalars);
  };
  const auto two = [](auto a, auto b) {
    const fanout::detail::Scalar scalars[] = {fanout::detail::scalar_of(a), fanout::detail::scalar_of(b)};
    return fanout::Payload::of_scalars(scalars);
  };
  SUBCASE("one argument a slot, of every kind; two a slot; units beside a plain task and a tuple unit") {
    std::vector<fanout::Payload> singles{one(true), one(-5), one(std::uint64_t{1} << 63), one(2.5F), one(-0.125),
                                         one(std::int64_t{INT64_MIN})};
    std::vector<fanout::Payload> pairs;
    for (int i = 0; i < 700; ++i) pairs.push_back(two(i, i * 0.5));
    const std::vector<Slot> slots{
        {0, "bench.twice", {}, {}, 0, singles, true},
        {1, "bench.twice", {}, one(3), 0, {}},
        {2, "bench.pair", {}, {}, 0, pairs, true},
        {3, "bench.pair", {}, {}, 0, {pairs.begin(), pairs.begin() + 3}, false},
        {4, "bench.pair", {}, {}, 0, {pairs.begin() + 5, pairs.begin() + 6}, true},
    };
    check_same(header, slots);
  }
  SUBCASE("slots that do not all hold the same number of scalars are refused, and nothing is left behind") {
    const std::vector<fanout::Payload> mixed{one(1), one(2), two(3, 4), one(5)};
    const std::vector<fanout::Payload> blocks{one(1), fanout::encode_payload(std::tuple<int>{2})};
    WindowWriter window(header, 3, 0);
    std::vector<const fanout::Payload*> args;
    for (const auto& payload : mixed) args.push_back(&payload);
    const std::size_t before = window.bytes();
    CHECK_FALSE(window.add_scalar_args(0, "t", args));
    args.clear();
    for (const auto& payload : blocks) args.push_back(&payload);
    CHECK_FALSE(window.add_scalar_args(0, "t", args));  // a payload of words, not held scalars
    const std::vector<fanout::Payload> none{fanout::Payload{}};
    args = {&none[0]};
    CHECK_FALSE(window.add_scalar_args(0, "t", args));
    CHECK(window.bytes() == before);
    // What was refused goes the general way; the window is the one capnp builds for it.
    check_same(header, {{0, "t", {}, {}, 0, mixed}, {1, "t", {}, {}, 0, blocks}, {2, "t", {}, {}, 0, {one(7)}, true}});
  }
}

TEST_CASE("a window refuses more tasks than it was opened for, and is not sent short") {
  WindowWriter window({1, 1, 0, 0, false, 0}, 1, 0);
  const auto args = fanout::encode_payload(std::tuple<int>{1});
  window.add(0, "t", nullptr, &args, 0);
  CHECK_THROWS_AS(window.add(1, "t", nullptr, &args, 0), fanout::Error);

  WindowWriter short_window({1, 2, 0, 0, false, 0}, 2, 0);
  short_window.add(0, "t", nullptr, &args, 0);
  CHECK_THROWS_AS((void)short_window.frame(), fanout::Error);
}

// A sent window's block is kept for the windows after it: fresh blocks of tens of KB faulted in
// every page as they were zeroed. A kept block holds the last window's words, which must not show
// through: the windows above, written one after another in this program, compare word for word
// with capnp's.
TEST_CASE("the block of a window that was sent is kept, and the next window is written into it") {
  const auto args = fanout::encode_payload(std::tuple<int>{1});
  const auto window_frame = [&] {
    WindowWriter window({1, 2000, 0, 0, false, 0}, 2000, 0);  // about 100 KB
    for (std::uint32_t i = 0; i < 2000; ++i) window.add(i, "t", nullptr, &args, 0);
    return window.frame();
  };
  const void* sent = nullptr;
  std::size_t kept = 0;
  {
    const auto frame = window_frame();
    sent = frame.data();
    kept = fanout::wire::kept_window_blocks();
  }  // ZeroMQ frees the message: its block goes back
  CHECK(fanout::wire::kept_window_blocks() == kept + 1);
  const auto next = window_frame();
  CHECK(fanout::wire::kept_window_blocks() == kept);
  CHECK(next.data() == sent);
}

// Review: the direct writer against capnp's builder for handles used more than once, values set
// twice, empty blobs last in the block, and such payloads copied into a window (read back by a
// checking reader).
namespace {
template <class Fill>
void check_fill_as_capnp(Fill fill) {
  capnp::MallocMessageBuilder reference;
  fill(fanout::wire::wrap(reference.initRoot<fanout::wire::Value>()));
  const auto expected = capnp::canonicalize(reference.getRoot<fanout::wire::Value>().asReader());
  const auto payload = fanout::Payload::build([&](fanout::ValueBuilder out) { fill(out); });
  kj::Array<capnp::word> written;
  payload.read([&](fanout::ValueReader in) { written = capnp::canonicalize(fanout::wire::unwrap(in)); });
  REQUIRE(written.size() == expected.size());
  CHECK(std::memcmp(written.begin(), expected.begin(), expected.size() * sizeof(capnp::word)) == 0);
  check_same({5, 1, 0, 0, false, 0}, {{0, "t", {}, payload}});
}
}  // namespace

TEST_CASE("review: direct handles used twice, values overwritten, empty blobs at the end") {
  check_fill_as_capnp([](fanout::ValueBuilder out) {
    out.set_text("first");
    out.set_text("second, longer than a word");
  });
  check_fill_as_capnp([](fanout::ValueBuilder out) {
    auto list = out.init_list(3);
    list[0].set_int(1);
    list[0].set_float32(2.5F);  // the int's upper half stays, as capnp leaves it
    list[1].set_bytes({});
    list[2].set_text("");
  });
  check_fill_as_capnp([](fanout::ValueBuilder out) {
    auto map = out.init_map(2);
    map.key(0).set_text("k");
    map.key(0).set_int(3);  // the same key Value, set again
    map.value(1).init_some().init_some().set_bytes({});
  });
  check_fill_as_capnp([](fanout::ValueBuilder out) {
    auto outer = out.init_tuple(2);
    outer[0].init_list(0);
    outer[1].set_bytes({});
  });
  check_fill_as_capnp([](fanout::ValueBuilder out) { out.set_bool(true); out.set_bool(false); });
  check_fill_as_capnp([](fanout::ValueBuilder) {});
  // The none payload (a capnp message of its own) in a window.
  check_same({5, 1, 0, 0, false, 0}, {{0, "t", {}, fanout::Payload{}}});
  // Bytes near the writer's growth steps.
  for (std::size_t n : {247u, 248u, 249u, 255u, 256u, 257u}) {
    check_fill_as_capnp([&](fanout::ValueBuilder out) {
      auto list = out.init_list(2);
      list[0].set_bytes(std::vector<std::byte>(n, std::byte{7}));
      list[1].set_text(std::string(n, 'q'));
    });
  }
}

TEST_CASE("review: lengths past a capnp list's limit throw, the writer stays usable") {
  CHECK_THROWS_AS(fanout::Payload::build([](fanout::ValueBuilder out) { out.init_list(std::size_t{1} << 29); }),
                  fanout::Error);
  CHECK_THROWS_AS(fanout::Payload::build([](fanout::ValueBuilder out) { out.init_map(std::size_t{1} << 30); }),
                  fanout::Error);
  CHECK_THROWS_AS(fanout::Payload::build([](fanout::ValueBuilder out) { (void)out.init_tuple(2)[2]; }), fanout::Error);
  // Just inside the limit for a list's words (3 per Value): 178956970 Values -> 536870910 words.
  // Not built (4 GiB); the check on count * 3 is what matters:
  CHECK_THROWS_AS(fanout::Payload::build([](fanout::ValueBuilder out) { out.init_list(178956971); }), fanout::Error);
}
