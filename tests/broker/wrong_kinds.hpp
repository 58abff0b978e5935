// wrong_kinds.hpp: a well-formed message with one pointer made the wrong kind, for every pointer
// in it. The whole-frame check on arrival walks pointers but not their kinds (it cannot: the wire
// carries no schema), so a struct where text belongs passes it and throws only when that field is
// read. Every such copy of a peer's message tells whether the broker reads what it keeps while it
// still handles the message (a throw there refuses the message) rather than later (a throw there
// stops the broker's loop).
#pragma once

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include <zmq.hpp>

namespace broker_test {

// What a pointer is made into.
enum class WrongKind { null, small_struct, unterminated_bytes, struct_list, pointer_list, bit_list };
inline constexpr WrongKind kWrongKinds[] = {WrongKind::null,         WrongKind::small_struct, WrongKind::unterminated_bytes,
                                            WrongKind::struct_list, WrongKind::pointer_list, WrongKind::bit_list};

namespace detail {

// Calls visit(pointer) on every pointer reachable from `pointer`, itself first (pre-order; struct
// fields and list elements in order); stops, returning true, once visit returns true.
template <class Visit>
bool walk_pointer(capnp::AnyPointer::Builder pointer, Visit& visit);

template <class Visit>
bool walk_struct(capnp::AnyStruct::Builder node, Visit& visit) {
  auto section = node.getPointerSection();
  for (unsigned i = 0; i < section.size(); ++i) {
    if (walk_pointer(section[i], visit)) return true;
  }
  return false;
}

template <class Visit>
bool walk_pointer(capnp::AnyPointer::Builder pointer, Visit& visit) {
  if (visit(pointer)) return true;
  if (pointer.isStruct()) return walk_struct(pointer.getAs<capnp::AnyStruct>(), visit);
  if (!pointer.isList()) return false;
  const auto size = pointer.getAs<capnp::AnyList>().getElementSize();
  if (size == capnp::ElementSize::INLINE_COMPOSITE) {
    auto elements = pointer.getAs<capnp::AnyList>().as<capnp::List<capnp::AnyStruct>>();
    for (unsigned i = 0; i < elements.size(); ++i) {
      if (walk_struct(elements[i], visit)) return true;
    }
  } else if (size == capnp::ElementSize::POINTER) {
    auto elements = pointer.getAs<capnp::AnyList>().as<capnp::List<capnp::AnyPointer>>();
    for (unsigned i = 0; i < elements.size(); ++i) {
      if (walk_pointer(elements[i], visit)) return true;
    }
  }
  return false;
}

inline void make_wrong(capnp::AnyPointer::Builder pointer, WrongKind kind) {
  switch (kind) {
    case WrongKind::null: pointer.clear(); break;
    case WrongKind::small_struct: pointer.initAsAnyStruct(1, 1); break;
    case WrongKind::unterminated_bytes: {  // text without its NUL, or data where a struct belongs
      auto bytes = pointer.initAs<capnp::Data>(3);
      std::memset(bytes.begin(), 'x', bytes.size());
      break;
    }
    case WrongKind::struct_list: pointer.initAsListOfAnyStruct(1, 1, 2); break;
    case WrongKind::pointer_list: pointer.initAsAnyList(capnp::ElementSize::POINTER, 2); break;
    case WrongKind::bit_list: pointer.initAsAnyList(capnp::ElementSize::BIT, 9); break;
  }
}

// The message in `frame` (a flat array, as OutMessage::frame() makes) in a builder of its own.
inline void copy_into(const zmq::message_t& frame, capnp::MallocMessageBuilder& builder) {
  std::vector<capnp::word> words(frame.size() / sizeof(capnp::word));
  std::memcpy(words.data(), frame.data(), words.size() * sizeof(capnp::word));
  capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
  builder.setRoot(reader.getRoot<capnp::AnyPointer>());
}

}  // namespace detail

// How many pointers `frame` holds, the root included.
inline std::size_t pointer_count(const zmq::message_t& frame) {
  capnp::MallocMessageBuilder builder;
  detail::copy_into(frame, builder);
  std::size_t count = 0;
  auto visit = [&](capnp::AnyPointer::Builder) {
    ++count;
    return false;
  };
  detail::walk_pointer(builder.getRoot<capnp::AnyPointer>(), visit);
  return count;
}

// `frame` with its pointer number `which` (in pointer_count's order) made `kind`.
inline zmq::message_t with_wrong_kind(const zmq::message_t& frame, std::size_t which, WrongKind kind) {
  capnp::MallocMessageBuilder builder;
  detail::copy_into(frame, builder);
  std::size_t seen = 0;
  auto visit = [&](capnp::AnyPointer::Builder pointer) {
    if (seen++ != which) return false;
    detail::make_wrong(pointer, kind);
    return true;
  };
  detail::walk_pointer(builder.getRoot<capnp::AnyPointer>(), visit);
  const auto words = capnp::messageToFlatArray(builder);
  return zmq::message_t(words.begin(), words.size() * sizeof(capnp::word));
}

}  // namespace broker_test
