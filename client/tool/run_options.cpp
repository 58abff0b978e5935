// run_options.cpp: `fanout run`'s command line, read as GNU parallel reads its own (see the header).
// One table lists every option: those fanout supports with what each does, and GNU parallel's
// others with the reason fanout refuses them, so that no option of GNU parallel is ever mistaken
// for the first word of the command.
#include "run_options.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <regex>
#include <thread>

namespace fanout::tool {

namespace {

bool all_digits(const std::string& text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
}

std::size_t parse_count(const std::string& text, const std::string& option) {
  if (!all_digits(text) || text.size() > 9) {
    throw UsageError(option + " " + text + ": expected a whole number");
  }
  return static_cast<std::size_t>(std::stoul(text));
}

bool is_environment_name(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])) != 0) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; });
}

enum class Value { none, required, attached_optional };

using Apply = std::function<void(RunOptions&, const std::string& value, const std::string& spelled)>;

// An option: its long names, its one-letter names, whether it takes a value, and what it does. An
// empty `refused` means supported; otherwise it is GNU parallel's and refused with that reason.
struct Option {
  std::vector<std::string> long_names;
  std::string letters;
  Value value = Value::none;
  Apply apply;
  std::string refused;
};

Option flag(std::vector<std::string> names, std::string letters, std::function<void(RunOptions&)> set) {
  return Option{std::move(names), std::move(letters), Value::none,
                [set = std::move(set)](RunOptions& options, const std::string&, const std::string&) { set(options); },
                {}};
}

Option valued(std::vector<std::string> names, std::string letters, Apply apply) {
  return Option{std::move(names), std::move(letters), Value::required, std::move(apply), {}};
}

Option refused(std::vector<std::string> names, std::string letters, std::string why) {
  return Option{std::move(names), std::move(letters), Value::none, {}, std::move(why)};
}

const char* const kNoSsh = "fanout runs jobs on the workers of a broker (--broker ADDR), not over ssh";
const char* const kNoPipeVariant =
    "of --pipe's variants fanout has plain --pipe with --block, --recstart, --recend, --header and -N";
const char* const kNoPerl = "fanout has no Perl replacement strings, only {} {.} {/} {//} {/.} {#} {%}, their "
                            "positional forms, --header names and -I and friends";

