// The value codec: every supported C++ type survives a trip through the wire Value exactly.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <fanout/codec.hpp>
#include <fanout/task.hpp>

#include "value_text.hpp"
#include "wire.hpp"  // in-tree tests may build raw messages

namespace {

template <class T>
T round_trip(const T& value) {
  return fanout::decode_payload<T>(fanout::encode_payload(value));
}

template <class T, class U>
std::string mismatch_message(const U& value) {
  try {
    (void)fanout::decode_payload<T>(fanout::encode_payload(value));
  } catch (const fanout::TypeMismatch& error) {
    return error.what();
  }
  return "no error";
}

enum class Color : std::uint8_t { red = 1, green = 2, blue = 250 };
enum Level : int { low = -5, high = 7 };

struct Point {
  int x = 0;
  int y = 0;
  bool operator==(const Point&) const = default;
};
auto fanout_fields(Point& p) { return std::tie(p.x, p.y); }

struct Shape {
  std::string name;
  std::vector<Point> corners;
  std::optional<Color> fill;
  bool operator==(const Shape&) const = default;
};
auto fanout_fields(Shape& s) { return std::tie(s.name, s.corners, s.fill); }

}  // namespace

TEST_CASE("codec round-trips scalars exactly, at their limits") {
  CHECK(round_trip(true) == true);
  CHECK(round_trip(false) == false);
  CHECK(round_trip(std::numeric_limits<std::int8_t>::min()) == std::numeric_limits<std::int8_t>::min());
  CHECK(round_trip(std::numeric_limits<std::int64_t>::min()) == std::numeric_limits<std::int64_t>::min());
  CHECK(round_trip(std::numeric_limits<std::int64_t>::max()) == std::numeric_limits<std::int64_t>::max());
  CHECK(round_trip(std::numeric_limits<std::uint64_t>::max()) == std::numeric_limits<std::uint64_t>::max());
  CHECK(round_trip(std::uint16_t{65535}) == 65535);
  CHECK(round_trip('x') == 'x');
  CHECK(round_trip(1.0f / 3.0f) == 1.0f / 3.0f);
  CHECK(round_trip(std::numeric_limits<double>::denorm_min()) == std::numeric_limits<double>::denorm_min());
  CHECK(round_trip(-0.0) == 0.0);
  CHECK(std::signbit(round_trip(-0.0)));
  CHECK(std::isnan(round_trip(std::nan(""))));
  CHECK(round_trip(std::numeric_limits<double>::infinity()) == std::numeric_limits<double>::infinity());
}

TEST_CASE("codec round-trips strings and bytes, including NULs and empty ones") {
  CHECK(round_trip(std::string()) == "");
  const std::string with_nul("a\0b\0", 4);
  CHECK(round_trip(with_nul) == with_nul);
  CHECK(round_trip(std::string(100000, 'z')) == std::string(100000, 'z'));

  fanout::Bytes bytes{std::byte{0}, std::byte{255}, std::byte{7}};
  CHECK(round_trip(bytes) == bytes);
  CHECK(round_trip(fanout::Bytes{}).empty());
}

TEST_CASE("codec round-trips enums through their underlying type") {
  CHECK(round_trip(Color::blue) == Color::blue);
  CHECK(round_trip(low) == low);
  CHECK(round_trip(high) == high);
}

