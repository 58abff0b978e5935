// `fanout run`, GNU-parallel-like: the real binary as a child process with stdin, stdout and
// stderr of its own; remote runs against a real fanout-broker and fanout-worker. Jobs that must
// happen in a given order wait on marker files; the test waits on the tool's output files with
// deadlines, never on bare sleeps.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "child.hpp"
#include "cluster.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using fanout_test::eventually;
using fanout_test::read_file;
using fanout_test::TempDir;
using fanout_test::touch;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::size_t start = 0;
  for (;;) {
    const auto tab = line.find('\t', start);
    fields.push_back(line.substr(start, tab - start));
    if (tab == std::string::npos) return fields;
    start = tab + 1;
  }
}

// A shell loop that waits (at most 30 s) for `path` to exist.
std::string wait_for_file(const std::filesystem::path& path) {
  return "i=0; while [ ! -e '" + path.string() + "' ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done";
}

// `fanout <arguments>`, as a child process of the test (child.hpp): stdin from `input`, the
// environment of this process minus FANOUT_* plus `extra_environment` (the test says what the
// tool sees).
class Tool : public fanout_test::Child {
 public:
  explicit Tool(std::vector<std::string> arguments, const std::string& input = "",
                const std::vector<std::string>& extra_environment = {})
      : Child(with_program(std::move(arguments)),
              {.env = extra_environment, .drop_env = {"FANOUT_"}, .input = input}) {}

 private:
  static std::vector<std::string> with_program(std::vector<std::string> arguments) {
    arguments.insert(arguments.begin(), FANOUT_TOOL_PROGRAM);
    return arguments;
  }
};

// Runs the tool to its end: (exit status, stdout, stderr).
struct Ran {
  int status;
  std::string out;
  std::string err;
};
Ran run(std::vector<std::string> arguments, const std::string& input = "",
        std::vector<std::string> extra_environment = {}) {
  Tool tool(std::move(arguments), input, extra_environment);
  const int status = tool.finish();
  return Ran{status, tool.out(), tool.err()};
}

// "digits.ddd" with exactly three decimals, after any leading spaces.
bool three_decimals(const std::string& text) {
  const auto first = text.find_first_not_of(' ');
  const auto dot = text.find('.');
  if (first == std::string::npos || dot == std::string::npos || dot == first || text.size() != dot + 4) return false;
  const auto digits = [](std::string_view part) { return part.find_first_not_of("0123456789") == std::string_view::npos; };
  return digits(std::string_view(text).substr(first, dot - first)) && digits(std::string_view(text).substr(dot + 1));
}