std::vector<Option> make_options() {
  std::vector<Option> options;
  const std::size_t cores = std::max(1U, std::thread::hardware_concurrency());

  // ---- running
  options.push_back(valued({"jobs", "max-procs", "maxprocs"}, "jP",
                           [cores](RunOptions& o, const std::string& v, const std::string&) { o.jobs = parse_jobs(v, cores); }));
  options.push_back(valued({"delay"}, "", [](RunOptions& o, const std::string& v, const std::string& s) {
    if (v.size() > 4 && v.compare(v.size() - 4, 4, "auto") == 0) {
      throw UsageError(s + " " + v + ": 'auto' delays are not supported; give a fixed duration");
    }
    o.delay = parse_duration(v, s);
  }));
  options.push_back(valued({"timeout"}, "", [](RunOptions& o, const std::string& v, const std::string& s) {
    if (!v.empty() && v.back() == '%') {
      char* end = nullptr;
      const std::string number = v.substr(0, v.size() - 1);
      const double percent = std::strtod(number.c_str(), &end);
      if (number.empty() || *end != '\0' || !std::isfinite(percent) || percent <= 0) {
        throw UsageError(s + " " + v + ": expected a positive percentage, such as 200%");
      }
      o.timeout_percent = percent;
      o.timeout.reset();
      return;
    }
    const auto limit = parse_duration(v, s);
    if (limit.count() <= 0) throw UsageError(s + " " + v + ": expected a positive duration");
    o.timeout = limit;
    o.timeout_percent = 0;
  }));
  options.push_back(valued({"retries"}, "", [](RunOptions& o, const std::string& v, const std::string& s) {
    o.attempts = parse_count(v, s);  // 0: no limit, as in GNU parallel
  }));
  options.push_back(valued({"halt", "halt-on-error"}, "",
                           [](RunOptions& o, const std::string& v, const std::string&) { o.halt = HaltPolicy::parse(v); }));
  options.push_back(valued({"broker"}, "", [](RunOptions& o, const std::string& v, const std::string& s) {
    if (v.empty()) throw UsageError(s + ": expected a broker address, such as tcp://10.0.0.5:5555");
    o.broker = v;
  }));
  options.push_back(valued({"key"}, "", [](RunOptions& o, const std::string& v, const std::string& s) {
    if (v.empty()) throw UsageError(s + ": expected a secret key file (fanout keygen NAME makes NAME.key)");
    o.key = v;
  }));
  options.push_back(valued({"broker-key"}, "", [](RunOptions& o, const std::string& v, const std::string& s) {
    if (v.empty()) throw UsageError(s + ": expected the broker's public key file (its .pub)");
    o.broker_key = v;
  }));
  options.push_back(valued({"env"}, "", [](RunOptions& o, const std::string& v, const std::string& s) {
    if (v == "_") throw UsageError(s + " _ (every variable, as env_parallel sets up) is not supported; name each variable");
    if (!is_environment_name(v)) throw UsageError(s + " " + v + ": expected the name of an environment variable");
    o.env.push_back(v);
  }));

  // ---- output
  options.push_back(flag({"keep-order", "keeporder"}, "k", [](RunOptions& o) { o.keep_order = true; }));
  options.push_back(flag({"no-keep-order", "nokeeporder", "nok", "no-k"}, "", [](RunOptions& o) { o.keep_order = false; }));
  options.push_back(flag({"group"}, "g", [](RunOptions& o) { o.output = OutputMode::group; }));
  options.push_back(flag({"ungroup"}, "u", [](RunOptions& o) { o.output = OutputMode::ungroup; }));
  options.push_back(flag({"line-buffer", "line-buffered", "linebuffer", "linebuffered", "lb"}, "",
                         [](RunOptions& o) { o.output = OutputMode::line_buffer; }));
  options.push_back(flag({"tag"}, "", [](RunOptions& o) { o.tag = true; }));
  options.push_back(valued({"tagstring", "tag-string"}, "", [](RunOptions& o, const std::string& v, const std::string&) {
    o.tagstring = v;
    o.tag = true;
  }));
  options.push_back(flag({"dry-run", "dryrun", "dr"}, "", [](RunOptions& o) { o.dry_run = true; }));
  options.push_back(flag({}, "v", [](RunOptions& o) { o.print_command = true; }));
  options.push_back(flag({"verbose"}, "t", [](RunOptions& o) { o.trace_command = true; }));
  options.push_back(flag({"silent"}, "", [](RunOptions& o) { o.print_command = o.trace_command = false; }));

  // ---- keeping track
  options.push_back(valued({"joblog", "jl"}, "", [](RunOptions& o, const std::string& v, const std::string& s) {
    o.joblog_append = !v.empty() && v[0] == '+';
    o.joblog = o.joblog_append ? v.substr(1) : v;
    if (o.joblog.empty()) throw UsageError(s + ": expected a file name");
  }));
  options.push_back(flag({"resume"}, "", [](RunOptions& o) { o.resume = true; }));
  options.push_back(flag({"resume-failed", "resumefailed"}, "", [](RunOptions& o) { o.resume_failed = true; }));
  options.push_back(valued({"results", "result", "res"}, "", [](RunOptions& o, const std::string& v, const std::string& s) {
    for (const char* suffix : {".csv", ".tsv", ".json"}) {
      const std::string end(suffix);
      if (v.size() >= end.size() && v.compare(v.size() - end.size(), end.size(), end) == 0) {
        throw UsageError(s + " " + v + ": CSV, TSV and JSON result files are not supported; give a directory");
      }
    }
    if (v.empty()) throw UsageError(s + ": expected a directory");
    o.results = v;
  }));
  options.push_back(flag({"progress"}, "", [](RunOptions& o) { o.progress = true; }));
  options.push_back(flag({"eta"}, "", [](RunOptions& o) { o.eta = true; }));
  options.push_back(flag({"bar"}, "", [](RunOptions& o) { o.bar = true; }));

  // ---- inputs
  options.push_back(valued({"arg-file", "argfile"}, "a", [](RunOptions& o, const std::string& v, const std::string&) {
    InputSource source;
    source.kind = InputSource::Kind::file;
    source.path = v;
    o.sources.push_back(std::move(source));
  }));
  options.push_back(flag({"null"}, "0", [](RunOptions& o) { o.delimiter = std::string(1, '\0'); }));
  options.push_back(valued({"delimiter"}, "d", [](RunOptions& o, const std::string& v, const std::string& s) {
    o.delimiter = unescape_delimiter(v);
    if (o.delimiter.empty()) throw UsageError(s + ": the delimiter may not be empty");
  }));
  options.push_back(valued({"colsep", "col-sep"}, "C", [](RunOptions& o, const std::string& v, const std::string& s) {
    if (v.empty()) throw UsageError(s + ": the column separator may not be empty");
    try {
      std::regex check(v, std::regex::ECMAScript);
    } catch (const std::regex_error& error) {
      throw UsageError(s + " '" + v + "': not a regular expression (" + error.what() + ")");
    }
    o.colsep = v;
  }));
  options.push_back(valued({"header"}, "", [](RunOptions& o, const std::string& v, const std::string& s) {
    if (v != ":") {
      throw UsageError(s + " " + v + ": only --header : (the first record names the columns) is supported");
    }
    o.header = true;
  }));
  options.push_back(flag({"shuf"}, "", [](RunOptions& o) { o.shuffle = true; }));
  options.push_back(flag({"link", "xapply"}, "", [](RunOptions& o) { o.link_all = true; }));
  options.push_back(valued({"max-args", "maxargs"}, "n", [](RunOptions& o, const std::string& v, const std::string& s) {
    o.arguments_per_job = parse_count(v, s);
    o.packing = ArgumentPacking::fixed;
  }));
  options.push_back(valued({"max-replace-args", "maxreplaceargs"}, "N",
                           [](RunOptions& o, const std::string& v, const std::string& s) {
                             o.arguments_per_job = parse_count(v, s);
                             o.packing = ArgumentPacking::fixed;
                           }));
  options.push_back(flag({}, "m", [](RunOptions& o) { o.packing = ArgumentPacking::xargs; }));
  options.push_back(flag({}, "X", [](RunOptions& o) { o.packing = ArgumentPacking::context; }));

  // ---- --pipe
  options.push_back(flag({"pipe", "spreadstdin"}, "", [](RunOptions& o) { o.pipe = true; }));
  options.push_back(valued({"block", "block-size", "blocksize"}, "", [](RunOptions& o, const std::string& v, const std::string& s) {
    o.block_size = parse_size(v, s);
    if (o.block_size == 0) throw UsageError(s + " " + v + ": the block size must be at least 1 byte");
  }));
  options.push_back(valued({"recstart"}, "", [](RunOptions& o, const std::string& v, const std::string&) {
    o.recstart = unescape_delimiter(v);
    if (!o.recend_given) o.recend.clear();
  }));
  options.push_back(valued({"recend"}, "", [](RunOptions& o, const std::string& v, const std::string&) {
    o.recend = unescape_delimiter(v);
    o.recend_given = true;
  }));

  // ---- replacement strings
  const auto rename = [](std::string ReplacementNames::*name) {
    return [name](RunOptions& o, const std::string& v, const std::string& s) {
      if (v.empty()) throw UsageError(s + ": the replacement string may not be empty");
      o.names.*name = v;
    };
  };
  options.push_back(valued({}, "I", rename(&ReplacementNames::argument)));
  options.push_back(Option{{"replace"}, "i", Value::attached_optional,
                           [](RunOptions& o, const std::string& v, const std::string&) {
                             o.names.argument = v.empty() ? "{}" : v;
                           },
                           {}});
  options.push_back(valued({"extensionreplace", "er"}, "", rename(&ReplacementNames::no_extension)));
  options.push_back(valued({"basenamereplace", "bnr"}, "", rename(&ReplacementNames::basename)));
  options.push_back(valued({"dirnamereplace", "dnr"}, "", rename(&ReplacementNames::dirname)));
  options.push_back(valued({"basenameextensionreplace", "bner"}, "", rename(&ReplacementNames::basename_no_extension)));
  options.push_back(valued({"seqreplace"}, "", rename(&ReplacementNames::seq)));
  options.push_back(valued({"slotreplace"}, "", rename(&ReplacementNames::slot)));
  options.push_back(flag({"quote"}, "q", [](RunOptions& o) { o.quote_command = true; }));

  // ---- accepted for compatibility, no effect
  options.push_back(flag({"will-cite", "willcite", "nn", "nonotice", "no-notice", "gnu"}, "", [](RunOptions&) {}));

  // ---- GNU parallel's options that fanout refuses, and why
  options.push_back(refused({"sshlogin", "slf", "sshloginfile", "transferfile", "transfer-file", "transferfiles",
                             "transfer-files", "tf", "transfer", "return", "cleanup", "trc", "basefile", "bf",
                             "workdir", "work-dir", "wd", "onall", "nonall", "controlmaster", "ssh", "sshdelay",
                             "ssh-delay", "filter-hosts", "filterhosts", "hostgroups", "hgrp", "hostgroup",
                             "plain"},
                            "SMW", kNoSsh));
  options.push_back(refused({"semaphore", "fg", "bg", "wait", "semaphore-timeout", "semaphoretimeout", "st",
                             "semaphore-name", "semaphorename", "id"},
                            "", "fanout has no semaphore mode (sem)"));
  options.push_back(refused({"pipe-part", "pipepart", "round-robin", "roundrobin", "round", "cat", "fifo", "tee",
                             "shard", "bin", "group-by", "groupby", "regexp", "regex", "remove-rec-sep",
                             "removerecsep", "rrs", "block-timeout", "blocktimeout", "bt", "max-lines", "csv"},
                            "L", kNoPipeVariant));
  options.push_back(refused({"plus", "rpl", "parens"}, "", kNoPerl));
  options.push_back(refused({"tmux", "tmuxpane", "tmux-pane", "latest-line", "latestline", "ll", "ctag", "ctagstring",
                             "ctag-string", "color", "colour", "color-failed", "colour-failed", "colorfailed",
                             "colourfailed", "cf", "interactive", "open-tty", "tty"},
                            "poT", "fanout has no such terminal display (--progress, --eta and --bar are supported)"));
  options.push_back(refused({"files", "output-as-files", "outputasfiles", "compress", "compress-program",
                             "compressprogram", "use-compress-program", "decompress-program", "decompressprogram",
                             "use-decompress-program", "tmpdir", "tempdir", "sql", "sqlmaster", "sql-master",
                             "sqlworker", "sql-worker", "sqlandworker", "sql-and-worker"},
                            "", "fanout keeps output only in --results DIR and --joblog FILE"));
  options.push_back(refused({"nice", "load", "noswap", "memfree", "memsuspend", "limit", "termseq", "term-seq",
                             "ctrl-c", "ctrlc", "no-ctrl-c", "noctrlc"},
                            "", "fanout paces jobs only with -j, --delay and --timeout"));
  options.push_back(refused({"eof", "trim", "skip-first-line", "skipfirstline", "arg-sep", "argsep", "arg-file-sep",
                             "argfilesep", "max-chars", "maxchars", "no-run-if-empty", "norunifempty",
                             "linkinputsource", "xapplyinputsource", "total-jobs", "totaljobs", "total", "xargs",
                             "process-slot-var", "processslotvar", "retry-failed", "retryfailed"},
                            "Eesrx",
                            "see docs/run.md for the input options fanout run has"));
  options.push_back(refused({"exit", "show-limits", "showlimits", "number-of-cpus", "numberofcpus", "number-of-cores",
                             "numberofcores", "number-of-threads", "numberofthreads", "number-of-sockets",
                             "numberofsockets", "max-line-length-allowed", "maxlinelengthallowed",
                             "use-cpus-instead-of-cores", "usecpusinsteadofcores", "use-cores-instead-of-threads",
                             "usecoresinsteadofthreads", "use-sockets-instead-of-threads",
                             "usesocketsinsteadofthreads", "shellquote", "shell-quote", "shell_quote", "embed",
                             "shebang", "hashbang", "filter", "profile", "record-env", "recordenv", "session",
                             "citation", "bibtex", "template", "tmpl", "shellcompletion", "shell-completion",
                             "debug", "tollef", "bug"},
                            "JDYH", "see docs/run.md for the options fanout run has"));
  return options;
}

