// compat_test.cpp: `fanout run` against GNU parallel. Every invocation below runs under GNU parallel
// (Debian's `parallel`, with --will-cite) and under `fanout run`, locally and (most of them) with
// --broker on a real fanout-broker and fanout-worker; the exit status, stdout (in order, or as a
// set of lines where GNU parallel's order is not defined) and the files the run leaves (joblogs
// without their timing columns, --results trees, files the jobs write) must be the same.
//
// Each run starts in a fresh directory holding the same input files. Jobs that write files name
// them under @DIR@, which becomes that directory, so that remote jobs (which run in the worker's
// directory) write where a local run would.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "child.hpp"
#include "cluster.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using fanout_test::read_file;
using fanout_test::TempDir;

namespace {

enum class Order {
  same,      // stdout byte for byte
  any,       // the same lines, in any order (GNU parallel's order is not defined)
  distinct,  // the same set of distinct lines ({%} values: which slot ran which job may vary)
};

struct Case {
  std::string what;                    // the behaviour, as a sentence
  std::vector<std::string> arguments;  // after `parallel` / `fanout run`; @DIR@ is the run's directory
  std::string input = {};              // stdin
  Order order = Order::same;
  bool remote = true;                  // also with --broker
  bool compare_stderr = false;
  // An error case: the exit statuses must be the same, and fanout must say this on stderr and
  // nothing on stdout (GNU parallel prints its usage there).
  std::string error = {};
};

std::string seq_lines(int from, int to) {
  std::string text;
  for (int i = from; i <= to; ++i) text += std::to_string(i) + "\n";
  return text;
}

std::vector<std::string> numbers(int from, int to) {
  std::vector<std::string> words;
  for (int i = from; i <= to; ++i) words.push_back(std::to_string(i));
  return words;
}

std::vector<std::string> operator+(std::vector<std::string> left, const std::vector<std::string>& right) {
  left.insert(left.end(), right.begin(), right.end());
  return left;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      // ---- the command line
      {"the command starts at the first word that is not an option", {"-k", "echo", "pre", ":::", "a", "b"}},
      {"-- ends the options", {"-k", "--", "echo", "-n", "{}", ":::", "a"}},
      {"a -- after the command's first word belongs to the command", {"-k", "echo", "--", "x", ":::", "a"}},
      {"one-letter options bundle", {"-kj2", "echo", ":::", "a", "b", "c"}},
      {"a long option may be shortened while it is unambiguous", {"--keep", "-j2", "echo", ":::", "a", "b"}},
      {"an unknown option is an error (exit 255), never the command", {"--no-such-option", "echo", ":::", "a"}, {},
       Order::same, false, false, "unknown option --no-such-option"},
      {"without a command, the arguments are the commands", {"-k", ":::", "echo a", "echo b c"}},

      // ---- input sources
      {"::: values make one job each; {#} numbers them", {"-k", "echo {#}:{}", ":::", "a", "b", "c"}},
      {"several ::: sources are crossed, the last one varying fastest", {"-k", "echo", ":::", "a", "b", ":::", "1", "2"}},
      {":::+ pairs a source with the one before it; the shortest decides",
       {"-k", "echo", "{1}{2}", ":::", "a", "b", "c", ":::+", "1", "2"}},
      {":::: reads files, each file a source", {"-k", "echo", "::::", "fa", "fb"}},
      {"::::+ pairs a file with the source before it", {"-k", "echo", "::::", "fa", "::::+", "fb"}},
      {":::: - is stdin", {"-k", "echo", "::::", "-", ":::", "x"}, "s1\ns2\n"},
      {"-a files come first, before the ::: sources", {"-k", "-a", "fa", "-a", "fb", "echo", ":::", "x"}},
      {"--link pairs every source; the shorter ones wrap around",
       {"-k", "--link", "echo", ":::", "a", "b", "c", ":::", "1", "2"}},
      {"without sources, every line of stdin is one argument", {"-k", "echo", "[{}]"}, "x y\n\nz\nlast"},
      {"-0 ends records with NUL", {"-k", "-0", "echo", "[{}]"}, std::string("a\0b c\0", 6)},
      {"-d ends records with a delimiter, escapes understood", {"-k", "-d", "\\t", "echo"}, "a\tb\tc"},
      {"-d keeps a newline that is not the delimiter", {"-k", "-d", ",", "printf '[%s]' {}"}, "a,b,c\n"},
      {"--colsep splits records into columns {1} {2}...", {"-k", "--colsep", "\\t", "echo", "{3}-{1}", "::::", "cols.tsv"}},
      {"--colsep is a regular expression", {"-k", "--colsep", " +", "echo", "{2}"}, "a  b   c\nd e\n"},
      {"--colsep splits ::: values too, and empty fields count",
       {"-k", "--colsep", ",", "printf '<%s>' {}; echo", ":::", "a,b,,", ",x"}},
      {"--header : names the columns after the first line",
       {"-k", "--header", ":", "--colsep", ",", "echo", "{name} is {age}", "::::", "people.csv"}},
      {"--header : without --colsep splits on TAB", {"-k", "--header", ":", "echo", "{age}/{name}/{}", "::::", "people.tsv"}},
      {"--header : names ::: sources by their first value",
       {"-k", "--header", ":", "echo", "{x}-{y}", ":::", "x", "1", "2", ":::", "y", "3"}},
      {"--shuf runs every job once, in some order", {"--shuf", "echo", ":::", "1", "2", "3", "4", ":::", "a", "b"}, {},
       Order::any},
      {"-N groups arguments; a missing position is empty",
       std::vector<std::string>{"-k", "-N2", "echo", "{1}-{2}", ":::"} + numbers(1, 5)},
      {"-N with {} gives all of a job's arguments",
       {"-k", "-N3", "echo", "{#}:", "{}", ":::", "a", "b", "c", "d", "e", "f", "g"}},
      {"-n packs arguments like -N", std::vector<std::string>{"-k", "-n2", "echo", ":::"} + numbers(1, 5)},
      {"-N0 runs a job per argument, with none of it", {"-k", "-N0", "echo", "x", ":::", "1", "2", "3"}},
      {"-m spreads the arguments evenly over the job slots", std::vector<std::string>{"-k", "-j3", "-m", "echo", ":::"} + numbers(1, 7)},
      {"-m reads stdin to the end before spreading", {"-k", "-j2", "-m", "echo"}, seq_lines(1, 7)},
      {"-X repeats the word around {} for every argument",
       std::vector<std::string>{"-k", "-j2", "-X", "echo", "pic{}.jpg", ":::"} + numbers(1, 5)},
      {"-m puts every argument into {}", std::vector<std::string>{"-k", "-j1", "-m", "echo", "pic{}.jpg", ":::"} + numbers(1, 5)},
      {"an empty ::: source runs nothing", {"echo", ":::"}},

      // ---- replacement strings
      {"{.} {/} {//} {/.} take paths apart",
       {"-k", "echo", "{.}|{/}|{//}|{/.}", ":::", "/a/b.c/d.e.tar.gz", "rel.txt", "noext", "/root.x", "dir/", ".hidden",
        "a/.b"}},
      {"--dry-run prints the command lines, quoted as GNU parallel quotes them",
       {"-k", "--dry-run", "echo", "{}", "{.}", "{/}", "{//}", "{/.}", ":::", "a b", "it's", "", "x$y", "q\"r", "a*b",
        "~a", "a=b", "a+b-c.d/e_f", "'x", "x'", "dir/x.tar.gz"}},
      {"quoted arguments reach the command as they are",
       {"-k", "printf '[%s]\\n' {}", ":::", "two words", "it's", "say \"hi\"", "$HOME;`id`|*", ""}},
      {"positional forms {2.} {2/} {2//} {2/.} and {-1}", {"-k", "--colsep", ",", "echo", "{2.}", "{2/}", "{2//}", "{2/.}", "{-1}"},
       "x,dir/file.txt\ny,z.q\n"},
      {"a replacement string that starts the command is not quoted", {"-k", "{1}", "{2}", ":::", "echo", ":::", "a  b"}},
      {"{#} is the job's number and {%} its slot", {"-k", "-j1", "echo", "{#}-{%}", ":::", "a", "b", "c"}},
      {"-I renames {} (and only {})", {"-k", "-I", "XX", "echo", "XX", "{}", "{1}", "{.}", ":::", "a.b"}},
      {"--extensionreplace and its friends rename the others",
       {"-k", "-j1", "--er", "EE", "--bnr", "BB", "--dnr", "DD", "--bner", "BE", "--seqreplace", "SS", "--slotreplace",
        "SL", "echo", "EE", "BB", "DD", "BE", "SS", "SL", "{.}", ":::", "/x/a.b"}},
      {"-q quotes every word of the command", {"-k", "-q", "printf", "%s|\\n", ":::", "a b", "it's"}},
      {"-i is -I {}", {"-k", "-i", "echo", "<{}>", ":::", "a"}},

      // ---- running
      {"-j N% of the cores", std::vector<std::string>{"-j", "50%", "sleep 0.5; echo {%}", ":::"} + numbers(1, 4), {},
       Order::distinct},
      {"-j +N: the cores plus N", std::vector<std::string>{"-j", "+1", "sleep 0.5; echo {%}", ":::"} + numbers(1, 6), {},
       Order::distinct},
      {"-j -N: the cores less N, at least 1", std::vector<std::string>{"-j", "-1", "sleep 0.5; echo {%}", ":::"} + numbers(1, 4),
       {}, Order::distinct},
      {"-j 0: every job at once", std::vector<std::string>{"-j", "0", "sleep 1; echo {%}", ":::"} + numbers(1, 8), {},
       Order::distinct},
      {"--delay spaces the starts out (the output is the same)", {"-k", "--delay", "0.1", "echo", ":::", "1", "2", "3"}},
      {"--timeout kills a job that runs too long", {"-k", "--timeout", "1", "sleep {}; echo done {}", ":::", "0.1", "5"}},
      {"--timeout takes units", {"-k", "--timeout", "1s", "sleep {}; echo done {}", ":::", "5", "0.1"}},
      {"--timeout N% is relative to the median run time",
       {"-j1", "-k", "--timeout", "300%", "sleep {}; echo done {}", ":::", "0.2", "0.2", "0.2", "5", "0.2"}},
      {"--timeout N% stops a job that started before the median was known",
       {"-j2", "-k", "--timeout", "500%", "sleep {}; echo {}", ":::", "30", "0.1", "0.1", "0.1"}, {}, Order::same,
       false},  // remote jobs get the limit known when they are handed over
      {"--retries runs a failed job again; only the last attempt is printed",
       {"--retries", "3", "echo x >> @DIR@/count; n=$(wc -l < @DIR@/count); echo attempt $n {}; [ $n -ge 2 ]", ":::",
        "a"}},
      {"--retries gives up after N attempts in all",
       {"--joblog", "jobs.joblog", "--retries", "3", "echo x >> @DIR@/count; echo try {} >&2; exit 3", ":::", "a"}, {},
       Order::same, true, true},
      {"--halt now,fail=1 kills the running jobs and exits with the failed job's status",
       {"-k", "-j3", "--halt", "now,fail=1", "sleep {}; echo {}; exit 2", ":::", "0.1", "5", "5"}},
      {"--halt soon,fail=2 starts no job after the second failure",
       {"-k", "-j1", "--halt", "soon,fail=2", "echo {}; exit {}", ":::", "0", "1", "0", "2", "0", "3"}},
      {"--halt now,success=1 stops at the first success",
       {"-k", "-j1", "--halt", "now,success=1", "echo {}; exit {}", ":::", "1", "0", "1"}},
      {"-u passes output through as it comes", {"-u", "echo {}", ":::", "1", "2", "3"}, {}, Order::any},
      {"--line-buffer with -k prints whole lines in input order",
       {"-k", "--line-buffer", "echo a{}; sleep 0.1; echo b{}", ":::", "1", "2", "3"}},
      {"--tag puts the arguments before each line", {"-k", "--tag", "echo x", ":::", "a", "b", ":::", "c d"}},
      {"--tag tags stderr too", {"-k", "--tag", "echo out; echo err >&2", ":::", "a"}, {}, Order::same, true, true},
      {"--tagstring tags with replacement strings", {"-k", "--tagstring", "<{1}|{#}|{.}>", "echo x", ":::", "a.t", "b c"}},
      {"--dry-run with --tag", {"-k", "--dry-run", "--tag", "echo", ":::", "a", "b"}},
      {"--dry-run runs nothing", {"--dry-run", "touch @DIR@/made-{}", ":::", "a"}},
      {"-v prints each command before its output", {"-k", "-v", "echo", ":::", "a", "b"}},
      {"--env sends a variable along (here it is inherited)", {"--env", "COMPAT_VAR", "echo $COMPAT_VAR {}", ":::", "a"}},

      // ---- --pipe
      {"--pipe cuts stdin into blocks at line ends", {"-k", "--pipe", "--block", "1k", "wc", "-l"}, seq_lines(1, 1000)},
      {"--pipe -N gives each job N records", {"-k", "--pipe", "-N7", "wc -l"}, seq_lines(1, 30)},
      {"--pipe splits between --recend and --recstart",
       {"-k", "--pipe", "--recstart", "a", "--recend", "b", "--block", "2", "cat; echo"}, "a1b2a3b4"},
      {"--pipe with --recstart alone", {"-k", "--pipe", "--recstart", "1", "--block", "5", "tr '\\n' ,; echo"},
       seq_lines(1, 15)},
      {"--pipe --header : puts the header before every block", {"-k", "--pipe", "--header", ":", "-N2", "cat"},
       "h\n1\n2\n3\n4\n5\n"},
      {"--pipe grows the block for a record longer than it", {"-k", "--pipe", "--block", "3", "wc", "-c"},
       "1\n22\n333333333\n4\n"},
      {"--pipe numbers the blocks with {#}", {"-k", "--pipe", "--block", "4", "echo {#}: $(wc -l)"}, seq_lines(1, 9)},

      // ---- keeping track
      {"--joblog has a line per job", {"--joblog", "jobs.joblog", "exit {}", ":::", "0", "1", "2"}},
      {"--joblog +FILE appends, without a header", {"-k", "--joblog", "+jobs.joblog", "echo", ":::", "a", "b"}},
      {"--joblog counts output bytes and --pipe input", {"-k", "--joblog", "jobs.joblog", "--pipe", "-N2", "cat"},
       "ab\ncd\nef\n"},
      {"--resume skips the jobs in the joblog and appends the others",
       {"-k", "--joblog", "done.joblog", "--resume", "echo", ":::", "a", "b", "c", "d", "e"}},
      {"--resume-failed runs the failed ones again",
       {"-k", "--joblog", "done.joblog", "--resume-failed", "echo", ":::", "a", "b", "c", "d", "e"}},
      {"--results DIR keeps stdout, stderr and seq per argument, not on stdout",
       {"--results", "out", "echo {}; echo e{} >&2", ":::", "a b", "c/d", "e\\f"}},
      {"--results names directories by --header", {"--header", ":", "--results", "out", "echo", ":::", "x", "1", "2", ":::", "y", "3"}},
      {"--results with a replacement string names files", {"--results", "out/{}-x", "echo", ":::", "a", "b"}},
      {"--resume with --results skips jobs whose output is there",
       {"--results", "prev", "--resume", "echo", "{}", ":::", "a", "b"}},
      {"--eta, --bar and --progress leave stdout alone",
       {"-k", "--eta", "--bar", "--progress", "echo", ":::", "1", "2"}},

      // ---- errors and exit statuses
      {"the exit status is the number of failed jobs", {"exit {}", ":::", "0", "1", "2", "3"}},
      {"more than 100 failed jobs exit with 101", {"-j2", "false"}, seq_lines(1, 105), Order::same},
      {"a missing :::: file is an error (exit 255)", {"echo", "::::", "missing-file"}, {}, Order::same, false, false,
       "cannot open input file missing-file"},
      {"a bad -j is an error", {"-j", "many", "echo", ":::", "a"}, {}, Order::same, false, false, "-j many"},
      {"a bad --timeout is an error", {"--timeout", "soon", "echo", ":::", "a"}, {}, Order::same, false, false,
       "--timeout soon"},
      {"a bad --halt is an error", {"--halt", "later", "echo", ":::", "a"}, {}, Order::same, false, false, "--halt later"},
  };
  return all;
}