bool contiguous_blocks(const std::vector<std::string>& lines, const std::vector<std::string>& jobs, int per_job) {
  // Every job's lines appear as one run of `per_job` consecutive lines.
  for (const auto& job : jobs) {
    std::size_t first = lines.size();
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].rfind(job + ":", 0) == 0) {
        first = i;
        break;
      }
    }
    if (first + static_cast<std::size_t>(per_job) > lines.size()) return false;
    for (int k = 0; k < per_job; ++k) {
      if (lines[first + static_cast<std::size_t>(k)] != job + ":" + std::to_string(k)) return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("::: arguments fill {} and {#}, one job each") {
  const auto ran = run({"run", "-j", "2", "-k", "echo {#}:{}", ":::", "a", "b", "c"});
  CHECK(ran.status == 0);
  CHECK(ran.out == "1:a\n2:b\n3:c\n");
  CHECK(ran.err == "");
}

TEST_CASE("without ::: every line of stdin is one argument") {
  const auto ran = run({"run", "-k", "echo [{}]"}, "x y\n\nz\nlast-without-newline");
  CHECK(ran.status == 0);
  CHECK(ran.out == "[x y]\n[]\n[z]\n[last-without-newline]\n");
}

TEST_CASE("a command of several words is joined; without placeholders the argument is appended") {
  const auto ran = run({"run", "-j2", "-k", "echo", "pre", ":::", "a", "b c"});
  CHECK(ran.status == 0);
  CHECK(ran.out == "pre a\npre b c\n");
  const auto marker = run({"run", "-k", "--", "echo", "-n", "{}", ":::", "a"});
  CHECK(marker.out == "a");
}

TEST_CASE("arguments are shell-quoted: spaces, quotes and metacharacters reach the command as they are") {
  const std::vector<std::string> arguments{"two words", "it's", "say \"hi\"", "$HOME;`id`|*", ""};
  std::vector<std::string> command{"run", "-k", "printf '[%s]\\n' {}", ":::"};
  command.insert(command.end(), arguments.begin(), arguments.end());
  const auto ran = run(command);
  CHECK(ran.status == 0);
  CHECK(ran.out == "[two words]\n[it's]\n[say \"hi\"]\n[$HOME;`id`|*]\n[]\n");
}

TEST_CASE("several ::: groups run every combination, the last group fastest; {N} picks a group") {
  const auto ran = run({"run", "-k", "echo {#} {2}-{1} [{}]", ":::", "a", "b", ":::", "1", "2"});
  CHECK(ran.status == 0);
  CHECK(ran.out == "1 1-a [a 1]\n2 2-a [a 2]\n3 1-b [b 1]\n4 2-b [b 2]\n");
  // As in GNU parallel, a position beyond the job's arguments is empty.
  const auto too_high = run({"run", "echo [{3}]", ":::", "a", ":::", "b"});
  CHECK(too_high.status == 0);
  CHECK(too_high.out == "[]\n");
}

TEST_CASE("output comes in completion order, or in input order with --keep-order") {
  TempDir dir;
  const auto release = dir.path() / "release";
  // Job a runs until the test releases it, which it does once b's output is out.
  const std::string command = "if [ {} = a ]; then " + wait_for_file(release) + "; fi; echo {}";
  {
    Tool tool({"run", "-j2", command, ":::", "a", "b"});
    REQUIRE(eventually([&] { return tool.out() == "b\n"; }, 30s));
    touch(release);
    CHECK(tool.finish() == 0);
    CHECK(tool.out() == "b\na\n");
  }
  std::filesystem::remove(release);
  // With -k, b (ended first: a waits for its marker) is held back until a has been printed.
  const std::string chained = "if [ {} = a ]; then " + wait_for_file(release) + "; fi; echo {}; touch '" +
                              release.string() + "'";
  const auto ordered = run({"run", "-j2", "--keep-order", chained, ":::", "a", "b"});
  CHECK(ordered.status == 0);
  CHECK(ordered.out == "a\nb\n");
}

TEST_CASE("a job's output is printed whole, never interleaved with another job's") {
  const std::string command = "for k in 0 1 2 3 4; do echo {}:$k; echo {}:$k >&2; sleep 0.01; done";
  const std::vector<std::string> jobs{"j1", "j2", "j3", "j4"};
  const auto ran = run({"run", "-j4", command, ":::", "j1", "j2", "j3", "j4"});
  CHECK(ran.status == 0);
  CHECK(lines_of(ran.out).size() == 20);
  CHECK(contiguous_blocks(lines_of(ran.out), jobs, 5));
  CHECK(contiguous_blocks(lines_of(ran.err), jobs, 5));
}

TEST_CASE("--tag prefixes every line with the arguments and a TAB") {
  const auto ran = run({"run", "-k", "--tag", "echo x{}; printf y{}", ":::", "a", "b c"});
  CHECK(ran.status == 0);
  CHECK(ran.out == "a\txa\na\tyab c\txb c\nb c\tyb c");
}

TEST_CASE("--timeout kills a job's whole process group and marks it") {
  TempDir dir;
  const auto pid_file = dir.path() / "pid";
  const auto joblog = dir.path() / "joblog";
  const auto started = std::chrono::steady_clock::now();
  const auto ran = run({"run", "--timeout", "0.3", "--joblog", joblog.string(), "-k",
                        "if [ {} = slow ]; then sleep 30 & echo $! > '" + pid_file.string() + "'; wait; fi; echo {}",
                        ":::", "fast", "slow"});
  CHECK(std::chrono::steady_clock::now() - started < 20s);
  CHECK(ran.status == 1);
  CHECK(ran.out == "fast\n");
  CHECK(ran.err.find("timed out") != std::string::npos);
  const pid_t sleeper = std::stoi(read_file(pid_file));
  CHECK(eventually([&] { return !fanout_test::process_alive(sleeper); }, 10s));
  const auto lines = lines_of(read_file(joblog));
  REQUIRE(lines.size() == 3);
  const auto slow = split_tabs(lines[2]);
  REQUIRE(slow.size() == 9);
  CHECK(slow[6] == "-1");
  CHECK(slow[7] == "15");
}

TEST_CASE("--joblog has GNU parallel's header and columns, one line per job") {
  TempDir dir;
  const auto joblog = dir.path() / "jobs.tsv";
  const auto ran = run({"run", "-j2", "--joblog", joblog.string(), "echo {}; exit {}", ":::", "0", "3", "0"});
  CHECK(ran.status == 1);
  const auto lines = lines_of(read_file(joblog));
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] == "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand");
  std::vector<std::string> seqs;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const auto fields = split_tabs(lines[i]);
    REQUIRE(fields.size() == 9);
    seqs.push_back(fields[0]);
    CHECK(fields[1] == ":");
    CHECK(three_decimals(fields[2]));
    CHECK(fields[2].size() == 14);  // epoch seconds: 10 digits until 2286
    CHECK(fields[3].size() == 10);
    CHECK(three_decimals(fields[3]));
    CHECK(fields[4] == "0");
    CHECK(fields[5] == "2");  // bytes of output
    const std::string argument = fields[0] == "2" ? "3" : "0";
    CHECK(fields[6] == argument);
    CHECK(fields[7] == "0");
    CHECK(fields[8] == "echo " + argument + "; exit " + argument);
  }
  std::sort(seqs.begin(), seqs.end());
  CHECK(seqs == std::vector<std::string>{"1", "2", "3"});
}

