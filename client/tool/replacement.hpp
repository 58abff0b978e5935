// replacement.hpp: GNU parallel's replacement strings. A CommandTemplate is a command (or a
// --tagstring, or a --results name) with {} {.} {/} {//} {/.} {#} {%} and their positional forms
// ({2}, {2.}, {-1/}...) in it; expand() fills them in for one job, quoting the arguments as GNU
// parallel quotes them, so that a command line (and --dry-run's output) is the one GNU parallel
// would run.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "run_options.hpp"

namespace fanout::tool {

// GNU parallel's shell quoting: a word of letters, digits and - _ . + / as it is; anything else in
// single quotes ('it'"'"'s'); the empty word as ''.
std::string gnu_quote(std::string_view word);

// What a replacement string does to an argument.
enum class Transform {
  none,                   // {}
  no_extension,           // {.}   dir/file.tar.gz -> dir/file.tar
  basename,               // {/}   dir/file.tar.gz -> file.tar.gz
  dirname,                // {//}  dir/file.tar.gz -> dir (Perl's File::Basename::dirname)
  basename_no_extension,  // {/.}  dir/file.tar.gz -> file.tar
};
std::string transform(std::string_view argument, Transform how);

// --header : rewrites {name}, {name.}, {name/}, {name//} and {name/.} into the positional form of
// column `i + 1` for every names[i], as GNU parallel does before it reads the command.
std::string rewrite_column_names(std::string text, const std::vector<std::string>& names);

class CommandTemplate {
 public:
  enum class Use {
    command,       // a shell line: arguments quoted (unless a replacement string starts the
                   // command); without any replacement string, {} is appended
    pipe_command,  // --pipe's shell line: the same, but nothing appended (the input is on stdin)
    text,          // --tagstring, --results: nothing quoted, nothing appended
  };
  // Throws UsageError for {= perl expressions =}.
  CommandTemplate(const std::vector<std::string>& words, const ReplacementNames& names, Use use,
                  bool context_replace = false, bool quote_words = false);

  // The line for a job with `arguments` (all of its arguments, flattened), sequence number `seq`
  // and job slot `slot`. Several arguments fill {} one after the other, separated by spaces (with
  // -X, the whole word around {} once per argument).
  std::string expand(const std::vector<std::string>& arguments, std::size_t seq, std::size_t slot) const;

  bool uses_slot() const noexcept { return uses_slot_; }
  bool has_replacements() const noexcept { return has_replacements_; }
  // -m / -X: the line's length without arguments, and what one more argument adds to it.
  std::size_t base_length() const noexcept { return base_length_; }
  std::size_t argument_cost(std::string_view argument) const;

 private:
  struct Token {
    enum class Kind { text, whitespace, argument, seq, slot } kind = Kind::text;
    std::string text;                       // Kind::text, Kind::whitespace
    Transform how = Transform::none;        // Kind::argument
    long position = 0;                      // Kind::argument: 0 every argument; N the N-th; -N from the end
  };
  using Word = std::vector<Token>;

  static bool repeats(const Token& token) { return token.kind == Token::Kind::argument && token.position == 0; }
  std::string value_of(const Token& token, const std::vector<std::string>& arguments, std::size_t index, std::size_t seq,
                       std::size_t slot) const;
  void measure();
  void expand_word(const Word& word, const std::vector<std::string>& arguments, std::size_t seq, std::size_t slot,
                   std::vector<std::string>& segments) const;

  std::vector<Word> words_;
  bool quote_arguments_ = true;
  bool quote_words_ = false;
  bool context_replace_ = false;
  bool uses_slot_ = false;
  bool has_replacements_ = false;
  std::size_t base_length_ = 0;  // of the line without arguments
};

}  // namespace fanout::tool
