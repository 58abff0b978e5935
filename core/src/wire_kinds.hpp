// wire_kinds.hpp: ErrorKind <-> wire::ErrorKind. The two enums list the same kinds in the same
// order; the asserts keep it so.
#pragma once

#include <cstdint>

#include <fanout/task_error.hpp>

#include "fanout.capnp.h"

namespace fanout::detail {

static_assert(static_cast<int>(wire::ErrorKind::EXCEPTION) == static_cast<int>(ErrorKind::exception));
static_assert(static_cast<int>(wire::ErrorKind::UNKNOWN_TASK) == static_cast<int>(ErrorKind::unknown_task));
static_assert(static_cast<int>(wire::ErrorKind::TIMEOUT) == static_cast<int>(ErrorKind::timeout));
static_assert(static_cast<int>(wire::ErrorKind::BAD_MESSAGE) == static_cast<int>(ErrorKind::bad_message));
static_assert(static_cast<int>(wire::ErrorKind::UNREACHABLE) == static_cast<int>(ErrorKind::unreachable));

inline wire::ErrorKind to_wire(ErrorKind kind) noexcept { return static_cast<wire::ErrorKind>(kind); }

// An unknown (newer) kind reads as bad_message rather than as a kind it is not.
inline ErrorKind from_wire(wire::ErrorKind kind) noexcept {
  const auto value = static_cast<std::uint16_t>(kind);
  return value <= static_cast<std::uint16_t>(ErrorKind::unreachable) ? static_cast<ErrorKind>(value)
                                                                      : ErrorKind::bad_message;
}

}  // namespace fanout::detail