TEST_CASE("--halt now,fail=1 kills running jobs at the first failure and exits with its status") {
  TempDir dir;
  const auto pid_file = dir.path() / "pid";
  const auto never = dir.path() / "never";
  const auto joblog = dir.path() / "joblog";
  const std::string command = "case {} in long) echo long-started; echo $$ > '" + pid_file.string() +
                              "'; exec sleep 30;; fail) " + wait_for_file(pid_file) + "; exit 3;; *) touch '" +
                              never.string() + "';; esac";
  const auto started = std::chrono::steady_clock::now();
  const auto ran =
      run({"run", "-j2", "--halt", "now,fail=1", "--joblog", joblog.string(), command, ":::", "long", "fail", "other"});
  CHECK(std::chrono::steady_clock::now() - started < 20s);
  CHECK(ran.status == 3);
  CHECK_FALSE(std::filesystem::exists(never));
  CHECK(ran.out.find("long-started") == std::string::npos);  // killed jobs are not printed (GNU parallel)
  CHECK(ran.err.find("--halt") != std::string::npos);
  const pid_t long_job = std::stoi(read_file(pid_file));
  CHECK(eventually([&] { return !fanout_test::process_alive(long_job); }, 10s));
  const auto lines = lines_of(read_file(joblog));
  REQUIRE(lines.size() == 2);
  CHECK(split_tabs(lines[1])[6] == "3");
}

TEST_CASE("--halt soon,fail=2 starts no new job after two failures and lets running ones finish") {
  TempDir dir;
  const auto release = dir.path() / "release";
  const std::string command = "case {} in slow) " + wait_for_file(release) + "; echo slow-done;; f*) exit 1;; *) touch '" +
                              dir.path().string() + "/started-{}';; esac";
  Tool tool({"run", "-j2", "--halt", "soon,fail=2", command, ":::", "slow", "f1", "f2", "n1", "n2"});
  // slow holds one slot; f1 and f2 fail one after the other in the other.
  REQUIRE(eventually([&] { return tool.err().find("--halt") != std::string::npos; }, 30s));
  touch(release);
  CHECK(tool.finish() == 2);
  CHECK(tool.out() == "slow-done\n");  // the running job was not killed
  CHECK_FALSE(std::filesystem::exists(dir.path() / "started-n1"));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "started-n2"));
}

