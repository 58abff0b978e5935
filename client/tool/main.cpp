// fanout: the command-line tool. `fanout status` asks a broker what it serves; `fanout run` runs
// a command for each argument, N at a time, here or on remote workers (GNU-parallel-like; the
// logic is in run_command.hpp); `fanout deferred` lists, retries or drops dead deferred tasks
// (deferred_command.hpp).
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <zmq.hpp>

#include <fanout/error.hpp>

#include "deferred_command.hpp"
#include "run_command.hpp"
#include "broker_queries.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 2;
constexpr int kExitNoBroker = 4;

constexpr const char* kRunFooter =
    "Each job is a shell line (/bin/sh -c). Placeholders: {} the argument(s), shell-quoted; {N} the\n"
    "argument from the N-th ::: group; {#} the job's sequence number (from 1). A command without\n"
    "placeholders gets the argument(s) appended. Several ::: groups run every combination (the\n"
    "last group varies fastest). Without ::: the arguments are the lines of stdin.\n"
    "\n"
    "Examples:\n"
    "  fanout run -j 4 'gzip -9 {}' ::: *.log\n"
    "  find . -name '*.png' | fanout run --progress --joblog jobs.tsv 'optipng {}'\n"
    "  fanout run -k --tag 'curl -sI {1}/{2} | head -1' ::: https://a.example https://b.example ::: x y\n"
    "  fanout run --halt now,fail=1 --timeout 30 make -C {} test ::: lib app tools\n"
    "  FANOUT_BROKER=tcp://10.0.0.5:5555 fanout run -j 64 './render.sh {}' ::: $(seq 1000)\n"
    "\n"
    "Output: each job's output is printed whole when it ends (stdout to stdout, stderr to stderr),\n"
    "in the order jobs end; -k keeps input order; --line-buffer passes whole lines through as\n"
    "they come. --joblog writes GNU parallel's columns: Seq Host Starttime JobRuntime Send Receive\n"
    "Exitval Signal Command (Host ':' here, the worker for remote jobs; Receive: bytes of output;\n"
    "Exitval -1 for a timed-out job).\n"
    "\n"
    "Environment: FANOUT_BROKER (--broker), FANOUT_JOBS (-j).\n"
    "\n"
    "Exit codes (GNU parallel's): 0 every job succeeded; 1-100 the number of failed jobs; 101 more\n"
    "than 100 failed; with --halt ...,fail=1 the failing job's own status (255 if it timed out);\n"
    "128+N when fanout itself was stopped by signal N (its jobs are stopped too); 255 bad usage\n"
    "or an error of fanout itself (e.g. the broker cannot be reached).";

