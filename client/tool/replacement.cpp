// replacement.cpp: GNU parallel's replacement strings (its CommandLine::replace_placeholders and
// shell_quote_scalar_default, with the fixed set of replacement strings and no Perl).
#include "replacement.hpp"

#include <algorithm>
#include <cctype>
#include <utility>

namespace fanout::tool {

namespace {

bool plain_character(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' || c == '.' || c == '+' || c == '/';
}

bool is_whitespace(char c) { return c == ' ' || c == '\t' || c == '\n'; }

// The replacement strings by name; the one matched is the longest name found at a position.
struct Named {
  const std::string* name;
  int kind;  // 0 argument, 1 seq, 2 slot
  Transform how;
};

}  // namespace

std::string gnu_quote(std::string_view word) {
  if (word.empty()) return "''";
  if (std::all_of(word.begin(), word.end(), plain_character)) return std::string(word);
  std::string quoted = "'";
  for (const char c : word) {
    if (c == '\'') {
      quoted += "'\"'\"'";
    } else {
      quoted += c;
    }
  }
  quoted += '\'';
  // 'it'"'"'s' stays, but ''"'"'x' loses its leading '' (and likewise at the end), as in GNU parallel.
  if (quoted.size() > 2 && quoted.compare(0, 2, "''") == 0) quoted.erase(0, 2);
  if (quoted.size() > 2 && quoted.compare(quoted.size() - 2, 2, "''") == 0) quoted.erase(quoted.size() - 2);
  return quoted;
}

std::string transform(std::string_view argument, Transform how) {
  const auto no_extension = [](std::string_view text) {
    const auto dot = text.rfind('.');
    if (dot != std::string_view::npos && text.find('/', dot) == std::string_view::npos) text = text.substr(0, dot);
    return text;
  };
  const auto basename = [](std::string_view text) {
    const auto slash = text.rfind('/');
    return slash == std::string_view::npos ? text : text.substr(slash + 1);
  };
  switch (how) {
    case Transform::none:
      return std::string(argument);
    case Transform::no_extension:
      return std::string(no_extension(argument));
    case Transform::basename:
      return std::string(basename(argument));
    case Transform::basename_no_extension:
      return std::string(no_extension(basename(argument)));
    case Transform::dirname: {
      // Perl's dirname on Unix: trailing slashes do not count; no slash left means "."; what is
      // left after the last component (and its slashes) goes, and nothing left means "/".
      std::string_view text = argument;
      while (text.size() > 1 && text.back() == '/') text.remove_suffix(1);
      if (text == "/") return "/";
      const auto slash = text.rfind('/');
      if (slash == std::string_view::npos) return ".";
      text = text.substr(0, slash);
      while (!text.empty() && text.back() == '/') text.remove_suffix(1);
      return text.empty() ? "/" : std::string(text);
    }
  }
  return std::string(argument);
}

std::string rewrite_column_names(std::string text, const std::vector<std::string>& names) {
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty()) continue;
    for (const char* suffix : {"", "/", "//", ".", "/."}) {
      const std::string from = "{" + names[i] + suffix + "}";
      const std::string to = "{" + std::to_string(i + 1) + suffix + "}";
      for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
        text.replace(at, from.size(), to);
      }
    }
  }
  return text;
}

CommandTemplate::CommandTemplate(const std::vector<std::string>& words, const ReplacementNames& names, Use use,
                                 bool context_replace, bool quote_words)
    : quote_words_(quote_words), context_replace_(context_replace) {
  const std::vector<Named> named{
      {&names.argument, 0, Transform::none},       {&names.no_extension, 0, Transform::no_extension},
      {&names.basename, 0, Transform::basename},   {&names.dirname, 0, Transform::dirname},
      {&names.basename_no_extension, 0, Transform::basename_no_extension},
      {&names.seq, 1, Transform::none},            {&names.slot, 2, Transform::none},
  };
  for (const std::string& text : words) {
    Word word;
    std::string literal;
    const auto flush = [&] {
      if (!literal.empty()) word.push_back(Token{Token::Kind::text, std::exchange(literal, {}), Transform::none, 0});
    };
    std::size_t i = 0;
    while (i < text.size()) {
      if (text.compare(i, 2, "{=") == 0 && text.find("=}", i + 2) != std::string::npos) {
        throw UsageError("the Perl expression in '" + text + "' is not supported (fanout has {} {.} {/} {//} {/.} {#} {%} "
                         "and their positional forms such as {2.})");
      }
      // The longest replacement string here, plain ({.}) or positional ({2.}, {-1/}).
      Token best;
      std::size_t best_length = 0;
      for (const Named& candidate : named) {
        const std::string& name = *candidate.name;
        if (name.size() > best_length && text.compare(i, name.size(), name) == 0) {
          best_length = name.size();
          best = Token{candidate.kind == 0   ? Token::Kind::argument
                       : candidate.kind == 1 ? Token::Kind::seq
                                             : Token::Kind::slot,
                       {}, candidate.how, 0};
        }
      }
      if (text[i] == '{') {
        std::size_t j = i + 1;
        const bool negative = j < text.size() && text[j] == '-';
        if (negative) ++j;
        const std::size_t digits_start = j;
        while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j])) != 0 && j - digits_start < 9) ++j;
        if (j > digits_start) {
          const long number = std::stol(text.substr(digits_start, j - digits_start));
          while (j < text.size() && is_whitespace(text[j])) ++j;
          for (const Named& candidate : named) {
            const std::string& name = *candidate.name;
            if (name.size() < 2 || name[0] != '{') continue;
            const std::string suffix = name.substr(1);
            const std::size_t length = j - i + suffix.size();
            if (length > best_length && text.compare(j, suffix.size(), suffix) == 0) {
              best_length = length;
              best = Token{candidate.kind == 0   ? Token::Kind::argument
                           : candidate.kind == 1 ? Token::Kind::seq
                                                 : Token::Kind::slot,
                           {}, candidate.how, negative ? -number : number};
            }
          }
        }
      }
      if (best_length == 0) {
        if (context_replace_ && is_whitespace(text[i])) {
          flush();
          word.push_back(Token{Token::Kind::whitespace, std::string(1, text[i]), Transform::none, 0});
        } else {
          literal += text[i];
        }
        ++i;
        continue;
      }
      flush();
      has_replacements_ = true;
      uses_slot_ = uses_slot_ || best.kind == Token::Kind::slot;
      word.push_back(std::move(best));
      i += best_length;
    }
    flush();
    words_.push_back(std::move(word));
  }
  if (use == Use::text) {
    quote_arguments_ = false;
    measure();
    return;
  }
  if (!has_replacements_ && use == Use::command) {
    words_.push_back(Word{Token{Token::Kind::argument, {}, Transform::none, 0}});
    has_replacements_ = true;
  }
  // GNU parallel quotes nothing when a replacement string starts the command ({} alone, ./{},
  // {1} {2}...): the arguments are then the command itself.
  quote_arguments_ = true;
  if (!words_.empty()) {
    for (const Token& token : words_.front()) {
      if (token.kind == Token::Kind::whitespace) break;
      if (token.kind != Token::Kind::text) {
        quote_arguments_ = false;
        break;
      }
      if (token.text.find_first_of(" \t\n=") != std::string::npos) break;
    }
  }
  if (quote_words_) quote_arguments_ = false;  // -q quotes whole words instead
  measure();
}

