#include "printable.hpp"

#include <cstdint>

namespace fanout::wire {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";

void put_byte(std::string& out, unsigned char byte) {
  out += "\\x";
  out += hex_digits[byte >> 4];
  out += hex_digits[byte & 0xf];
}

void put_code_point(std::string& out, std::uint32_t code) {
  out += "\\u{";
  bool started = false;
  for (int shift = 20; shift >= 0; shift -= 4) {
    const auto digit = (code >> shift) & 0xf;
    if (digit != 0 || started || shift == 0) {
      out += hex_digits[digit];
      started = true;
    }
  }
  out += '}';
}

bool shown_escaped(std::uint32_t code) {
  return (code >= 0x80 && code <= 0x9f) || code == 0x061c || code == 0x200e || code == 0x200f ||
         (code >= 0x2028 && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069);
}

// The length of the well-formed UTF-8 sequence at `text[i]` (2 to 4) and its code point, or 0.
std::size_t utf8_at(std::string_view text, std::size_t i, std::uint32_t& code) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
  const unsigned char lead = byte(0);
  std::size_t length = 0;
  std::uint32_t min = 0;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    code = lead & 0x1f;
    min = 0x80;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    code = lead & 0x0f;
    min = 0x800;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    code = lead & 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(k) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(k) & 0x3f);
  }
  if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
  return length;
}

}  // namespace

std::string printable(std::string_view text, std::size_t max_bytes) {
  const std::size_t whole = text.size();
  const bool cut = max_bytes > 0 && whole > max_bytes;
  if (cut) text = text.substr(0, max_bytes);
  std::string out;
  out.reserve(text.size() + 8);
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      if (c == '\\') out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c == '\n') {
      out += "\\n";
      ++i;
    } else if (c == '\r') {
      out += "\\r";
      ++i;
    } else if (c == '\t') {
      out += "\\t";
      ++i;
    } else if (c < 0x80) {
      put_byte(out, c);
      ++i;
    } else {
      std::uint32_t code = 0;
      const std::size_t length = utf8_at(text, i, code);
      if (length == 0) {
        put_byte(out, c);
        ++i;
      } else {
        if (shown_escaped(code)) {
          put_code_point(out, code);
        } else {
          out.append(text.substr(i, length));
        }
        i += length;
      }
    }
  }
  if (cut) out += "...(" + std::to_string(whole) + " bytes)";
  return out;
}

}  // namespace fanout::wire