const std::vector<Option>& option_table() {
  static const std::vector<Option> table = make_options();
  return table;
}

const Option* find_letter(char letter) {
  for (const Option& option : option_table()) {
    if (option.letters.find(letter) != std::string::npos) return &option;
  }
  return nullptr;
}

// An exact long name, else the one option that has a name starting with `name` (Getopt::Long's
// abbreviations). Throws UsageError for an ambiguous abbreviation or an unknown name.
const Option& find_long(const std::string& name) {
  if (name.empty()) throw UsageError("unknown option --");
  for (const Option& option : option_table()) {
    if (std::find(option.long_names.begin(), option.long_names.end(), name) != option.long_names.end()) return option;
  }
  std::vector<const Option*> matches;
  std::string list;
  for (const Option& option : option_table()) {
    const auto named = std::find_if(option.long_names.begin(), option.long_names.end(),
                                    [&](const std::string& long_name) { return long_name.rfind(name, 0) == 0; });
    if (named == option.long_names.end()) continue;
    matches.push_back(&option);
    list += (list.empty() ? "--" : ", --") + *named;
  }
  if (matches.size() == 1) return *matches.front();
  if (matches.size() > 1) throw UsageError("option --" + name + " is ambiguous (" + list + ")");
  throw UsageError("unknown option --" + name);
}

