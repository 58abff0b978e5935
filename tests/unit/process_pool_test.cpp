// Process and Process::pool on this machine: real shell commands, real child processes.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <fanout/process.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;
using fanout::OutputType;
using fanout::Pool;
using fanout::Process;
using fanout_test::eventually;
using fanout_test::TempDir;
using fanout_test::touch;

namespace {

bool file_exists(const std::filesystem::path& path) { return std::filesystem::exists(path); }

// Chunks of output as the callback saw them.
struct Collected {
  std::mutex mutex;
  std::vector<std::tuple<OutputType, std::string, std::string>> chunks;

  fanout::OutputCallback callback() {
    return [this](OutputType type, std::string_view text, const std::string& key) {
      const std::lock_guard lock(mutex);
      chunks.emplace_back(type, std::string(text), key);
    };
  }
  std::string text_of(const std::string& key, OutputType type) {
    const std::lock_guard lock(mutex);
    std::string text;
    for (const auto& [t, chunk, k] : chunks) {
      if (k == key && t == type) text += chunk;
    }
    return text;
  }
};

}  // namespace

TEST_CASE("Process::run gives the exit code, output and error output of a shell line") {
  const auto result = Process::run("echo hello; echo oops >&2; exit 3");
  CHECK(result.failed());
  CHECK_FALSE(result.successful());
  CHECK(result.exit_code() == 3);
  CHECK(result.output() == "hello\n");
  CHECK(result.error_output() == "oops\n");
  CHECK(result.see_in_output("ell"));
  CHECK_FALSE(result.see_in_output("oops"));
  CHECK(result.see_in_error_output("oops"));
  CHECK_FALSE(result.timed_out());
  CHECK(result.command() == "echo hello; echo oops >&2; exit 3");
  CHECK(Process::run("true").successful());
}

TEST_CASE("an argv command is executed directly, with no shell") {
  const auto result = Process::run({"printf", "%s|", "a b;$HOME", "*"});
  CHECK(result.successful());
  CHECK(result.output() == "a b;$HOME|*|");
  CHECK(result.command() == "printf '%s|' 'a b;$HOME' '*'");
}

TEST_CASE("a command that does not exist gives a failed result with a clear message") {
  const auto direct = Process::run({"/nonexistent/fanout-no-such-program", "x"});
  CHECK(direct.exit_code() == 127);
  CHECK(direct.see_in_error_output("command not found"));
  CHECK(direct.see_in_error_output("/nonexistent/fanout-no-such-program"));

  const auto via_shell = Process::run("fanout-no-such-program-xyz");
  CHECK(via_shell.exit_code() == 127);
  CHECK(via_shell.see_in_error_output("fanout-no-such-program-xyz"));

  const auto empty = Process::run(std::vector<std::string>{});
  CHECK(empty.exit_code() == 127);
  CHECK(empty.see_in_error_output("empty"));

  // Inside a pool, the others still run.
  const auto results = Process::concurrently([](Pool& p) {
    p.as("missing").command({"fanout-no-such-program-xyz"});
    p.as("fine").command("echo fine");
  });
  CHECK(results["missing"].exit_code() == 127);
  CHECK(results["fine"].output() == "fine\n");
}

TEST_CASE("path sets the working directory; a missing one fails the process with a message") {
  TempDir dir;
  const auto result = Process::path(dir.path().string()).run("pwd");
  CHECK(result.successful());
  CHECK(std::filesystem::equivalent(result.output().substr(0, result.output().size() - 1), dir.path()));

  const auto missing = Process::path((dir.path() / "nope").string()).run("pwd");
  CHECK(missing.exit_code() == 126);
  CHECK(missing.see_in_error_output("working directory"));
  CHECK(missing.see_in_error_output("nope"));
}