TEST_CASE("codec round-trips containers and nests them") {
  CHECK(round_trip(std::vector<int>{1, 2, 3}) == std::vector<int>{1, 2, 3});
  CHECK(round_trip(std::vector<bool>{true, false, true}) == std::vector<bool>{true, false, true});
  CHECK(round_trip(std::vector<std::string>{}).empty());
  CHECK(round_trip(std::array<double, 3>{1.5, 2.5, 3.5}) == std::array<double, 3>{1.5, 2.5, 3.5});
  CHECK(round_trip(std::map<std::string, int>{{"a", 1}, {"b", 2}}) == std::map<std::string, int>{{"a", 1}, {"b", 2}});
  CHECK(round_trip(std::unordered_map<int, std::string>{{1, "x"}, {2, "y"}}) ==
        std::unordered_map<int, std::string>{{1, "x"}, {2, "y"}});
  CHECK(round_trip(std::pair<int, std::string>{4, "four"}) == std::pair<int, std::string>{4, "four"});
  CHECK(round_trip(std::tuple<>{}) == std::tuple<>{});
  CHECK(round_trip(std::tuple<int, double, std::string>{1, 2.5, "s"}) ==
        std::tuple<int, double, std::string>{1, 2.5, "s"});

  using Deep = std::vector<std::map<std::string, std::optional<std::tuple<int, std::vector<fanout::Bytes>>>>>;
  const Deep deep{
      {{"some", std::tuple<int, std::vector<fanout::Bytes>>{7, {fanout::Bytes{std::byte{1}}, fanout::Bytes{}}}},
       {"none", std::nullopt}},
      {},
  };
  CHECK(round_trip(deep) == deep);
}

TEST_CASE("codec keeps nested optionals apart") {
  using Nested = std::optional<std::optional<int>>;
  CHECK(round_trip(Nested{}) == Nested{});
  CHECK(round_trip(Nested{std::optional<int>{}}) == Nested{std::optional<int>{}});
  CHECK(round_trip(Nested{std::optional<int>{3}}) == Nested{std::optional<int>{3}});
  CHECK(round_trip(Nested{std::optional<int>{}}).has_value());
}

TEST_CASE("codec carries user structs through fanout_fields, nested in other types") {
  const Shape square{"square", {{0, 0}, {0, 1}, {1, 1}, {1, 0}}, Color::green};
  CHECK(round_trip(square) == square);
  const std::map<std::string, Shape> shapes{{"s", square}, {"empty", Shape{}}};
  CHECK(round_trip(shapes) == shapes);
}

TEST_CASE("decoding into the wrong type names the expected and the actual type") {
  const auto text_as_int = mismatch_message<int>(std::string("seven"));
  CHECK(text_as_int.find("expected int32") != std::string::npos);
  CHECK(text_as_int.find("got text") != std::string::npos);

  const auto nested = mismatch_message<std::vector<int>>(std::vector<std::string>{"a"});
  CHECK(nested.find("expected vector<int32>") != std::string::npos);
  CHECK(nested.find("got list<text>") != std::string::npos);

  const auto map_as_vector = mismatch_message<std::vector<int>>(std::map<std::string, int>{{"k", 1}});
  CHECK(map_as_vector.find("got map<text, int>") != std::string::npos);

  const auto struct_as_tuple = mismatch_message<Point>(std::tuple<int, int, int>{1, 2, 3});
  CHECK(struct_as_tuple.find("Point") != std::string::npos);
  CHECK(struct_as_tuple.find("3 fields") != std::string::npos);

  CHECK(mismatch_message<bool>(1).find("expected bool") != std::string::npos);
  CHECK(mismatch_message<double>(std::string("x")).find("expected float64") != std::string::npos);
  CHECK(mismatch_message<std::string>(fanout::Bytes{}).find("got bytes") != std::string::npos);
}

