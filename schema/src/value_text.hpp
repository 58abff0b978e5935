// value_text.hpp: a wire Value (an encoded argument list or result) as one line of text for an
// operator (`fanout deferred list` shows a dead task's arguments this way): (3, "abc", [1, 2],
// {"k": 1.5}, none, some(true), bytes(12)).
//
// Promises: never throws for any value the reader limits let through; text values are quoted and
// made printable (printable.hpp), so the line is one line whatever they hold; nesting deeper than
// 16 shows as `...`; the result is cut near `max_bytes` with `...` at the end. Does not: know the
// C++ types (an enum is its number, a struct a tuple of its fields).
#pragma once

#include <cstddef>
#include <string>

#include "wire.hpp"

namespace fanout::wire {

std::string value_text(Value::Reader value, std::size_t max_bytes = 1024);

}  // namespace fanout::wire