void CommandTemplate::measure() { base_length_ = expand({}, 1, 1).size(); }

std::string CommandTemplate::value_of(const Token& token, const std::vector<std::string>& arguments, std::size_t index,
                                      std::size_t seq, std::size_t slot) const {
  switch (token.kind) {
    case Token::Kind::text:
    case Token::Kind::whitespace:
      return token.text;
    case Token::Kind::seq:
      return std::to_string(seq);
    case Token::Kind::slot:
      return std::to_string(slot);
    case Token::Kind::argument:
      break;
  }
  if (token.position != 0) {
    const long count = static_cast<long>(arguments.size());
    const long at = token.position > 0 ? token.position - 1 : count + token.position;
    if (at < 0 || at >= count) return {};
    index = static_cast<std::size_t>(at);
  } else if (index >= arguments.size()) {
    return {};  // -N0: no argument, {} is empty (and not quoted)
  }
  std::string value = transform(arguments[index], token.how);
  return quote_arguments_ ? gnu_quote(value) : value;
}

void CommandTemplate::expand_word(const Word& word, const std::vector<std::string>& arguments, std::size_t seq,
                                  std::size_t slot, std::vector<std::string>& segments) const {
  // Segments are separated by unquoted spaces: between words, and between the copies made for
  // several arguments. With -X, a group (the tokens between whitespace) that holds {} is copied
  // whole for each argument; otherwise only {} itself is.
  std::string segment;
  auto group_start = word.begin();
  while (group_start != word.end()) {
    auto group_end = group_start;
    if (context_replace_) {
      while (group_end != word.end() && group_end->kind != Token::Kind::whitespace) ++group_end;
      if (group_end == group_start) ++group_end;  // a whitespace token alone
    } else {
      group_end = word.end();
    }
    const bool whole_group_repeats = context_replace_ && std::any_of(group_start, group_end, repeats);
    if (whole_group_repeats && !arguments.empty()) {
      for (std::size_t a = 0; a < arguments.size(); ++a) {
        if (a > 0) segments.push_back(std::exchange(segment, {}));
        for (auto token = group_start; token != group_end; ++token) segment += value_of(*token, arguments, a, seq, slot);
      }
    } else {
      for (auto token = group_start; token != group_end; ++token) {
        if (!repeats(*token) || context_replace_ || arguments.size() < 2) {
          segment += value_of(*token, arguments, 0, seq, slot);
          continue;
        }
        for (std::size_t a = 0; a < arguments.size(); ++a) {
          if (a > 0) segments.push_back(std::exchange(segment, {}));
          segment += value_of(*token, arguments, a, seq, slot);
        }
      }
    }
    group_start = group_end;
  }
  segments.push_back(std::move(segment));
}

std::string CommandTemplate::expand(const std::vector<std::string>& arguments, std::size_t seq, std::size_t slot) const {
  std::vector<std::string> segments;
  for (const Word& word : words_) expand_word(word, arguments, seq, slot, segments);
  std::string line;
  for (std::size_t s = 0; s < segments.size(); ++s) {
    if (s > 0) line += ' ';
    line += quote_words_ ? gnu_quote(segments[s]) : segments[s];
  }
  return line;
}

std::size_t CommandTemplate::argument_cost(std::string_view argument) const {
  // What one more copy adds: a space and the argument (with -X, the whole word around it) for
  // every place it goes.
  const std::string value(argument);
  const std::size_t one = expand({value}, 1, 1).size();
  const std::size_t two = expand({value, value}, 1, 1).size();
  return std::max<std::size_t>(1, two > one ? two - one : 0);
}

}  // namespace fanout::tool