TEST_CASE("integers convert between widths and signedness only when the number fits") {
  CHECK(round_trip(std::int64_t{200}) == 200);
  CHECK(fanout::decode_payload<std::uint8_t>(fanout::encode_payload(200)) == 200);
  CHECK(fanout::decode_payload<std::int64_t>(fanout::encode_payload(std::uint32_t{7})) == 7);
  CHECK_THROWS_AS(fanout::decode_payload<std::int8_t>(fanout::encode_payload(200)), fanout::TypeMismatch);
  CHECK_THROWS_AS(fanout::decode_payload<unsigned>(fanout::encode_payload(-1)), fanout::TypeMismatch);
  CHECK_THROWS_AS(fanout::decode_payload<std::int64_t>(fanout::encode_payload(std::numeric_limits<std::uint64_t>::max())),
                  fanout::TypeMismatch);
  CHECK(mismatch_message<std::int8_t>(1000).find("out of range") != std::string::npos);
  // Floats widen exactly; nothing narrows silently.
  CHECK(fanout::decode_payload<double>(fanout::encode_payload(0.5f)) == 0.5);
  CHECK_THROWS_AS(fanout::decode_payload<float>(fanout::encode_payload(0.5)), fanout::TypeMismatch);
  CHECK_THROWS_AS(fanout::decode_payload<double>(fanout::encode_payload(1)), fanout::TypeMismatch);
}

TEST_CASE("large byte strings are read in place, not copied") {
  const fanout::Bytes big(4 << 20, std::byte{0x5a});
  const auto payload = fanout::encode_payload(big);
  CHECK(payload.encoded_size() >= big.size());
  CHECK(payload.encoded_size() < big.size() + 1024);  // the bytes are in there once

  const std::byte* first = nullptr;
  const std::byte* second = nullptr;
  payload.read([&](fanout::ValueReader value) { first = value.as_bytes(&fanout::Codec<fanout::Bytes>::name).data(); });
  payload.read([&](fanout::ValueReader value) { second = value.as_bytes(&fanout::Codec<fanout::Bytes>::name).data(); });
  CHECK(first == second);  // both views point into the payload's own storage

  // A copy of the payload shares the encoding instead of duplicating it.
  const auto copy = payload;
  const std::byte* third = nullptr;
  copy.read([&](fanout::ValueReader value) { third = value.as_bytes(&fanout::Codec<fanout::Bytes>::name).data(); });
  CHECK(third == first);
  CHECK(fanout::decode_payload<fanout::Bytes>(copy) == big);
}

// Payload::build writes the capnp layout itself (value_writer.hpp); a capnp builder is the
// reference: both must make the same message, in canonical form, for every kind and nesting.
template <class T>
void check_written_as_capnp_would(const T& value) {
  capnp::MallocMessageBuilder reference;
  fanout::Codec<T>::encode(fanout::wire::wrap(reference.initRoot<fanout::wire::Value>()), value);
  const auto expected = capnp::canonicalize(reference.getRoot<fanout::wire::Value>().asReader());

  const auto payload = fanout::encode_payload(value);
  kj::Array<capnp::word> written;
  payload.read([&](fanout::ValueReader in) { written = capnp::canonicalize(fanout::wire::unwrap(in)); });
  REQUIRE(written.size() == expected.size());
  CHECK(std::memcmp(written.begin(), expected.begin(), expected.size() * sizeof(capnp::word)) == 0);
  CHECK(fanout::decode_payload<T>(payload) == value);
}