// ---- running one case ---------------------------------------------------------------------------

void write(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// The same input files in every run's directory.
void lay_out_inputs(const std::filesystem::path& dir) {
  write(dir / "fa", "f1\nf2\n");
  write(dir / "fb", "g1\ng2\ng3\n");
  write(dir / "people.csv", "name,age\nann,3\nbob,4\n");
  write(dir / "people.tsv", "name\tage\nann\t3\nbob\t4\n");
  write(dir / "cols.tsv", "a\tb\tc\nd\te\tf\n");
  write(dir / "done.joblog",
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"
        "1\t:\t1700000000.000\t     0.001\t0\t2\t0\t0\techo a\n"
        "2\t:\t1700000000.000\t     0.001\t0\t2\t1\t0\techo b\n"
        "4\t:\t1700000000.000\t     0.001\t0\t0\t0\t9\techo d\n");
  write(dir / "prev/1/a/stdout", "old a\n");
  write(dir / "prev/1/a/stderr", "");
  write(dir / "prev/1/a/seq", "1");
}

// A joblog without the columns that differ from run to run (Host, Starttime, JobRuntime), its
// lines after the header sorted (jobs end in any order).
std::string comparable_joblog(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> fields;
    std::size_t start = 0;
    for (int f = 0; f < 8; ++f) {
      const auto tab = line.find('\t', start);
      if (tab == std::string::npos) break;
      fields.push_back(line.substr(start, tab - start));
      start = tab + 1;
    }
    fields.push_back(line.substr(std::min(start, line.size())));
    if (fields.size() == 9) fields.erase(fields.begin() + 1, fields.begin() + 4);
    std::string kept;
    for (const auto& field : fields) kept += field + "|";
    lines.push_back(kept);
  }
  const bool header = !lines.empty() && lines.front().rfind("Seq|", 0) == 0;
  std::sort(lines.begin() + (header ? 1 : 0), lines.end());
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

// Every file in `dir` (joblogs made comparable).
std::map<std::string, std::string> files_in(const std::filesystem::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = std::filesystem::relative(entry.path(), dir).string();
    const std::string text = read_file(entry.path());
    files[name] = name.size() > 7 && name.compare(name.size() - 7, 7, ".joblog") == 0 ? comparable_joblog(text) : text;
  }
  return files;
}