TEST_CASE("env is merged over the inherited environment and can remove a variable") {
  fanout_test::ScopedEnv keep("FANOUT_TEST_KEEP", "kept");
  fanout_test::ScopedEnv drop("FANOUT_TEST_DROP", "still-here");
  const auto result = Process::env("FANOUT_TEST_NEW", "new")
                          .without_env("FANOUT_TEST_DROP")
                          .run("echo \"$FANOUT_TEST_NEW-$FANOUT_TEST_KEEP-${FANOUT_TEST_DROP:-unset}\"");
  CHECK(result.output() == "new-kept-unset\n");

  const auto overridden = Process::env({{"FANOUT_TEST_KEEP", "changed"}}).run("echo $FANOUT_TEST_KEEP");
  CHECK(overridden.output() == "changed\n");
}

TEST_CASE("input is written to stdin, and every string counts, \"0\" and \"\" included") {
  CHECK(Process::input("0").run("cat").output() == "0");
  CHECK(Process::input("").run("cat; echo end").output() == "end\n");
  const std::string big(1 << 20, 'x');
  CHECK(Process::input(big).run("wc -c").output().find("1048576") != std::string::npos);
  // Without input, stdin is empty (never the caller's terminal).
  CHECK(Process::run("cat; echo done").output() == "done\n");
  // A command that does not read its input still ends normally.
  CHECK(Process::input(big).run("exit 0").successful());
}

TEST_CASE("quietly keeps and streams no output") {
  Collected seen;
  auto process = Process::quietly().start("echo hi; echo err >&2", seen.callback());
  const auto result = process.wait();
  CHECK(result.successful());
  CHECK(result.output().empty());
  CHECK(result.error_output().empty());
  CHECK(seen.chunks.empty());
}

TEST_CASE("a timeout kills the whole process group and keeps the output produced") {
  TempDir dir;
  const auto pid_file = dir.path() / "grandchild";
  const auto started = std::chrono::steady_clock::now();
  const auto result =
      Process::timeout(300ms).run("echo started; sleep 30 & echo $! > '" + pid_file.string() + "'; wait");
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  CHECK(result.timed_out());
  CHECK_FALSE(result.idle_timed_out());
  CHECK(result.failed());
  CHECK(result.exit_code() == 128 + SIGTERM);
  CHECK(result.output() == "started\n");
  std::ifstream file(pid_file);
  pid_t grandchild = 0;
  file >> grandchild;
  REQUIRE(grandchild > 0);
  // The background sleep was in the group: it is gone too (reaped by init, so poll for it).
  CHECK(eventually([&] { return !fanout_test::process_alive(grandchild); }));
}

TEST_CASE("an idle timeout fires after that long without output") {
  const auto result = Process::idle_timeout(400ms).run("echo a; sleep 0.1; echo b; exec sleep 30");
  CHECK(result.timed_out());
  CHECK(result.idle_timed_out());
  CHECK(result.output() == "a\nb\n");
  CHECK(result.exit_code() == 128 + SIGTERM);
}

TEST_CASE("a process that ignores TERM is killed after the grace") {
  const auto result = Process::timeout(200ms).run("trap '' TERM; echo x; while :; do sleep 0.05; done");
  CHECK(result.timed_out());
  CHECK(result.exit_code() == 128 + SIGKILL);
  CHECK(result.signal() == SIGKILL);
}

TEST_CASE("a pool gives results by key in insertion order; unkeyed processes get their position") {
  const auto results = Process::concurrently([](Pool& p) {
    p.as("second").command("sleep 0.2; echo 2");
    p.as("first").command({"echo", "1"});
    p.command("echo positional");
  });
  REQUIRE(results.size() == 3);
  CHECK(results.keys() == std::vector<std::string>{"second", "first", "2"});
  CHECK(results[0].output() == "2\n");
  CHECK(results["first"].output() == "1\n");
  CHECK(results["2"].output() == "positional\n");
  CHECK(results.successful());
  CHECK(results.contains("first"));
  CHECK_FALSE(results.contains("third"));
  CHECK_THROWS_WITH_AS(results["third"], doctest::Contains("third"), std::out_of_range);
}