bool is_source_marker(const std::string& word) {
  return word == ":::" || word == "::::" || word == ":::+" || word == "::::+";
}

void apply(const Option& option, RunOptions& options, const std::string& value, const std::string& spelled) {
  if (!option.refused.empty()) throw UsageError(spelled + " is not supported: " + option.refused);
  option.apply(options, value, spelled);
}

// The words from `i` on: the command up to the first source marker, then the sources.
void read_command_and_sources(const std::vector<std::string>& words, std::size_t i, RunOptions& options) {
  for (; i < words.size() && !is_source_marker(words[i]); ++i) options.command.push_back(words[i]);
  for (; i < words.size(); ++i) {
    const std::string& marker = words[i];
    const bool linked = marker.back() == '+';
    if (marker == ":::" || marker == ":::+") {
      InputSource source;
      source.linked = linked;
      for (; i + 1 < words.size() && !is_source_marker(words[i + 1]); ++i) source.words.push_back(words[i + 1]);
      options.sources.push_back(std::move(source));
      continue;
    }
    bool first = true;  // ::::+ links only its first file to what came before
    for (; i + 1 < words.size() && !is_source_marker(words[i + 1]); ++i) {
      InputSource source;
      source.kind = InputSource::Kind::file;
      source.path = words[i + 1];
      source.linked = linked && first;
      first = false;
      options.sources.push_back(std::move(source));
    }
    if (first) throw UsageError(marker + " must be followed by at least one file name");
  }
}