TEST_CASE("the exit status counts failed jobs, capped at 101; bad usage is 255") {
  CHECK(run({"run", "exit {}", ":::", "0", "1", "2", "3"}).status == 3);
  std::string many;
  for (int i = 0; i < 105; ++i) many += std::to_string(i) + "\n";
  CHECK(run({"run", "-j2", "false"}, many).status == 101);
  CHECK(run({"run", "-j2", "true"}, many).status == 0);
  CHECK(run({"run", "--no-such-option", "true", ":::", "a"}).status == 255);
  CHECK(run({"run", "--halt", "later", "true", ":::", "a"}).status == 255);
  CHECK(run({"run", "--halt", "soon,fail=10%", "true", ":::", "a"}).status == 255);
  CHECK(run({"run", "--timeout", "soon", "true", ":::", "a"}).status == 255);
  CHECK(run({"run", "-j", "x", "true", ":::", "a"}).status == 255);
}

TEST_CASE("--progress prints nothing when stderr is not a terminal") {
  const auto ran = run({"run", "--progress", "-j2", "true", ":::", "1", "2", "3"});
  CHECK(ran.status == 0);
  CHECK(ran.err == "");
  CHECK(ran.out == "");
}

TEST_CASE("--line-buffer passes whole lines through while the job runs, never half a line") {
  TempDir dir;
  const auto release = dir.path() / "release";
  const auto started = dir.path() / "started";
  const std::string command =
      "printf 'first\\npar'; touch '" + started.string() + "'; " + wait_for_file(release) + "; printf 'tial\\n'";
  {
    Tool tool({"run", "--line-buffer", command, ":::", "x"});
    REQUIRE(eventually([&] { return tool.out() == "first\n"; }, 30s));
    CHECK(tool.out().find("par") == std::string::npos);
    touch(release);
    CHECK(tool.finish() == 0);
    CHECK(tool.out() == "first\npartial\n");
  }
  std::filesystem::remove(release);
  {
    // Without it, nothing of a job is printed before it ends.
    Tool tool({"run", command, ":::", "x"});
    REQUIRE(eventually([&] { return std::filesystem::exists(started); }, 30s));
    CHECK(tool.out() == "");
    touch(release);
    CHECK(tool.finish() == 0);
    CHECK(tool.out() == "first\npartial\n");
  }
}

TEST_CASE("SIGTERM to fanout run stops its jobs and exits 128+15") {
  TempDir dir;
  const auto pid_file = dir.path() / "pid";
  Tool tool({"run", "echo $$ > '" + pid_file.string() + "'.{}; mv '" + pid_file.string() + "'.{} '" +
                        pid_file.string() + "'; exec sleep 30", ":::", "x"});
  REQUIRE(eventually([&] { return !read_file(pid_file).empty(); }, 30s));
  const pid_t job = std::stoi(read_file(pid_file));
  ::kill(tool.pid(), SIGTERM);
  CHECK(tool.finish() == 128 + SIGTERM);
  CHECK(eventually([&] { return !fanout_test::process_alive(job); }, 10s));
}

// ---- remote -----------------------------------------------------------------------------------

namespace {

// A fanout-broker on a port of the OS's choosing and one fanout-worker with `executors` executors
// (fanout_test::Cluster: it waits until they have all announced themselves).
fanout_test::ClusterOptions one_worker(bool allow_shell, unsigned executors = 2) {
  return {.workers = {{.processes = executors, .allow_shell = allow_shell}}};
}

}  // namespace

TEST_CASE("--broker runs the jobs on remote workers; the joblog names the worker") {
  fanout_test::Cluster cluster(one_worker(true));
  TempDir dir;
  const auto joblog = dir.path() / "joblog";
  const auto ran = run({"run", "--broker", cluster.endpoint(), "-j2", "-k", "--joblog", joblog.string(),
                        "echo {#}:{}; echo warn-{} >&2", ":::", "a", "b c", "d"});
  INFO(cluster.logs());
  CHECK(ran.status == 0);
  CHECK(ran.out == "1:a\n2:b c\n3:d\n");
  CHECK(ran.err == "warn-a\nwarn-b c\nwarn-d\n");
  const auto lines = lines_of(read_file(joblog));
  REQUIRE(lines.size() == 4);
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const auto fields = split_tabs(lines[i]);
    REQUIRE(fields.size() == 9);
    CHECK(fields[1] != ":");
    CHECK_FALSE(fields[1].empty());
    CHECK(fields[1].find("pid") == std::string::npos);
  }
  // FANOUT_BROKER is --broker; failures count as locally.
  const auto from_env = run({"run", "exit {}", ":::", "0", "1", "2"}, "", {"FANOUT_BROKER=" + cluster.endpoint()});
  CHECK(from_env.status == 2);
}