TEST_CASE("one failure or timeout never stops the others") {
  const auto results = Process::concurrently([](Pool& p) {
    p.as("fails").command("exit 9");
    p.as("times-out").command("echo partial; exec sleep 30").timeout(200ms);
    p.as("slow").command("sleep 0.5; echo done");
  });
  CHECK(results["fails"].exit_code() == 9);
  CHECK(results["times-out"].timed_out());
  CHECK(results["times-out"].output() == "partial\n");
  CHECK(results["slow"].successful());
  CHECK(results["slow"].output() == "done\n");
  CHECK(results.failed());
}

TEST_CASE("two processes with one key are refused when the pool is built") {
  CHECK_THROWS_WITH_AS(Process::pool([](Pool& p) {
                         p.as("same").command("true");
                         p.as("same").command("true");
                       }),
                       doctest::Contains("'same'"), fanout::Error);
}

TEST_CASE("a pool's concurrency cap holds: no more than N run at once") {
  TempDir dir;
  const auto path = dir.path().string();
  auto pool = Process::pool([&](Pool& p) {
                for (int i = 0; i < 5; ++i) {
                  p.as("p" + std::to_string(i))
                      .command("touch '" + path + "/started-'\"$KEY\"; while [ ! -e '" + path + "/go' ]; do sleep 0.01; done")
                      .env("KEY", std::to_string(i));
                }
              })
                  .concurrency(2)
                  .start();
  REQUIRE(eventually([&] { return pool.running().size() == 2; }));
  REQUIRE(eventually([&] { return file_exists(dir.path() / "started-0") && file_exists(dir.path() / "started-1"); }));
  CHECK(pool.running() == std::vector<std::string>{"p0", "p1"});
  CHECK(pool.pending() == 5);
  CHECK_FALSE(file_exists(dir.path() / "started-2"));
  touch(dir.path() / "go");
  const auto results = pool.wait();
  CHECK(results.successful());
  for (int i = 0; i < 5; ++i) CHECK(file_exists(dir.path() / ("started-" + std::to_string(i))));
  CHECK(pool.running().empty());
}

TEST_CASE("start streams output live, with the stream type and key") {
  TempDir dir;
  const auto go = (dir.path() / "go").string();
  Collected seen;
  auto pool = Process::pool([&](Pool& p) {
                p.as("a").command("echo ready-a; echo warn-a >&2; while [ ! -e '" + go + "' ]; do sleep 0.01; done; echo end-a");
                p.as("b").command("echo ready-b");
              }).start(seen.callback());
  // Output arrives while "a" still runs: nobody is in wait() yet.
  REQUIRE(eventually([&] { return seen.text_of("a", OutputType::out) == "ready-a\n"; }));
  CHECK(eventually([&] { return seen.text_of("a", OutputType::err) == "warn-a\n"; }));
  CHECK(eventually([&] { return seen.text_of("b", OutputType::out) == "ready-b\n"; }));
  touch(go);
  const auto results = pool.wait();
  CHECK(seen.text_of("a", OutputType::out) == "ready-a\nend-a\n");
  CHECK(results["a"].output() == "ready-a\nend-a\n");
  CHECK(results["a"].error_output() == "warn-a\n");
}

TEST_CASE("large output on both streams neither hangs nor loses a byte") {
  const auto result = Process::run("head -c 3000000 /dev/zero; head -c 2000000 /dev/zero >&2");
  CHECK(result.successful());
  CHECK(result.output().size() == 3000000);
  CHECK(result.error_output().size() == 2000000);
}