TEST_CASE("arguments are written exactly as a capnp builder writes them") {
  check_written_as_capnp_would(std::tuple<>{});
  check_written_as_capnp_would(std::tuple<int>{-7});
  check_written_as_capnp_would(std::tuple<bool, bool>{true, false});
  check_written_as_capnp_would(std::tuple<std::uint64_t, std::int64_t>{std::numeric_limits<std::uint64_t>::max(),
                                                                       std::numeric_limits<std::int64_t>::min()});
  check_written_as_capnp_would(std::tuple<float, double>{-1.5F, 3.25e300});
  check_written_as_capnp_would(std::tuple<std::string, std::string>{"", std::string("a\0b", 3)});
  check_written_as_capnp_would(std::string(7, 'x'));   // text filling its words exactly with the NUL
  check_written_as_capnp_would(std::string(8, 'y'));   // ... and spilling the NUL into a new word
  check_written_as_capnp_would(fanout::Bytes{});
  check_written_as_capnp_would(fanout::Bytes(8, std::byte{0xff}));
  check_written_as_capnp_would(std::vector<int>{});
  check_written_as_capnp_would(std::vector<std::vector<std::string>>{{"a", "bc"}, {}, {"def"}});
  check_written_as_capnp_would(std::map<std::string, std::vector<int>>{{"k", {1, 2}}, {"", {}}});
  check_written_as_capnp_would(std::map<int, int>{});
  check_written_as_capnp_would(std::optional<std::optional<int>>{std::optional<int>{}});
  check_written_as_capnp_would(std::optional<std::optional<int>>{std::optional<int>{4}});
  check_written_as_capnp_would(std::optional<std::string>{});
  check_written_as_capnp_would(std::tuple<Shape, Color, Level>{Shape{"tri", {{0, 0}, {1, 0}, {0, 1}}, Color::blue},
                                                               Color::green, high});
  check_written_as_capnp_would(std::monostate{});
  // Past the writer's stack buffer: the words move to the heap once or more on the way.
  std::vector<std::string> many;
  for (int i = 0; i < 300; ++i) many.push_back(std::string(static_cast<std::size_t>(i % 40), 'z'));
  check_written_as_capnp_would(many);
  check_written_as_capnp_would(fanout::Bytes(100000, std::byte{0x11}));
}

namespace {

// Parameters of every scalar kind: a call of it is written without a writer (Payload::of_scalars).
const fanout::Task scalar_task{"codec.scalars", [](bool, char, std::int8_t, std::uint16_t, int, std::uint64_t,
                                                   std::int64_t, float, double, Color, Level) { return 0; }};

void check_same_words(const fanout::Payload& written, const fanout::Payload& expected) {
  fanout::Payload::WordRoom written_room;
  fanout::Payload::WordRoom expected_room;
  const auto written_words = written.words(written_room);
  const auto expected_words = expected.words(expected_room);
  REQUIRE(written_words.size() == expected_words.size());
  CHECK(std::memcmp(written_words.data(), expected_words.data(), expected_words.size() * 8) == 0);
}

template <class... A>
void check_scalars_as_writer_would(A... values) {
  const auto expected = fanout::encode_payload(std::tuple<A...>{values...});
  const fanout::detail::Scalar scalars[] = {fanout::detail::scalar_of(values)...};
  const auto written = fanout::Payload::of_scalars(scalars);
  check_same_words(written, expected);
  // One or two scalars are held by the Payload itself and written out on demand: the same words.
  CHECK(written.encoded_size() == expected.encoded_size());
  const auto copy = written;
  check_same_words(copy, expected);
  check_same_words(fanout::encode_payload(fanout::decode_payload<std::tuple<A...>>(copy)), expected);  // NaN != NaN
}

}  // namespace

TEST_CASE("calls whose arguments are all scalars are written word for word as the writer writes them") {
  check_scalars_as_writer_would(-7);
  check_scalars_as_writer_would(true, false);
  check_scalars_as_writer_would(std::numeric_limits<std::uint64_t>::max(), std::numeric_limits<std::int64_t>::min());
  check_scalars_as_writer_would(-1.5F, 3.25e300, -0.0F, std::numeric_limits<double>::quiet_NaN());
  check_scalars_as_writer_would('a', static_cast<std::int8_t>(-128), static_cast<std::uint16_t>(65535));
  check_scalars_as_writer_would(Color::blue, high, low);
  // What a Task's call holds, against the tuple encoded through the codec.
  const auto call = scalar_task(true, 'z', std::int8_t{-3}, std::uint16_t{9}, -42, std::uint64_t{1} << 63,
                                std::int64_t{-1}, 2.5F, -1e-300, Color::green, low);
  const auto expected = fanout::encode_payload(std::tuple<bool, char, std::int8_t, std::uint16_t, int, std::uint64_t,
                                                          std::int64_t, float, double, Color, Level>{
      true, 'z', std::int8_t{-3}, std::uint16_t{9}, -42, std::uint64_t{1} << 63, std::int64_t{-1}, 2.5F, -1e-300,
      Color::green, low});
  check_same_words(call.args(), expected);
  const auto back = fanout::decode_payload<std::tuple<bool, char, std::int8_t, std::uint16_t, int, std::uint64_t,
                                                      std::int64_t, float, double, Color, Level>>(call.args());
  CHECK(std::get<4>(back) == -42);
  CHECK(std::get<5>(back) == std::uint64_t{1} << 63);
  CHECK(std::get<8>(back) == -1e-300);
  CHECK(std::get<9>(back) == Color::green);
}