// `fanout run`: the flags into RunOptions, then run(). Returns the exit status.
int run_command(const std::vector<std::string>& words, const std::string& halt, const std::string& timeout, std::size_t jobs,
                fanout::tool::RunOptions options) {
  using fanout::tool::kRunExitError;
  try {
    options.jobs = jobs;
    options.halt = fanout::tool::HaltPolicy::parse(halt);
    if (!timeout.empty()) {
      char* end = nullptr;
      const double seconds = std::strtod(timeout.c_str(), &end);
      if (end == timeout.c_str() || *end != '\0' || !std::isfinite(seconds) || seconds <= 0 || seconds > 1e9) {
        throw fanout::tool::UsageError("--timeout " + timeout + ": expected a positive number of seconds");
      }
      options.timeout = std::chrono::milliseconds(static_cast<long long>(std::ceil(seconds * 1000)));
    }
    fanout::tool::split_command(words, options);
  } catch (const fanout::tool::UsageError& error) {
    std::cerr << "fanout run: " << error.what() << "\nRun with --help for more information.\n";
    return kRunExitError;
  }
  try {
    return fanout::tool::run(options);
  } catch (const fanout::tool::UsageError& error) {
    std::cerr << "fanout run: " << error.what() << "\nRun with --help for more information.\n";
  } catch (const std::exception& error) {
    std::cerr << "fanout run: " << error.what() << "\n";
  }
  return kRunExitError;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fanout: run batches of jobs in parallel, here or on a cluster"};
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  fanout status --broker tcp://127.0.0.1:5555\n"
      "  FANOUT_BROKER=tcp://127.0.0.1:5555 fanout status\n"
      "  fanout run -j 2 'echo {}' ::: a b c\n"
      "  fanout deferred list --broker tcp://127.0.0.1:5555\n"
      "\n"
      "Exit codes: 0 success, 2 bad usage, 4 no broker answered; `fanout run --help` and\n"
      "`fanout deferred --help` for theirs.");

  std::string broker;
  int timeout_ms = 3000;
  auto* status = app.add_subcommand("status", "Workers, their executors and free slots, and the queue depth");
  status->add_option("--broker", broker, "Broker endpoint")->envname("FANOUT_BROKER")->required();
  status->add_option("--timeout-ms", timeout_ms, "How long to wait for an answer")->check(CLI::Range(1, 600000));

  fanout::tool::RunOptions run_options;
  std::string halt = "never";
  std::string run_timeout;
  std::size_t jobs = 0;
  auto* run = app.add_subcommand("run", "Run a command for each argument, N at a time (GNU-parallel-like)");
  run->footer(kRunFooter);
  run->prefix_command();  // from the first word that is not one of run's flags: the command and its ::: groups
  run->add_option("-j,--jobs", jobs, "Jobs at once (default: the number of cores; remote: 16 in flight)")
      ->envname("FANOUT_JOBS");
  run->add_option("--timeout", run_timeout, "Kill a job after this many seconds (fractions allowed)");
  run->add_flag("--tag", run_options.tag, "Prefix each output line with the job's argument(s) and a TAB");
  run->add_flag("-k,--keep-order", run_options.keep_order, "Print outputs in input order");
  run->add_flag("--line-buffer", run_options.line_buffer, "Pass output through line by line as it comes");
  run->add_option("--joblog", run_options.joblog, "Write a line per job (GNU parallel's joblog) to FILE");
  run->add_option("--halt", halt, "never (default), soon,fail=N or now,fail=N (also success=N, done=N)");
  run->add_flag("--progress", run_options.progress, "A live progress bar on stderr when it is a terminal");
  run->add_option("--broker", run_options.broker, "Run the jobs on the workers of this broker (--allow-shell)")
      ->envname("FANOUT_BROKER");

  fanout::tool::DeferredOptions deferred_options;
  auto* deferred = fanout::tool::add_deferred_command(app, deferred_options);

  // `fanout run [flags] -- command...`: the first `--` ends run's flags. CLI11 sees only what is
  // before it; the words after it are the command (with a `--` of the command's own, e.g.
  // `git log -- {}`, given back when the command had started before it).
  std::vector<std::string> after_marker;
  bool has_marker = false;
  if (argc > 1 && std::strcmp(argv[1], "run") == 0) {
    for (int i = 2; i < argc; ++i) {
      if (std::strcmp(argv[i], "--") != 0) continue;
      has_marker = true;
      after_marker.assign(argv + i + 1, argv + argc);
      argc = i;
      break;
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const bool in_run = argc > 1 && std::strcmp(argv[1], "run") == 0;
    const int code = app.exit(error);
    if (code == 0) return kExitOk;
    return in_run ? fanout::tool::kRunExitError : kExitUsage;
  }

  if (run->parsed()) {
    std::vector<std::string> words = run->remaining();
    if (has_marker && !words.empty()) words.emplace_back("--");
    words.insert(words.end(), after_marker.begin(), after_marker.end());
    return run_command(words, halt, run_timeout, jobs, std::move(run_options));
  }
  if (deferred->parsed()) return fanout::tool::run_deferred(deferred_options, std::cout, std::cerr);

  zmq::context_t context;
  try {
    std::cout << fanout::link::status_report(context, broker, std::chrono::milliseconds(timeout_ms));
  } catch (const fanout::Error& error) {
    std::cerr << "fanout status: " << error.what() << "\n";
    return kExitNoBroker;
  }
  return kExitOk;
}