void check_combinations(const RunOptions& options) {
  if ((options.resume || options.resume_failed) && options.joblog.empty() && options.results.empty()) {
    throw UsageError("--resume and --resume-failed need --joblog FILE (or --results DIR) to know what has run");
  }
  if (options.joblog == "-" && (options.resume || options.resume_failed)) {
    throw UsageError("--resume needs a joblog file, not -");
  }
  if (!options.sources.empty() && options.sources.front().linked) {
    throw UsageError("the first input source cannot be linked (:::+ and ::::+ pair a source with the one before it)");
  }
  if (options.pipe) {
    if (!options.sources.empty()) {
      throw UsageError("--pipe cuts stdin into blocks; input sources (:::, ::::, -a) do not go with it "
                       "(give a file as stdin: < FILE)");
    }
    if (options.packing != ArgumentPacking::fixed) throw UsageError("-m and -X do not go with --pipe");
    if (options.shuffle) throw UsageError("--shuf does not go with --pipe");
    if (options.colsep) throw UsageError("--colsep does not go with --pipe");
  }
  if (options.packing != ArgumentPacking::fixed && options.arguments_per_job != 1) {
    throw UsageError(std::string(options.packing == ArgumentPacking::xargs ? "-m" : "-X") + " does not go with -N or -n");
  }
}

}  // namespace