TEST_CASE("a worker without --allow-shell fails every job with a message saying so") {
  fanout_test::Cluster cluster(one_worker(false));
  const auto ran = run({"run", "--broker", cluster.endpoint(), "echo {}", ":::", "a", "b"});
  INFO(cluster.logs());
  CHECK(ran.status == 2);
  CHECK(ran.out == "");
  CHECK(ran.err.find("--allow-shell") != std::string::npos);
}

TEST_CASE("remote jobs with -j2 never run more than 2 at once on 4 executors, and leave the broker idle") {
  fanout_test::Cluster cluster(one_worker(true, 4));
  REQUIRE(cluster.wait_for_executors(4));
  TempDir dir;
  const auto marks = dir.path() / "marks";
  std::filesystem::create_directories(marks);
  // Each job counts the jobs between their touch and rm, which lie inside their run: more than 2
  // markers at once means more than 2 jobs at once.
  const std::string job = "touch '" + marks.string() + "/{}'; n=$(ls '" + marks.string() +
                          "' | wc -l); [ \"$n\" -gt 2 ] && echo \"$n\" >> '" + (dir.path() / "over").string() +
                          "'; sleep 0.02; rm '" + marks.string() + "/{}'; echo {}";
  std::vector<std::string> arguments{"run", "--broker", cluster.endpoint(), "-j2", job, ":::"};
  for (int i = 1; i <= 60; ++i) arguments.push_back(std::to_string(i));
  const auto ran = run(arguments);
  INFO(cluster.logs());
  CHECK(ran.status == 0);
  CHECK(lines_of(ran.out).size() == 60);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "over"));
  CHECK(cluster.wait_idle());
}

TEST_CASE("--broker survives its broker SIGKILLed and restarted: every job's output once, exit 0") {
  fanout_test::Cluster cluster(one_worker(true));
  TempDir dir;
  const std::string where = dir.path().string();
  Tool tool({"run", "--broker", cluster.endpoint(), "-j2", "-k",
             "touch '" + where + "/started-{}'; while [ ! -e '" + where + "/go' ]; do sleep 0.01; done; echo job {}",
             ":::", "1", "2", "3", "4"});
  // Jobs 1 and 2 run when the broker dies; 3 and 4 wait for a slot.
  REQUIRE(fanout_test::eventually(
      [&] { return std::filesystem::exists(dir.path() / "started-1") && std::filesystem::exists(dir.path() / "started-2"); },
      std::chrono::seconds(20)));
  cluster.broker().restart();
  fanout_test::touch(dir.path() / "go");
  INFO(cluster.logs());
  CHECK(tool.finish() == 0);
  CHECK(tool.out() == "job 1\njob 2\njob 3\njob 4\n");
  CHECK(cluster.wait_idle());
}

TEST_CASE("remote jobs read lazily from stdin all run once, in order with -k") {
  fanout_test::Cluster cluster(one_worker(true));
  std::string input;
  std::string expected;
  for (int i = 1; i <= 300; ++i) {
    input += std::to_string(i) + "\n";
    expected += "line " + std::to_string(i) + "\n";
  }
  const auto ran = run({"run", "--broker", cluster.endpoint(), "-j2", "-k", "echo line {}"}, input);
  INFO(cluster.logs());
  CHECK(ran.status == 0);
  CHECK(ran.out == expected);
  CHECK(cluster.wait_idle());
}

TEST_CASE("remote --line-buffer streams output while a job runs") {
  fanout_test::Cluster cluster(one_worker(true));
  TempDir dir;
  const auto go = dir.path() / "go";
  Tool tool({"run", "--broker", cluster.endpoint(), "--line-buffer", "echo early-{}; " + wait_for_file(go) + "; echo late-{}",
             ":::", "x"});
  CHECK(eventually([&] { return tool.out() == "early-x\n"; }, 20s));
  touch(go);
  CHECK(tool.finish() == 0);
  CHECK(tool.out() == "early-x\nlate-x\n");
}

