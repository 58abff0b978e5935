// run_options.hpp: everything `fanout run` is told on its command line, and the parser that reads
// it the way GNU parallel does (run_options.cpp).
//
// GNU parallel parses with Perl's Getopt::Long in "bundling, require_order" mode: options first
// (`-kj2` is -k -j 2, `-j -1` takes "-1" as the value, `--opt=value` or `--opt value`, a long
// option may be shortened while it stays unambiguous), the command from the first word that is not
// an option, `--` ends the options. CLI11 cannot be told all of that (nor to refuse an unknown
// option instead of taking it as the command's first word), so `fanout run` has a small parser of
// its own; the rest of the tool keeps CLI11.
#pragma once

#include <chrono>
#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "run_command.hpp"

namespace fanout::tool {

// -j 0: as many jobs at once as there are jobs (GNU parallel: "as many as possible").
constexpr std::size_t kAsManyAsPossible = std::numeric_limits<std::size_t>::max();

// One input source, in the order GNU parallel combines them: every -a first, then the :::/::::
// groups as they come.
struct InputSource {
  enum class Kind { words, file };  // ::: words, or the records of a file (:::: / -a; "-" is stdin)
  Kind kind = Kind::words;
  std::vector<std::string> words;
  std::string path;
  bool linked = false;  // :::+ / ::::+ : paired with the source before it, not crossed
};

// The replacement strings as named on the command line (-I, --extensionreplace and friends rename
// them).
struct ReplacementNames {
  std::string argument = "{}";
  std::string no_extension = "{.}";
  std::string basename = "{/}";
  std::string dirname = "{//}";
  std::string basename_no_extension = "{/.}";
  std::string seq = "{#}";
  std::string slot = "{%}";
};

enum class OutputMode {
  group,        // default: a job's output whole when it ends
  line_buffer,  // --line-buffer: whole lines as they come
  ungroup,      // -u: as it comes, even half lines
};

enum class ArgumentPacking {
  fixed,    // -N / -n (1 by default): that many arguments per job
  xargs,    // -m: as many as fit on a command line, {} gets them all
  context,  // -X: as many as fit, the word around {} repeated for each
};

struct RunOptions {
  // ---- jobs
  std::size_t jobs = 0;  // at once; 0: the default (cores here, 16 remote); kAsManyAsPossible: -j 0
  std::chrono::milliseconds delay{0};
  std::optional<std::chrono::milliseconds> timeout;  // --timeout N
  double timeout_percent = 0;                        // --timeout N%: of the median run time so far
  std::size_t attempts = 1;                          // --retries N (0 in GNU parallel: no limit)
  HaltPolicy halt;

  // ---- output
  OutputMode output = OutputMode::group;
  bool keep_order = false;
  bool tag = false;
  std::optional<std::string> tagstring;  // implies tag
  bool dry_run = false;
  bool print_command = false;            // -v: the command line before its output, on stdout
  bool trace_command = false;            // -t / --verbose: each command line on stderr as it starts

  // ---- keeping track
  std::string joblog;  // path ("-": stdout); empty: none
  bool joblog_append = false;  // --joblog +FILE
  bool resume = false;
  bool resume_failed = false;
  std::string results;  // --results DIR (or a name with replacement strings)
  bool progress = false;
  bool eta = false;
  bool bar = false;

  // ---- inputs
  std::vector<InputSource> sources;  // none: the records of stdin
  bool link_all = false;             // --link: every source paired, the shorter ones wrapped
  std::string delimiter = "\n";      // -d / -0 (records of files and stdin)
  std::optional<std::string> colsep;  // --colsep REGEX: columns of a record are arguments
  bool header = false;                // --header : the first record of each source names it
  bool shuffle = false;
  ArgumentPacking packing = ArgumentPacking::fixed;
  std::size_t arguments_per_job = 1;  // -N / -n; 0: none (-N0)

  // ---- --pipe
  bool pipe = false;
  std::size_t block_size = std::size_t{1} << 20;
  std::string recstart;        // with --recstart alone, records end with nothing in particular
  std::string recend = "\n";   // (GNU parallel: "\n" only when neither is given)
  bool recend_given = false;

  // ---- the command
  ReplacementNames names;
  bool quote_command = false;  // -q: each word of the command shell-quoted
  std::vector<std::string> command;  // its words, as given

  // ---- remote
  std::string broker;             // empty: run here
  std::string key;                // --key: this client's secret key file (else FANOUT_KEY)
  std::string broker_key;         // --broker-key: the broker's public key file (else FANOUT_BROKER_KEY)
  std::vector<std::string> env;   // --env NAME: sent with every remote job
};

// What the command line asks for.
struct ParsedRun {
  enum class Action { run, help, version } action = Action::run;
  RunOptions options;
};

// Parses the words after `fanout run`. `environment_jobs` and `environment_broker` are FANOUT_JOBS
// and FANOUT_BROKER (empty when unset); the command line wins over them. Throws UsageError naming
// the option for an unknown or unsupported option, a missing or bad value, or no command.
ParsedRun parse_run_command_line(const std::vector<std::string>& words, const std::string& environment_jobs = {},
                                 const std::string& environment_broker = {});

// `fanout run --help`.
std::string run_help();

// Seconds with an optional unit (s, m, h, d; "1m30s" too) as GNU parallel reads --delay and
// --timeout. Throws UsageError naming `option`.
std::chrono::milliseconds parse_duration(const std::string& text, const std::string& option);

// -j's forms against `cores`: N, N% (rounded up), +N, -N (at least 1), 0 (kAsManyAsPossible).
// Throws UsageError.
std::size_t parse_jobs(const std::string& text, std::size_t cores);

// A size with GNU parallel's unit prefixes: k/m/g/t powers of 1000, K/M/G/T (and ki, Mi...)
// powers of 1024. Throws UsageError naming `option`.
std::size_t parse_size(const std::string& text, const std::string& option);

// C-style escapes of -d, --recstart and --recend: \n \t \r \\ and octal \0 or \012.
std::string unescape_delimiter(const std::string& text);

}  // namespace fanout::tool