ParsedRun parse_run_command_line(const std::vector<std::string>& words, const std::string& environment_jobs,
                                 const std::string& environment_broker) {
  ParsedRun parsed;
  RunOptions& options = parsed.options;
  options.broker = environment_broker;
  bool jobs_given = false;
  std::size_t i = 0;
  const auto next_value = [&](const std::string& spelled) -> std::string {
    if (i + 1 >= words.size()) throw UsageError("option " + spelled + " needs a value");
    return words[++i];
  };
  for (; i < words.size(); ++i) {
    const std::string& word = words[i];
    if (word == "--") {
      ++i;
      break;
    }
    if (is_source_marker(word) || word.size() < 2 || word[0] != '-') break;
    if (word[1] == '-') {
      const auto equals = word.find('=');
      const std::string name = word.substr(2, equals == std::string::npos ? std::string::npos : equals - 2);
      if (name == "help") {
        parsed.action = ParsedRun::Action::help;
        return parsed;
      }
      if (name == "version") {
        parsed.action = ParsedRun::Action::version;
        return parsed;
      }
      const Option& option = find_long(name);
      const std::string spelled = "--" + name;
      std::string value;
      if (option.value == Value::required) {
        value = equals != std::string::npos ? word.substr(equals + 1) : next_value(spelled);
      } else if (equals != std::string::npos && option.value == Value::none && option.refused.empty()) {
        throw UsageError("option " + spelled + " takes no value");
      } else if (equals != std::string::npos) {
        value = word.substr(equals + 1);
      }
      jobs_given = jobs_given || (option.letters.find('j') != std::string::npos);
      apply(option, options, value, spelled);
      continue;
    }
    // A bundle of one-letter options: "-kj2" is -k -j 2; a letter that takes a value takes the
    // rest of the word, or the next word.
    for (std::size_t k = 1; k < word.size(); ++k) {
      const char letter = word[k];
      const std::string spelled = std::string("-") + letter;
      if (letter == 'h') {
        parsed.action = ParsedRun::Action::help;
        return parsed;
      }
      if (letter == 'V') {
        parsed.action = ParsedRun::Action::version;
        return parsed;
      }
      const Option* option = find_letter(letter);
      if (option == nullptr) throw UsageError("unknown option " + spelled);
      jobs_given = jobs_given || letter == 'j' || letter == 'P';
      if (option->value == Value::none) {
        apply(*option, options, {}, spelled);
        continue;
      }
      std::string value = word.substr(k + 1);
      if (value.empty() && option->value == Value::required) value = next_value(spelled);
      apply(*option, options, value, spelled);
      break;
    }
  }
  read_command_and_sources(words, i, options);
  if (!jobs_given && !environment_jobs.empty()) {
    try {
      options.jobs = parse_jobs(environment_jobs, std::max(1U, std::thread::hardware_concurrency()));
    } catch (const UsageError& error) {
      throw UsageError(std::string("FANOUT_JOBS: ") + error.what());
    }
  }
  check_combinations(options);
  return parsed;
}

// ---- values -----------------------------------------------------------------------------------