namespace {

template <class Tuple, class Encoded>
std::optional<Tuple> scalars_read_as(const Encoded& value) {
  std::optional<Tuple> read;
  fanout::encode_payload(value).read([&](fanout::ValueReader in) { read = fanout::detail::decode_scalars<Tuple>(in); });
  return read;
}

}  // namespace

TEST_CASE("scalar arguments read in one call are what the codec decodes; anything else is left to it") {
  using Args = std::tuple<bool, std::int8_t, std::uint32_t, float, double, Color, Level>;
  const Args args{true, -128, 4000000000U, -2.5F, 1e-300, Color::blue, low};
  CHECK(scalars_read_as<Args>(args) == args);
  CHECK(scalars_read_as<Args>(args) == fanout::decode_payload<Args>(fanout::encode_payload(args)));
  // Out of range, another signedness, another width of float, another member, another size:
  // decode<T> converts or refuses with its message; the one-call read does neither.
  CHECK_FALSE(scalars_read_as<std::tuple<std::int8_t>>(std::tuple<int>{300}));
  CHECK_FALSE(scalars_read_as<std::tuple<int>>(std::tuple<unsigned>{7}));
  CHECK(fanout::decode_payload<std::tuple<int>>(fanout::encode_payload(std::tuple<unsigned>{7})) == std::tuple<int>{7});
  CHECK_FALSE(scalars_read_as<std::tuple<double>>(std::tuple<float>{1.5F}));
  CHECK_FALSE(scalars_read_as<std::tuple<int, int>>(std::tuple<int, std::string>{1, "x"}));
  CHECK_FALSE(scalars_read_as<std::tuple<int, int>>(std::tuple<int>{1}));
  CHECK_FALSE(scalars_read_as<std::tuple<int>>(7));  // not a tuple at all
}

TEST_CASE("a sequence's bools and numbers are read in one call, up to the first element of another member") {
  using fanout::ValueKind;
  const auto payload = fanout::encode_payload(std::tuple<int, bool, double, std::string, unsigned>{-7, true, 2.5, "x", 9U});
  payload.read([](fanout::ValueReader in) {
    const auto items = in.as_tuple([] { return std::string("a tuple"); });
    fanout::detail::Scalar out[8];
    REQUIRE(items.read_scalars(0, out) == 3);
    CHECK(out[0].kind == ValueKind::int64);
    CHECK(static_cast<std::int64_t>(out[0].bits) == -7);
    CHECK(out[1].kind == ValueKind::boolean);
    CHECK(out[1].bits == 1);
    CHECK(out[2].kind == ValueKind::float64);
    CHECK(std::bit_cast<double>(out[2].bits) == 2.5);
    CHECK(items.read_scalars(3, out) == 0);  // a text
    REQUIRE(items.read_scalars(4, out) == 1);
    CHECK(out[0].kind == ValueKind::uint64);
    CHECK(out[0].bits == 9);
    CHECK(items.read_scalars(0, std::span(out, 2)) == 2);  // no more than `out` holds
    CHECK(items.read_scalars(5, out) == 0);  // past the end
  });
}

TEST_CASE("small values are stored compactly") {
  // Million-task batches hold a Payload per call: it must cost tens of bytes, not a segment.
  CHECK(fanout::encode_payload(std::tuple<int>{3}).encoded_size() <= 96);
  CHECK(fanout::Payload().encoded_size() <= 48);
}

