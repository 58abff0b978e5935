// printable.hpp: text a peer sent, made safe to write into a log line or onto a terminal.
//
// Worker ids, host names, task names and error messages arrive from peers, and a peer may put
// anything in them: a newline that starts a forged log line, a carriage return that overwrites
// one, ANSI escape sequences that recolour or clear a terminal, bidirectional overrides that make
// text read differently from what it is. printable() keeps what reads as itself and escapes the
// rest, so that what is shown is unambiguous and fits on the line it was written on:
//   - printable ASCII and well-formed UTF-8 stay as they are, except `\` (written `\\`);
//   - \n, \r, \t become `\n`, `\r`, `\t`; other C0 controls, DEL and bytes that are not
//     well-formed UTF-8 become `\xHH`;
//   - C1 controls (U+0080..U+009F), bidirectional controls (U+061C, U+200E, U+200F,
//     U+202A..U+202E, U+2066..U+2069) and line/paragraph separators (U+2028, U+2029) become
//     `\u{XXXX}`.
// With max_bytes > 0, the input is cut after that many bytes and `...(N bytes)` says how long it
// was, so that a megabyte-long worker id does not flood the log.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace fanout::wire {

std::string printable(std::string_view text, std::size_t max_bytes = 0);

// The limit the broker and worker use for peer text in their logs.
inline constexpr std::size_t kLogTextLimit = 256;

}  // namespace fanout::wire