TEST_CASE("remote --halt soon starts no job after the failure and lets the running one finish") {
  fanout_test::Cluster cluster(one_worker(true, 4));
  REQUIRE(cluster.wait_for_executors(4));
  TempDir dir;
  const auto marks = dir.path();
  // Job 1 fails at once; job 2 is running then and ends later; no job after 2 may start.
  const std::string job = "touch '" + marks.string() + "/started-{}'; [ {} = 1 ] && exit 1; sleep 0.3; echo done-{}";
  std::vector<std::string> arguments{"run", "--broker", cluster.endpoint(), "-j2", "--halt", "soon,fail=1", job, ":::"};
  for (int i = 1; i <= 20; ++i) arguments.push_back(std::to_string(i));
  const auto ran = run(arguments);
  INFO(cluster.logs());
  CHECK(ran.status == 1);
  CHECK(ran.out == "done-2\n");
  CHECK(std::filesystem::exists(marks / "started-2"));
  for (int i = 3; i <= 20; ++i) CHECK_FALSE(std::filesystem::exists(marks / ("started-" + std::to_string(i))));
  CHECK(cluster.wait_idle());
}

TEST_CASE("remote --halt now cancels the running and the queued jobs at once") {
  fanout_test::Cluster cluster(one_worker(true, 4));
  REQUIRE(cluster.wait_for_executors(4));
  TempDir dir;
  const auto marks = dir.path();
  const std::string job = "touch '" + marks.string() + "/started-{}'; [ {} = 1 ] && exit 1; exec sleep 30";
  std::vector<std::string> arguments{"run", "--broker", cluster.endpoint(), "-j2", "--halt", "now,fail=1", job, ":::"};
  for (int i = 1; i <= 40; ++i) arguments.push_back(std::to_string(i));
  const auto started = std::chrono::steady_clock::now();
  const auto ran = run(arguments);
  INFO(cluster.logs());
  CHECK(ran.status == 1);
  CHECK(std::chrono::steady_clock::now() - started < 20s);
  // The broker may start one queued job the moment job 1 ends, before the cancel reaches it.
  int ran_jobs = 0;
  for (int i = 1; i <= 40; ++i) ran_jobs += std::filesystem::exists(marks / ("started-" + std::to_string(i))) ? 1 : 0;
  CHECK(ran_jobs <= 4);
  CHECK(cluster.wait_idle());
}

TEST_CASE("a broker that cannot be reached ends the run with 255 and says so") {
  // Nothing listens on port 1 (binding it needs root, and nobody here does).
  const auto ran = run({"run", "--broker", "tcp://127.0.0.1:1", "true", ":::", "a", "b"});
  CHECK(ran.status == 255);
  CHECK(ran.err.find("no word from the broker at tcp://127.0.0.1:1") != std::string::npos);
}

TEST_CASE("SIGTERM to a remote run cancels its jobs on the worker, queued ones too, silently") {
  fanout_test::Cluster cluster(one_worker(true));
  TempDir dir;
  const std::string job = "echo $$ > '" + dir.path().string() + "/pid-{}'; exec sleep 30";
  std::vector<std::string> arguments{"run", "--broker", cluster.endpoint(), "-j2", job, ":::"};
  for (int i = 1; i <= 10; ++i) arguments.push_back(std::to_string(i));
  Tool tool(arguments);
  const auto pid_file = dir.path() / "pid-1";
  REQUIRE(eventually([&] { return !read_file(pid_file).empty(); }, 20s));
  const pid_t job_pid = std::stoi(read_file(pid_file));
  ::kill(tool.pid(), SIGTERM);
  CHECK(tool.finish() == 128 + SIGTERM);
  INFO(cluster.logs());
  CHECK(tool.out() == "");
  CHECK(tool.err() == "");
  CHECK(eventually([&] { return !fanout_test::process_alive(job_pid); }, 10s));
  CHECK(cluster.wait_idle());
  CHECK_FALSE(std::filesystem::exists(dir.path() / "pid-3"));
}