std::chrono::milliseconds parse_duration(const std::string& text, const std::string& option) {
  const auto bad = [&] {
    return UsageError(option + " " + text + ": expected seconds, optionally with a unit (s, m, h, d), such as 30, 2.5 or 1m30s");
  };
  if (text.empty()) throw bad();
  double total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const char* start = text.c_str() + i;
    char* end = nullptr;
    const double number = std::strtod(start, &end);
    if (end == start || !std::isfinite(number) || number < 0 || *start == '+' || *start == '-') throw bad();
    i = static_cast<std::size_t>(end - text.c_str());
    double unit = 1;
    if (i < text.size()) {
      switch (std::tolower(static_cast<unsigned char>(text[i]))) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: throw bad();
      }
      ++i;
    } else if (total > 0) {
      throw bad();  // "1m30" is ambiguous: GNU parallel wants a unit after every number
    }
    total += number * unit;
  }
  if (total > 1e9) throw bad();
  return std::chrono::milliseconds(static_cast<long long>(std::ceil(total * 1000)));
}

std::size_t parse_jobs(const std::string& text, std::size_t cores) {
  const auto bad = [&] {
    return UsageError("-j " + text + ": expected N, N% of the cores, +N or -N cores, or 0 (as many as possible)");
  };
  if (text.empty()) throw bad();
  if (text.back() == '%') {
    const std::string number = text.substr(0, text.size() - 1);
    char* end = nullptr;
    const double percent = std::strtod(number.c_str(), &end);
    if (number.empty() || *end != '\0' || !std::isfinite(percent) || percent < 0 || number[0] == '-' || number[0] == '+') {
      throw bad();
    }
    const double jobs = std::ceil(static_cast<double>(cores) * percent / 100);
    if (jobs > 1e6) throw bad();
    return std::max<std::size_t>(1, static_cast<std::size_t>(jobs));
  }
  if (text[0] == '+' || text[0] == '-') {
    const std::string number = text.substr(1);
    if (!all_digits(number) || number.size() > 6) throw bad();
    const std::size_t n = std::stoul(number);
    if (text[0] == '+') return cores + n;
    return n >= cores ? 1 : cores - n;  // at least 1, as GNU parallel documents
  }
  if (!all_digits(text) || text.size() > 7) throw bad();
  const std::size_t n = std::stoul(text);
  return n == 0 ? kAsManyAsPossible : n;
}

std::size_t parse_size(const std::string& text, const std::string& option) {
  const auto bad = [&] {
    return UsageError(option + " " + text + ": expected a size in bytes, optionally with a unit (k, K, m, M, g, G, t, T)");
  };
  char* end = nullptr;
  const double number = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || !std::isfinite(number) || number < 0 || text[0] == '-' || text[0] == '+') throw bad();
  std::string unit(end);
  double factor = 1;
  if (!unit.empty()) {
    const bool binary = std::isupper(static_cast<unsigned char>(unit[0])) != 0 || (unit.size() == 2 && unit[1] == 'i');
    if (unit.size() > 2 || (unit.size() == 2 && unit[1] != 'i')) throw bad();
    const std::string powers = "kmgt";
    const auto power = powers.find(static_cast<char>(std::tolower(static_cast<unsigned char>(unit[0]))));
    if (power == std::string::npos) throw bad();
    factor = std::pow(binary ? 1024.0 : 1000.0, static_cast<double>(power + 1));
  }
  const double bytes = number * factor;
  if (bytes > 64.0 * 1024 * 1024 * 1024) throw UsageError(option + " " + text + ": at most 64G");
  return static_cast<std::size_t>(bytes);
}

std::string unescape_delimiter(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    const char next = text[i + 1];
    if (next >= '0' && next <= '7') {
      // Octal: \0, or three digits such as \012.
      const auto octal = [&](std::size_t at) { return at < text.size() && text[at] >= '0' && text[at] <= '7'; };
      const std::size_t digits = octal(i + 2) && octal(i + 3) ? 3 : 1;
      out += static_cast<char>(std::stoi(text.substr(i + 1, digits), nullptr, 8));
      i += digits;
      continue;
    }
    switch (next) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      default: out += '\\'; out += next; break;
    }
    ++i;
  }
  return out;
}

}  // namespace fanout::tool
