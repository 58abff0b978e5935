// run_options_test.cpp: what `fanout run`'s GNU parallel options do that comparing outputs with GNU
// parallel (compat_test.cpp) cannot show: timing (--delay, --timeout N% following the median),
// the progress line on a terminal, --version, the messages for bad input and refused options, and
// a remote job whose worker dies.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <fstream>
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

namespace {

struct Ran {
  int status;
  std::string out;
  std::string err;
};

Ran run(std::vector<std::string> arguments, const std::string& input = "", const std::vector<std::string>& environment = {}) {
  arguments.insert(arguments.begin(), FANOUT_TOOL_PROGRAM);
  fanout_test::Child tool(std::move(arguments), {.env = environment, .drop_env = {"FANOUT_"}, .input = input});
  const int status = tool.finish(60s);
  return Ran{status, tool.out(), tool.err()};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> fields_of(const std::string& line) {
  std::vector<std::string> fields;
  std::istringstream in(line);
  for (std::string field; std::getline(in, field, '\t');) fields.push_back(field);
  return fields;
}

// `fanout run ...` with stderr on a pseudo-terminal (read back whole once it exits) and stdout in
// a file (a fanout_test::Child, killed and reaped whatever happens).
class OnTerminal {
 public:
  explicit OnTerminal(std::vector<std::string> arguments) : master_(open_terminal()) {
    arguments.insert(arguments.begin(), FANOUT_TOOL_PROGRAM);
    tool_.emplace(std::move(arguments), fanout_test::ChildOptions{.stderr_path = ::ptsname(master_)});
  }
  ~OnTerminal() {
    tool_.reset();
    ::close(master_);
  }
  OnTerminal(const OnTerminal&) = delete;
  OnTerminal& operator=(const OnTerminal&) = delete;

  // What the tool wrote to the terminal, once it has exited (within `limit`).
  std::string terminal_output(std::chrono::milliseconds limit) {
    std::string text;
    ::fcntl(master_, F_SETFL, O_NONBLOCK);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    bool reaped = false;
    while (std::chrono::steady_clock::now() < deadline) {
      char buffer[4096];
      const ssize_t got = ::read(master_, buffer, sizeof(buffer));
      if (got > 0) {
        text.append(buffer, static_cast<std::size_t>(got));
        continue;
      }
      if (reaped) break;  // exited, and everything it wrote has been read
      if (!tool_->running()) {
        reaped = true;
        continue;  // one more read for what is left
      }
      std::this_thread::sleep_for(10ms);
    }
    REQUIRE_MESSAGE(reaped, "fanout run did not exit in time");
    return text;
  }

 private:
  static int open_terminal() {
    const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    REQUIRE(master >= 0);
    REQUIRE(::grantpt(master) == 0);
    REQUIRE(::unlockpt(master) == 0);
    return master;
  }

  int master_ = -1;
  std::optional<fanout_test::Child> tool_;
};

}  // namespace

TEST_CASE("--delay starts each job at least that long after the one before") {
  TempDir dir;
  const auto joblog = (dir.path() / "joblog").string();
  const auto ran = run({"run", "-j3", "--delay", "0.3", "--joblog", joblog, "true", ":::", "1", "2", "3"});
  CHECK(ran.status == 0);
  const auto lines = lines_of(read_file(joblog));
  REQUIRE(lines.size() == 4);
  std::vector<double> starts;
  for (std::size_t i = 1; i < lines.size(); ++i) starts.push_back(std::stod(fields_of(lines[i]).at(2)));
  std::sort(starts.begin(), starts.end());
  CHECK(starts[1] - starts[0] >= 0.29);  // the joblog has milliseconds
  CHECK(starts[2] - starts[1] >= 0.29);
}

TEST_CASE("--timeout N% stops a running job once the median of the others makes it too long") {
  // Job 1 starts first with no median known; as soon as job 2 has succeeded the limit is 500% of
  // 0.1 s, and job 1, long over it, is stopped (GNU parallel's rule: the limit follows the median).
  const auto started = std::chrono::steady_clock::now();
  const auto ran = run({"run", "-j2", "-k", "--timeout", "500%", "sleep {}; echo {}", ":::", "30", "0.1", "0.1", "0.1"});
  CHECK(ran.status == 1);
  CHECK(ran.out == "0.1\n0.1\n0.1\n");
  CHECK(ran.err.find("job 1 timed out") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - started < 20s);
}

TEST_CASE("-m and -X split a long input over command lines that sh -c accepts") {
  const std::string input = [] {
    std::string lines;
    for (int i = 1; i <= 100000; ++i) lines += std::to_string(i) + "\n";
    return lines;
  }();
  for (const char* packing : {"-m", "-X"}) {
    INFO(packing);
    const auto ran = run({"run", "-k", packing, "echo x{}y | wc -w"}, input);
    CHECK(ran.status == 0);
    CHECK(ran.err == "");
    std::size_t words = 0;
    const auto counts = lines_of(ran.out);
    for (const auto& count : counts) words += std::stoul(count);
    CHECK(counts.size() > 1);
    CHECK(words == 100000);  // every argument once: x1 2 3 ... Ny (-m) or x1y x2y ... (-X)
  }
}

TEST_CASE("--progress, --eta and --bar draw on a terminal and print nothing elsewhere") {
  const auto quiet = run({"run", "--progress", "--eta", "--bar", "true", ":::", "1", "2", "3"});
  CHECK(quiet.status == 0);
  CHECK(quiet.err == "");
  OnTerminal tool({"run", "--bar", "--eta", "-j1", "sleep 0.15; : {}", ":::", "1", "2", "3"});
  const std::string drawn = tool.terminal_output(30s);
  CHECK(drawn.find("fanout: ") != std::string::npos);
  CHECK(drawn.find("3/3 done") != std::string::npos);
  CHECK(drawn.find("] 100% ") != std::string::npos);
  CHECK(drawn.find("ETA") != std::string::npos);
}

TEST_CASE("--version prints the project's version") {
  const auto ran = run({"run", "--version"});
  CHECK(ran.status == 0);
  CHECK(ran.out == std::string("fanout ") + FANOUT_PROJECT_VERSION + "\n");
  CHECK(run({"--version"}).out == ran.out);
}

TEST_CASE("bad input is a clear error with exit status 255") {
  const auto missing = run({"run", "echo", "::::", "/no/such/file"});
  CHECK(missing.status == 255);
  CHECK(missing.err.find("cannot open input file /no/such/file") != std::string::npos);
  const auto missing_arg_file = run({"run", "-a", "/no/such/file", "echo"});
  CHECK(missing_arg_file.status == 255);
  CHECK(missing_arg_file.err.find("/no/such/file") != std::string::npos);
  for (const char* jobs : {"x", "-", "+", "12%%", "-2x", "1.5"}) {
    const auto bad_jobs = run({"run", "-j", jobs, "echo", ":::", "a"});
    INFO("-j " << jobs);
    CHECK(bad_jobs.status == 255);
    CHECK(bad_jobs.err.find(std::string("-j ") + jobs + ": expected") != std::string::npos);
  }
  const auto regex = run({"run", "--colsep", "a(b", "echo", ":::", "a"});
  CHECK(regex.status == 255);
  CHECK(regex.err.find("--colsep 'a(b': not a regular expression") != std::string::npos);
  const auto joblog = run({"run", "--joblog", "/dev/null/x", "echo", ":::", "a"});
  CHECK(joblog.status == 255);
  CHECK(joblog.err.find("cannot write the joblog /dev/null/x") != std::string::npos);
  TempDir dir;
  const auto not_a_joblog = dir.path() / "notes";
  std::ofstream(not_a_joblog) << "Seq\tHost\nthis is not a joblog\n";
  const auto resume = run({"run", "--joblog", not_a_joblog.string(), "--resume", "echo", ":::", "a"});
  CHECK(resume.status == 255);
  CHECK(resume.err.find("line 2 is not a joblog line") != std::string::npos);
  const auto no_value = run({"run", "echo", "-j"});
  CHECK(no_value.status == 0);  // after the command starts, -j is the command's own
  CHECK(run({"run", "-j"}).err.find("option -j needs a value") != std::string::npos);
}

TEST_CASE("an option fanout does not have is refused by name, with the reason, and runs nothing") {
  TempDir dir;
  const auto marker = (dir.path() / "ran").string();
  for (const std::vector<std::string>& refused :
       {std::vector<std::string>{"--sshlogin", "server", "touch " + marker, ":::", "a"},
        std::vector<std::string>{"-S", "server", "touch " + marker, ":::", "a"},
        std::vector<std::string>{"--plus", "touch " + marker, ":::", "a"},
        std::vector<std::string>{"--pipe-part", "touch " + marker},
        std::vector<std::string>{"--semaphore", "touch " + marker},
        std::vector<std::string>{"--results", "out.csv", "touch " + marker, ":::", "a"},
        std::vector<std::string>{"--header", "\\t", "touch " + marker, ":::", "a"},
        std::vector<std::string>{"--dryrun-typo", "touch " + marker, ":::", "a"},
        std::vector<std::string>{"touch " + marker + " {= s/a/b/ =}", ":::", "a"}}) {
    std::vector<std::string> arguments{"run"};
    arguments.insert(arguments.end(), refused.begin(), refused.end());
    const auto ran = run(arguments);
    INFO(refused.front() << ": " << ran.err);
    CHECK(ran.status == 255);
    CHECK(ran.out == "");
    CHECK(ran.err.rfind("fanout run: ", 0) == 0);
  }
  CHECK_FALSE(std::filesystem::exists(marker));
  CHECK(run({"run", "--sshlogin", "s", "true"}).err.find("--sshlogin is not supported: fanout runs jobs on the workers of a broker") !=
        std::string::npos);
  CHECK(run({"run", "--dryrun-typo", "true"}).err.find("unknown option --dryrun-typo") != std::string::npos);
  CHECK(run({"run", "--re", "true"}).err.find("option --re is ambiguous") != std::string::npos);
}

TEST_CASE("--help lists the options and the command line's shape") {
  const auto help = run({"run", "--help"});
  CHECK(help.status == 0);
  for (const char* option : {":::+", "::::", "--colsep", "--header", "--pipe", "--retries", "--resume-failed", "--results",
                             "--env", "{/.}", "-j, --jobs"}) {
    CHECK_MESSAGE(help.out.find(option) != std::string::npos, option);
  }
}

TEST_CASE("--env sends a variable with every remote job; without it the job does not see the variable") {
  fanout_test::Cluster cluster({.workers = {{.processes = 2, .allow_shell = true}}});
  const std::vector<std::string> environment{"RUN_TEST_COLOUR=teal"};
  const auto sent = run({"run", "--broker", cluster.endpoint(), "-k", "--env", "RUN_TEST_COLOUR",
                         "echo ${RUN_TEST_COLOUR:-unset} {}", ":::", "a", "b"},
                        "", environment);
  INFO(cluster.logs());
  CHECK(sent.status == 0);
  CHECK(sent.out == "teal a\nteal b\n");
  const auto not_sent = run({"run", "--broker", cluster.endpoint(), "echo ${RUN_TEST_COLOUR:-unset}", ":::", "a"}, "",
                            environment);
  CHECK(not_sent.out == "unset a\n");
}

TEST_CASE("a remote shell command sees none of the worker's own variables unless --pass-env names them") {
  // The workers (and the tool) inherit these from the test; the worker's operator may hold secrets.
  fanout_test::ScopedEnv secret("RUN_TEST_SECRET", "hunter2");
  fanout_test::ScopedEnv key("RUN_TEST_AWS_KEY", "k1");
  const std::string job = "echo \"[${RUN_TEST_SECRET:-unset}] [${RUN_TEST_AWS_KEY:-unset}] path=$(command -v sh >/dev/null && echo ok) "
                          "home=${HOME:+set} shell=$SHELL\" {}";
  {
    fanout_test::Cluster cluster({.workers = {{.processes = 1, .allow_shell = true}}});
    const auto ran = run({"run", "--broker", cluster.endpoint(), job, ":::", "a"});
    INFO(cluster.logs() << ran.err);
    CHECK(ran.status == 0);
    CHECK(ran.out == "[unset] [unset] path=ok home=set shell=/bin/sh a\n");
  }
  fanout_test::Cluster cluster(
      {.workers = {{.processes = 1,
                    .allow_shell = true,
                    .arguments = {"--pass-env", "RUN_TEST_SECRET", "--pass-env", "RUN_TEST_AWS_*"}}}});
  const auto ran = run({"run", "--broker", cluster.endpoint(), job, ":::", "b"});
  INFO(cluster.logs() << ran.err);
  CHECK(ran.status == 0);
  CHECK(ran.out == "[hunter2] [k1] path=ok home=set shell=/bin/sh b\n");
}

TEST_CASE("a remote job whose worker dies runs again on another worker, without counting against --retries") {
  fanout_test::Cluster cluster;
  const auto alpha = cluster.start_worker({.processes = 1, .allow_shell = true, .arguments = {"--id", "alpha"}});
  const auto beta = cluster.start_worker({.processes = 1, .allow_shell = true, .arguments = {"--id", "beta"}});
  // Both have announced their one executor.
  REQUIRE(cluster.wait_for([](const fanout_test::StatusCounts& counts) { return counts.workers == 2 && counts.executors == 2; },
                           20s));
  TempDir dir;
  const auto marker = dir.path() / "first-run";
  const auto killed = dir.path() / "killed-worker";
  const auto orphan = dir.path() / "orphan";  // the first run's shell, left without its worker
  // The first run kills its own worker: the ancestor that is alpha's or beta's supervisor (the
  // executor follows it through PDEATHSIG, the command follows the executor). The broker then
  // gives the job to the other worker.
  const std::string supervisors = " " + std::to_string(alpha->pid()) + " " + std::to_string(beta->pid()) + " ";
  const std::string job = "if [ ! -e '" + marker.string() + "' ]; then touch '" + marker.string() +
                          "'; p=$$; while [ $p -gt 1 ]; do case '" + supervisors +
                          "' in *\" $p \"*) break;; esac; p=$(cut -d' ' -f4 /proc/$p/stat); done; echo $p > '" +
                          killed.string() + "'; echo $$ > '" + orphan.string() +
                          "'; kill -9 $p; sleep 5; exit 1; fi; echo ran again {}";
  const auto joblog = (dir.path() / "joblog").string();
  const auto ran = run({"run", "--broker", cluster.endpoint(), "--retries", "1", "--joblog", joblog, job, ":::", "x"});
  INFO(cluster.logs() << "--- alpha\n" << alpha->out() << "--- beta\n" << beta->out());
  // The first run's shell did not outlive its worker (it would have slept on, unowned).
  const std::string shell = read_file(orphan);
  REQUIRE_FALSE(shell.empty());
  CHECK(fanout_test::eventually([&] { return fanout_test::process_ended(std::stoi(shell)); }, 10s));
  CHECK(ran.status == 0);
  CHECK(ran.out == "ran again x\n");
  const pid_t dead = std::stoi(read_file(killed));
  const std::string survivor = dead == alpha->pid() ? "beta" : "alpha";
  CHECK((dead == alpha->pid() || dead == beta->pid()));
  const auto lines = lines_of(read_file(joblog));
  REQUIRE(lines.size() == 2);
  const auto fields = fields_of(lines[1]);
  REQUIRE(fields.size() == 9);
  CHECK(fields[1] == survivor);  // the joblog's Host names the worker that ran it
  CHECK(fields[6] == "0");
}
