// fanout/codec.hpp: how C++ values become wire Values and back.
//
// Supported out of the box: bool, every integer type, float, double, std::string, fanout::Bytes
// (std::vector<std::byte>), std::vector, std::array, std::map, std::unordered_map, std::optional,
// std::tuple, std::pair, enums, std::monostate (void results), and any nesting of these.
//
// A user struct needs one thing, found by argument-dependent lookup: a function `fanout_fields`
// returning a tuple of references to its members, in a fixed order:
//
//   struct Point { int x; int y; };
//   auto fanout_fields(Point& p) { return std::tie(p.x, p.y); }
//
// It travels as a `tuple`, so a client in another language sends [x, y].
// For full control, specialise fanout::Codec<T> with encode/decode/name as below.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <fanout/error.hpp>
#include <fanout/value.hpp>

namespace fanout {

// Binary data: travels as `bytes`, decoded without an intermediate copy.
using Bytes = std::vector<std::byte>;

template <class T, class Enable = void>
struct Codec {
  static_assert(sizeof(T) == 0,
                "fanout: this type cannot cross the wire. Give it a `fanout_fields(T&)` function "
                "returning std::tie(members...), or specialise fanout::Codec<T>.");
};

namespace detail {

// Readable name of a type the codec has no better name for (user structs, enums).
template <class T>
std::string raw_type_name() {
  std::string_view pretty = __PRETTY_FUNCTION__;
  const auto start = pretty.find("T = ") + 4;
  const auto end = pretty.find_first_of(";]", start);
  return std::string(pretty.substr(start, end - start));
}

template <class T>
concept HasFields = requires(T& value) { fanout_fields(value); };

template <class Tuple, std::size_t... I>
void encode_tuple_elements(SequenceBuilder out, const Tuple& values, std::index_sequence<I...>) {
  (void)out;  // unused for the empty tuple
  (void)values;
  (Codec<std::remove_cvref_t<std::tuple_element_t<I, Tuple>>>::encode(out[I], std::get<I>(values)), ...);
}

template <class... T>
std::string joined_names() {
  std::string names;
  ((names += (names.empty() ? "" : ", "), names += Codec<T>::name()), ...);
  return names;
}

template <class Integer>
Integer narrow_integer(ValueReader in, TypeName name) {
  if constexpr (std::is_signed_v<Integer>) {
    const std::int64_t value = in.as_int(name);
    if (value < static_cast<std::int64_t>(std::numeric_limits<Integer>::min()) ||
        value > static_cast<std::int64_t>(std::numeric_limits<Integer>::max())) {
      throw TypeMismatch(name(), "int " + std::to_string(value), "out of range");
    }
    return static_cast<Integer>(value);
  } else {
    const std::uint64_t value = in.as_uint(name);
    if (value > static_cast<std::uint64_t>(std::numeric_limits<Integer>::max())) {
      throw TypeMismatch(name(), "uint " + std::to_string(value), "out of range");
    }
    return static_cast<Integer>(value);
  }
}

}  // namespace detail

// ---- scalars ------------------------------------------------------------------------------------

template <>
struct Codec<bool> {
  static std::string name() { return "bool"; }
  static void encode(ValueBuilder out, bool value) { out.set_bool(value); }
  static bool decode(ValueReader in) { return in.as_bool(&name); }
};

template <class T>
struct Codec<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  static std::string name() {
    return std::string(std::is_signed_v<T> ? "int" : "uint") + std::to_string(sizeof(T) * 8);
  }
  static void encode(ValueBuilder out, T value) {
    if constexpr (std::is_signed_v<T>) {
      out.set_int(value);
    } else {
      out.set_uint(value);
    }
  }
  static T decode(ValueReader in) { return detail::narrow_integer<T>(in, &name); }
};

template <>
struct Codec<float> {
  static std::string name() { return "float32"; }
  static void encode(ValueBuilder out, float value) { out.set_float32(value); }
  static float decode(ValueReader in) { return in.as_float32(&name); }
};

template <>
struct Codec<double> {
  static std::string name() { return "float64"; }
  static void encode(ValueBuilder out, double value) { out.set_float64(value); }
  static double decode(ValueReader in) { return in.as_float64(&name); }
};

