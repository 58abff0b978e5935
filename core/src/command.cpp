// command.cpp: commands as people read them.
#include <fanout/command.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "shell_quote.hpp"

namespace fanout {

namespace detail {

std::string shell_quote(std::string_view word) {
  const bool plain = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || std::strchr("@%+=:,./_-", c) != nullptr;
  });
  if (plain) return std::string(word);
  std::string quoted = "'";
  for (const char c : word) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  quoted += "'";
  return quoted;
}

}  // namespace detail

std::string ProcessCommand::to_string() const {
  if (shell_) return line_;
  std::string text;
  for (const auto& word : argv_) {
    if (!text.empty()) text += ' ';
    text += detail::shell_quote(word);
  }
  return text;
}

}  // namespace fanout