std::string in_order(const std::string& text, Order order) {
  if (order == Order::same) return text;
  std::istringstream in(text);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  if (order == Order::distinct) lines.erase(std::unique(lines.begin(), lines.end()), lines.end());
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

struct Outcome {
  int status = -1;
  std::string out;
  std::string err;
  std::map<std::string, std::string> files;
};

std::string gnu_parallel_program() {
  const char* path = std::getenv("PATH");
  std::istringstream directories(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string directory; std::getline(directories, directory, ':');) {
    const auto candidate = std::filesystem::path(directory) / "parallel";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

// Runs `program_and_options` plus the case's arguments in a fresh directory under `root`.
Outcome run_case(const std::filesystem::path& root, std::vector<std::string> program_and_options, const Case& test) {
  const auto dir = root / "run";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  lay_out_inputs(dir);
  const auto inputs = files_in(dir);
  for (std::string argument : test.arguments) {
    for (auto at = argument.find("@DIR@"); at != std::string::npos; at = argument.find("@DIR@")) {
      argument.replace(at, 5, dir.string());
    }
    program_and_options.push_back(std::move(argument));
  }
  // Started in the directory: `sh -c 'cd "$1" && shift && exec "$@"' sh DIR program...`.
  std::vector<std::string> command{"/bin/sh", "-c", "cd \"$1\" && shift && exec \"$@\"", "sh", dir.string()};
  command.insert(command.end(), program_and_options.begin(), program_and_options.end());
  fanout_test::Child child(command, {.env = {"PARALLEL_SHELL=/bin/sh", "SHELL=/bin/sh", "LC_ALL=C", "COMPAT_VAR=hello",
                                             "PARALLEL_HOME=" + (root / "parallel-home").string()},
                                     .drop_env = {"FANOUT_"},
                                     .input = test.input});
  Outcome outcome;
  outcome.status = child.finish(60s);
  outcome.out = in_order(child.out(), test.order);
  outcome.err = child.err();
  for (auto& [name, text] : files_in(dir)) {
    const auto input = inputs.find(name);
    if (input == inputs.end() || input->second != text) outcome.files[name] = text;
  }
  return outcome;
}

std::string show(const std::map<std::string, std::string>& files) {
  std::string text;
  for (const auto& [name, content] : files) text += "  " + name + ": [" + content + "]\n";
  return text;
}

std::string show(const std::vector<std::string>& words) {
  std::string text;
  for (const auto& word : words) text += "'" + word + "' ";
  return text;
}

// Where every run happens (one directory, emptied before each run): commands and outputs that
// name it are then the same for every run.
const TempDir& runs_root() {
  static const TempDir root;
  return root;
}

// GNU parallel's outcome of each case, computed once for the local and the remote test.
const Outcome& gnu_outcome(std::size_t index) {
  static std::map<std::size_t, Outcome> outcomes;
  const auto found = outcomes.find(index);
  if (found != outcomes.end()) return found->second;
  static const std::string program = gnu_parallel_program();
  REQUIRE_MESSAGE(!program.empty(), "GNU parallel is not installed (scripts/install-deps.sh installs it)");
  return outcomes[index] = run_case(runs_root().path(), {program, "--will-cite"}, cases()[index]);
}

void check_same(const Case& test, const Outcome& gnu, const Outcome& fanout) {
  INFO("case: " << test.what << "\n  arguments: " << show(test.arguments));
  INFO("GNU parallel: status " << gnu.status << "\n" << gnu.out << "--- stderr\n" << gnu.err << "--- files\n" << show(gnu.files));
  INFO("fanout run: status " << fanout.status << "\n" << fanout.out << "--- stderr\n" << fanout.err << "--- files\n"
                             << show(fanout.files));
  CHECK(fanout.status == gnu.status);
  CHECK(fanout.files == gnu.files);
  if (!test.error.empty()) {
    CHECK(fanout.out.empty());
    CHECK(fanout.err.find(test.error) != std::string::npos);
    return;
  }
  CHECK(fanout.out == gnu.out);
  if (test.compare_stderr) CHECK(fanout.err == gnu.err);
}

}  // namespace

TEST_CASE("fanout run gives GNU parallel's output, exit status and files for everyday invocations") {
  for (std::size_t i = 0; i < cases().size(); ++i) {
    const Outcome& gnu = gnu_outcome(i);
    check_same(cases()[i], gnu, run_case(runs_root().path(), {FANOUT_TOOL_PROGRAM, "run"}, cases()[i]));
  }
  MESSAGE(cases().size() << " invocations compared with GNU parallel, locally");
}

TEST_CASE("fanout run --broker gives GNU parallel's output, exit status and files on remote workers") {
  fanout_test::Cluster cluster({.workers = {{.processes = 4, .allow_shell = true}}});
  REQUIRE(cluster.wait_for_executors(4));
  std::size_t compared = 0;
  for (std::size_t i = 0; i < cases().size(); ++i) {
    if (!cases()[i].remote) continue;
    const Outcome& gnu = gnu_outcome(i);
    INFO(cluster.logs());
    check_same(cases()[i], gnu,
               run_case(runs_root().path(), {FANOUT_TOOL_PROGRAM, "run", "--broker", cluster.endpoint()}, cases()[i]));
    ++compared;
  }
  CHECK(cluster.wait_idle());
  MESSAGE(compared << " invocations compared with GNU parallel, on a broker's workers");
}