template <class E>
struct Codec<E, std::enable_if_t<std::is_enum_v<E>>> {
  using Underlying = std::underlying_type_t<E>;
  static std::string name() { return "enum " + detail::raw_type_name<E>(); }
  static void encode(ValueBuilder out, E value) {
    Codec<Underlying>::encode(out, static_cast<Underlying>(value));
  }
  static E decode(ValueReader in) { return static_cast<E>(detail::narrow_integer<Underlying>(in, &name)); }
};

namespace detail {

// The types whose Codec writes one scalar member (above), and what it writes: a call of a task
// whose parameters are all such types is encoded without a writer (Payload::of_scalars).
template <class T>
inline constexpr bool kIsScalar =
    std::is_integral_v<T> || std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_enum_v<T>;

template <class T>
Scalar scalar_of(T value) {
  if constexpr (std::is_enum_v<T>) {
    return scalar_of(static_cast<std::underlying_type_t<T>>(value));
  } else if constexpr (std::is_same_v<T, bool>) {
    return {ValueKind::boolean, value ? 1U : 0U};
  } else if constexpr (std::is_same_v<T, float>) {
    return {ValueKind::float32, std::bit_cast<std::uint32_t>(value)};
  } else if constexpr (std::is_same_v<T, double>) {
    return {ValueKind::float64, std::bit_cast<std::uint64_t>(value)};
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    return {ValueKind::int64, static_cast<std::uint64_t>(static_cast<std::int64_t>(value))};
  } else if constexpr (std::is_integral_v<T>) {
    return {ValueKind::uint64, static_cast<std::uint64_t>(value)};
  } else {
    static_assert(sizeof(T) == 0, "fanout: not a scalar the codec writes as one member");
  }
}

// `scalar` as a T when it is exactly what T's Codec writes and its value fits T; nullopt else
// (the Codec's decode then converts it, or says why it does not fit).
template <class T>
std::optional<T> from_scalar(const Scalar& scalar) {
  if constexpr (std::is_enum_v<T>) {
    const auto underlying = from_scalar<std::underlying_type_t<T>>(scalar);
    return underlying ? std::optional<T>(static_cast<T>(*underlying)) : std::nullopt;
  } else if constexpr (std::is_same_v<T, bool>) {
    return scalar.kind == ValueKind::boolean ? std::optional<T>(scalar.bits != 0) : std::nullopt;
  } else if constexpr (std::is_same_v<T, float>) {
    if (scalar.kind != ValueKind::float32) return std::nullopt;
    return std::bit_cast<float>(static_cast<std::uint32_t>(scalar.bits));
  } else if constexpr (std::is_same_v<T, double>) {
    if (scalar.kind != ValueKind::float64) return std::nullopt;
    return std::bit_cast<double>(scalar.bits);
  } else if constexpr (std::is_signed_v<T>) {
    const auto value = static_cast<std::int64_t>(scalar.bits);
    if (scalar.kind != ValueKind::int64 || value < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
        value > static_cast<std::int64_t>(std::numeric_limits<T>::max())) {
      return std::nullopt;
    }
    return static_cast<T>(value);
  } else {
    if (scalar.kind != ValueKind::uint64 || scalar.bits > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
      return std::nullopt;
    }
    return static_cast<T>(scalar.bits);
  }
}

template <class Tuple>
inline constexpr bool kIsScalarTuple = false;
template <class... T>
inline constexpr bool kIsScalarTuple<std::tuple<T...>> = sizeof...(T) > 0 && (kIsScalar<T> && ...);

// A tuple of scalars from their members and bits, when there are as many as it has elements and
// every one is exactly what its element's Codec writes; nullopt else.
template <class Tuple>
std::optional<Tuple> from_scalars(std::span<const Scalar> scalars) {
  constexpr std::size_t kCount = std::tuple_size_v<Tuple>;
  if (scalars.size() != kCount) return std::nullopt;
  return [&]<std::size_t... I>(std::index_sequence<I...>) -> std::optional<Tuple> {
    const auto parts = std::make_tuple(from_scalar<std::tuple_element_t<I, Tuple>>(scalars[I])...);
    if (!(std::get<I>(parts).has_value() && ...)) return std::nullopt;
    return Tuple{*std::get<I>(parts)...};
  }(std::make_index_sequence<kCount>{});
}

// A tuple of scalars read in one call (ValueReader::read_scalars), when every element is exactly
// what its Codec writes; nullopt else, for decode<Tuple> to convert or to say why not.
template <class Tuple>
std::optional<Tuple> decode_scalars(ValueReader in) {
  Scalar scalars[std::tuple_size_v<Tuple>];
  if (!in.read_scalars(scalars)) return std::nullopt;
  return from_scalars<Tuple>(scalars);
}

}  // namespace detail

