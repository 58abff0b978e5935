// shell_quote.hpp: a word as a POSIX shell must be given it.
#pragma once

#include <string>
#include <string_view>

namespace fanout::detail {

// Shell-quotes `word` when it needs it ("it's" -> 'it'\''s'); plain words pass as they are.
std::string shell_quote(std::string_view word);

}  // namespace fanout::detail