TEST_CASE("describe gives the wire type of a value") {
  const auto payload = fanout::encode_payload(std::tuple<int, std::optional<std::string>, std::vector<double>>{1, "x", {}});
  std::string described;
  payload.read([&](fanout::ValueReader value) { described = value.describe(); });
  CHECK(described == "tuple<int, optional<text>, list<>>");
}

TEST_CASE("long lists and deep maps decode in linear time within the reader limits") {
  // Each element access must not re-read the whole list (which capnp charges against the
  // traversal limit): a quadratic reader fails here long before 100,000 elements.
  std::vector<int> many(100000);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<int>(i);
  CHECK(round_trip(many) == many);
  std::map<int, std::vector<std::string>> wide;
  for (int i = 0; i < 2000; ++i) wide[i] = {std::to_string(i), "x"};
  CHECK(round_trip(wide) == wide);
  std::vector<std::tuple<int, std::string>> rows(20000, {1, "row"});
  CHECK(round_trip(rows) == rows);
}

TEST_CASE("a malformed message is reported as a fanout error, never a foreign exception") {
  capnp::MallocMessageBuilder message;
  message.initRoot<fanout::wire::Value>().setText(std::string(1000, 'q'));
  const auto whole = capnp::messageToFlatArray(message);

  // Cut short, as a result read from a pipe that broke halfway would be.
  auto truncated = kj::heapArray<capnp::word>(whole.size() / 2);
  std::memcpy(truncated.begin(), whole.begin(), truncated.size() * sizeof(capnp::word));
  const auto cut = fanout::wire::payload_from_flat(std::move(truncated), fanout::wire::PayloadRoot::value);
  CHECK_THROWS_AS((void)fanout::decode_payload<std::string>(cut), fanout::Error);

  // A root pointer aimed far outside the message.
  auto corrupt = kj::heapArray<capnp::word>(whole.size());
  std::memcpy(corrupt.begin(), whole.begin(), whole.size() * sizeof(capnp::word));
  reinterpret_cast<std::uint64_t*>(corrupt.begin())[1] = 0x0000000100fffff0ull;
  const auto wild = fanout::wire::payload_from_flat(std::move(corrupt), fanout::wire::PayloadRoot::value);
  CHECK_THROWS_AS((void)fanout::decode_payload<std::string>(wild), fanout::Error);
}

// value_text.hpp: what `fanout deferred list` shows of a dead task's arguments.
namespace {

template <class T>
std::string as_text(const T& value, std::size_t max_bytes = 1024) {
  std::string text;
  fanout::encode_payload(value).read(
      [&](fanout::ValueReader in) { text = fanout::wire::value_text(fanout::wire::unwrap(in), max_bytes); });
  return text;
}

}  // namespace

TEST_CASE("a value as operator text: the values without their C++ types, one line, bounded") {
  CHECK(as_text(std::make_tuple(3, std::string("abc"))) == "(3, \"abc\")");
  CHECK(as_text(std::vector<int>{1, 2}) == "[1, 2]");
  CHECK(as_text(std::map<std::string, double>{{"k", 1.5}}) == "{\"k\": 1.5}");
  CHECK(as_text(std::optional<bool>{}) == "none");
  CHECK(as_text(std::optional<bool>{true}) == "some(true)");
  CHECK(as_text(fanout::Bytes(12)) == "bytes(12)");
  CHECK(as_text(Shape{"tri", {{0, 0}, {1, -2}}, Color::blue}) == "(\"tri\", [(0, 0), (1, -2)], some(250))");
  // Text a peer sent cannot break the line or the table it is shown in.
  CHECK(as_text(std::string("a\nb\"c")).find('\n') == std::string::npos);
  // Long values are cut, and say so.
  const std::string cut = as_text(std::vector<int>(10000, 7), 64);
  CHECK(cut.size() <= 64 + 3);
  CHECK(cut.ends_with("..."));
}