template <>
struct Codec<std::monostate> {
  static std::string name() { return "none"; }
  static void encode(ValueBuilder out, std::monostate) { out.set_none(); }
  static std::monostate decode(ValueReader in) {
    if (in.kind() != ValueKind::none) throw TypeMismatch(name(), in.describe());
    return {};
  }
};

template <>
struct Codec<std::string> {
  static std::string name() { return "string"; }
  static void encode(ValueBuilder out, std::string_view value) { out.set_text(value); }
  static std::string decode(ValueReader in) { return std::string(in.as_text(&name)); }
};

template <>
struct Codec<Bytes> {
  static std::string name() { return "bytes"; }
  static void encode(ValueBuilder out, const Bytes& value) { out.set_bytes(value); }
  static Bytes decode(ValueReader in) {
    const auto view = in.as_bytes(&name);
    return Bytes(view.begin(), view.end());
  }
};

// ---- containers ---------------------------------------------------------------------------------

template <class T, class Allocator>
struct Codec<std::vector<T, Allocator>, std::enable_if_t<!std::is_same_v<T, std::byte>>> {
  static std::string name() { return "vector<" + Codec<T>::name() + ">"; }
  static void encode(ValueBuilder out, const std::vector<T, Allocator>& values) {
    auto list = out.init_list(values.size());
    std::size_t i = 0;
    for (const auto& value : values) Codec<T>::encode(list[i++], value);  // also vector<bool>
  }
  static std::vector<T, Allocator> decode(ValueReader in) {
    const SequenceReader items = in.as_list(&name);
    std::vector<T, Allocator> values;
    values.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) values.push_back(Codec<T>::decode(items[i]));
    return values;
  }
};

template <class T, std::size_t N>
struct Codec<std::array<T, N>> {
  static std::string name() { return "array<" + Codec<T>::name() + ", " + std::to_string(N) + ">"; }
  static void encode(ValueBuilder out, const std::array<T, N>& values) {
    auto list = out.init_list(N);
    for (std::size_t i = 0; i < N; ++i) Codec<T>::encode(list[i], values[i]);
  }
  static std::array<T, N> decode(ValueReader in) {
    const SequenceReader items = in.as_list(&name);
    if (items.size() != N) throw TypeMismatch(name(), in.describe(), std::to_string(items.size()) + " elements");
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return std::array<T, N>{Codec<T>::decode(items[I])...};
    }(std::make_index_sequence<N>{});
  }
};

namespace detail {
template <class MapType, class K, class V>
struct MapCodec {
  static std::string name() { return "map<" + Codec<K>::name() + ", " + Codec<V>::name() + ">"; }
  static void encode(ValueBuilder out, const MapType& values) {
    auto map = out.init_map(values.size());
    std::size_t i = 0;
    for (const auto& [key, value] : values) {
      Codec<K>::encode(map.key(i), key);
      Codec<V>::encode(map.value(i), value);
      ++i;
    }
  }
  static MapType decode(ValueReader in) {
    const MapReader entries = in.as_map(&name);
    MapType values;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      values.insert_or_assign(Codec<K>::decode(entries.key(i)), Codec<V>::decode(entries.value(i)));
    }
    return values;
  }
};
}  // namespace detail

template <class K, class V, class Compare, class Allocator>
struct Codec<std::map<K, V, Compare, Allocator>>
    : detail::MapCodec<std::map<K, V, Compare, Allocator>, K, V> {};

template <class K, class V, class Hash, class Equal, class Allocator>
struct Codec<std::unordered_map<K, V, Hash, Equal, Allocator>>
    : detail::MapCodec<std::unordered_map<K, V, Hash, Equal, Allocator>, K, V> {};