TEST_CASE("signal reaches every running process of a pool") {
  auto pool = Process::pool([](Pool& p) {
                for (const char* key : {"x", "y"}) {
                  p.as(key).command("trap 'echo got-usr1; exit 7' USR1; echo up; while :; do sleep 0.02; done");
                }
              }).start();
  REQUIRE(eventually([&] { return pool.running().size() == 2; }));
  // The traps are set once each shell has printed; give both the chance (bounded).
  std::atomic<int> up{0};
  (void)up;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline && !pool.wait_for(50ms)) pool.signal(SIGUSR1);
  const auto results = pool.wait();
  for (const char* key : {"x", "y"}) {
    // Either the trap ran (exit 7) or the signal came before the trap was set (killed by USR1).
    const auto& result = results[key];
    CHECK((result.exit_code() == 7 || result.exit_code() == 128 + SIGUSR1));
  }
}

TEST_CASE("stop ends what runs and starts nothing more") {
  auto pool = Process::pool([](Pool& p) {
                p.as("a").command({"sleep", "30"});
                p.as("b").command({"sleep", "30"});
                p.as("never").command({"echo", "should not run"});
              })
                  .concurrency(2)
                  .start();
  REQUIRE(eventually([&] { return pool.running().size() == 2; }));
  const auto started = std::chrono::steady_clock::now();
  const auto results = pool.stop(1s);
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  CHECK(results["a"].exit_code() == 128 + SIGTERM);
  CHECK(results["b"].exit_code() == 128 + SIGTERM);
  CHECK(results["never"].failed());
  CHECK(results["never"].output().empty());
  CHECK(results["never"].see_in_error_output("stopped before"));
}

TEST_CASE("destroying a started pool stops and reaps its children") {
  Collected seen;
  {
    auto pool = Process::pool([](Pool& p) {
                  p.as("a").command("echo $$; exec sleep 30");
                  p.as("b").command("trap '' TERM; echo $$; while :; do sleep 0.05; done");
                }).start(seen.callback());
    REQUIRE(eventually([&] { return !seen.text_of("a", OutputType::out).empty() && !seen.text_of("b", OutputType::out).empty(); }));
  }
  const pid_t a = std::stoi(seen.text_of("a", OutputType::out));
  const pid_t b = std::stoi(seen.text_of("b", OutputType::out));
  // Reaped by the pool itself: no zombie, not alive.
  CHECK_FALSE(fanout_test::process_alive(a));
  CHECK_FALSE(fanout_test::process_alive(b));
  CHECK(fanout_test::child_count() == 0);
}

TEST_CASE("a pool enforces timeouts while nobody waits on it") {
  auto pool = Process::pool([](Pool& p) { p.command({"sleep", "30"}).timeout(200ms); }).start();
  CHECK(eventually([&] { return pool.pending() == 0; }));
  CHECK(pool.wait()[0].timed_out());
}

TEST_CASE("throw_if_failed names the command and exit code, then the output sections") {
  const auto result = Process::run("echo out-text; echo err-text >&2; exit 4");
  try {
    result.throw_if_failed();
    FAIL("throw_if_failed did not throw");
  } catch (const fanout::ProcessFailed& error) {
    const std::string message = error.what();
    CHECK(message.find("echo out-text; echo err-text >&2; exit 4") != std::string::npos);
    CHECK(message.find("Exit Code: 4") != std::string::npos);
    CHECK(message.find("Output:\n================\nout-text") != std::string::npos);
    CHECK(message.find("Error Output:\n================\nerr-text") != std::string::npos);
    CHECK(error.result().exit_code() == 4);
  }
  CHECK_NOTHROW(Process::run("true").throw_if_failed());
}

TEST_CASE("an output callback that throws does not break the pool; wait rethrows") {
  auto pool = Process::pool([](Pool& p) {
                p.as("a").command("echo a");
                p.as("b").command("sleep 0.1; echo b");
              }).start([](OutputType, std::string_view, const std::string&) { throw std::runtime_error("callback broke"); });
  CHECK_THROWS_WITH(pool.wait(), "callback broke");
  CHECK(pool.pending() == 0);
}

TEST_CASE("an empty pool finishes at once") {
  const auto results = Process::concurrently([](Pool&) {});
  CHECK(results.empty());
  CHECK(results.successful());
}