template <class T>
struct Codec<std::optional<T>> {
  static std::string name() { return "optional<" + Codec<T>::name() + ">"; }
  static void encode(ValueBuilder out, const std::optional<T>& value) {
    if (value) {
      Codec<T>::encode(out.init_some(), *value);
    } else {
      out.set_none();
    }
  }
  static std::optional<T> decode(ValueReader in) {
    if (in.kind() == ValueKind::none) return std::nullopt;
    return Codec<T>::decode(in.as_some(&name));
  }
};

template <class... T>
struct Codec<std::tuple<T...>> {
  static std::string name() { return "tuple<" + detail::joined_names<T...>() + ">"; }
  static void encode(ValueBuilder out, const std::tuple<T...>& values) {
    detail::encode_tuple_elements(out.init_tuple(sizeof...(T)), values, std::index_sequence_for<T...>{});
  }
  static std::tuple<T...> decode(ValueReader in) {
    const SequenceReader items = in.as_tuple(&name);
    if (items.size() != sizeof...(T)) {
      throw TypeMismatch(name(), in.describe(), std::to_string(items.size()) + " elements");
    }
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return std::tuple<T...>{Codec<T>::decode(items[I])...};
    }(std::index_sequence_for<T...>{});
  }
};

template <class A, class B>
struct Codec<std::pair<A, B>> {
  static std::string name() { return "pair<" + detail::joined_names<A, B>() + ">"; }
  static void encode(ValueBuilder out, const std::pair<A, B>& value) {
    Codec<std::tuple<A, B>>::encode(out, std::tuple<A, B>(value.first, value.second));
  }
  static std::pair<A, B> decode(ValueReader in) {
    auto [a, b] = Codec<std::tuple<A, B>>::decode(in);
    return {std::move(a), std::move(b)};
  }
};

// ---- user structs through fanout_fields ---------------------------------------------------------

template <class T>
struct Codec<T, std::enable_if_t<std::is_class_v<T> && detail::HasFields<T>>> {
  using Fields = decltype(fanout_fields(std::declval<T&>()));

  static std::string name() { return detail::raw_type_name<T>(); }
  static void encode(ValueBuilder out, const T& value) {
    // fanout_fields takes T& so that one function serves both directions; encoding only reads.
    const Fields fields = fanout_fields(const_cast<T&>(value));
    constexpr std::size_t arity = std::tuple_size_v<Fields>;
    detail::encode_tuple_elements(out.init_tuple(arity), fields, std::make_index_sequence<arity>{});
  }
  static T decode(ValueReader in) {
    constexpr std::size_t arity = std::tuple_size_v<Fields>;
    const SequenceReader items = in.as_tuple(&name);
    if (items.size() != arity) throw TypeMismatch(name(), in.describe(), std::to_string(items.size()) + " fields");
    T value{};
    Fields fields = fanout_fields(value);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((std::get<I>(fields) =
            Codec<std::remove_cvref_t<std::tuple_element_t<I, Fields>>>::decode(items[I])),
       ...);
    }(std::make_index_sequence<arity>{});
    return value;
  }
};

// ---- entry points -------------------------------------------------------------------------------

template <class T>
void encode(ValueBuilder out, const T& value) {
  Codec<std::remove_cvref_t<T>>::encode(out, value);
}

// Decodes `in` as T. On a mismatch anywhere inside, throws TypeMismatch whose message names the
// whole expected type, the whole actual wire type, and the innermost disagreement.
template <class T>
T decode(ValueReader in) {
  try {
    return Codec<T>::decode(in);
  } catch (const TypeMismatch& inner) {
    const std::string expected = Codec<T>::name();
    if (inner.expected() == expected) throw;
    throw TypeMismatch(expected, in.describe(), inner.what());
  }
}

template <class T>
Payload encode_payload(const T& value) {
  return Payload::build([&](ValueBuilder out) { encode(out, value); });
}

template <class T>
T decode_payload(const Payload& payload) {
  std::optional<T> result;
  payload.read([&](ValueReader in) { result.emplace(decode<T>(in)); });
  return std::move(*result);
}

}  // namespace fanout
