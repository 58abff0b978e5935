// Remote pools: fanout::Process pools pointed at a standalone fanout-broker run their commands on
// fanout-worker processes started with --allow-shell; all separate processes over loopback TCP.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fanout/process.hpp>

#include "cluster.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using fanout::OutputType;
using fanout::Pool;
using fanout::Process;
using fanout_test::eventually;
using fanout_test::touch;

namespace {

// A broker with one worker of two executors; `allow_shell` says whether the worker runs shell
// commands.
fanout_test::ClusterOptions shell_cluster_options(bool allow_shell) {
  return {.broker_arguments = {"--heartbeat-ms", "200", "--liveness-ms", "1200"},
          .workers = {{.processes = 2, .allow_shell = allow_shell}}};
}

fanout_test::Cluster& shell_cluster() {
  static fanout_test::Cluster instance(shell_cluster_options(true));
  return instance;
}

struct Collected {
  std::mutex mutex;
  std::string text;
  fanout::OutputCallback callback(std::string key_wanted, OutputType type_wanted) {
    return [this, key_wanted, type_wanted](OutputType type, std::string_view chunk, const std::string& key) {
      const std::lock_guard lock(mutex);
      if (key == key_wanted && type == type_wanted) text.append(chunk);
    };
  }
  std::string get() {
    const std::lock_guard lock(mutex);
    return text;
  }
};

}  // namespace

TEST_CASE("a remote pool runs its commands on --allow-shell workers, results by key in order") {
  auto& cluster = shell_cluster();
  const auto results = Process::pool([](Pool& p) {
                         p.as("greet").command("echo hello from $0; echo warn >&2; exit 3");
                         p.as("argv").command({"printf", "%s|", "a b", "$HOME"});
                         p.command("true");
                       })
                           .broker(cluster.endpoint())
                           .wait();
  INFO(cluster.logs());
  REQUIRE(results.size() == 3);
  CHECK(results["greet"].exit_code() == 3);
  CHECK(results["greet"].output() == "hello from /bin/sh\n");
  CHECK(results["greet"].error_output() == "warn\n");
  CHECK(results["greet"].ran_on().find("worker") == 0);
  CHECK(results["argv"].output() == "a b|$HOME|");
  CHECK(results["2"].successful());
}

TEST_CASE("a remote pool streams output live under each key") {
  auto& cluster = shell_cluster();
  const auto go = cluster.dir() / "go-live";
  Collected seen;
  auto pool = Process::pool([&](Pool& p) {
                p.as("a").command("echo ready; while [ ! -e '" + go.string() + "' ]; do sleep 0.01; done; echo end");
              })
                  .broker(cluster.endpoint())
                  .start(seen.callback("a", OutputType::out));
  REQUIRE(eventually([&] { return seen.get() == "ready\n"; }, 20s));
  touch(go);
  const auto results = pool.wait();
  CHECK(seen.get() == "ready\nend\n");
  CHECK(results["a"].output() == "ready\nend\n");
}

TEST_CASE("a remote timeout kills the command on the worker and keeps its output") {
  auto& cluster = shell_cluster();
  const auto result = Process::broker(cluster.endpoint()).timeout(300ms).run("echo partial; exec sleep 30");
  CHECK(result.timed_out());
  CHECK(result.exit_code() == 128 + SIGTERM);
  CHECK(result.output() == "partial\n");
  const auto idle = Process::broker(cluster.endpoint()).idle_timeout(300ms).run("echo a; exec sleep 30");
  CHECK(idle.idle_timed_out());
}

TEST_CASE("path, env, input and quietly travel with a remote command") {
  auto& cluster = shell_cluster();
  const auto results = Process::pool([&](Pool& p) {
                         p.as("path").command("pwd").path(cluster.dir().string());
                         // The worker's environment, changed: HOME is set there, and removed for this command.
                         p.as("env").command("echo $NEW-${HOME:-nohome}").env("NEW", "v").without_env("HOME");
                         p.as("input").command("cat").input("0");
                         p.as("empty-input").command("cat; echo end").input("");
                         p.as("quiet").command("echo hidden").quietly();
                       })
                           .broker(cluster.endpoint())
                           .wait();
  CHECK(std::filesystem::equivalent(results["path"].output().substr(0, results["path"].output().size() - 1),
                                    cluster.dir()));
  CHECK(results["env"].output() == "v-nohome\n");
  CHECK(results["input"].output() == "0");
  CHECK(results["empty-input"].output() == "end\n");
  CHECK(results["quiet"].successful());
  CHECK(results["quiet"].output().empty());
}

TEST_CASE("a command that does not exist fails remotely with a clear message") {
  auto& cluster = shell_cluster();
  const auto result = Process::broker(cluster.endpoint()).run({"fanout-no-such-program-xyz"});
  CHECK(result.exit_code() == 127);
  CHECK(result.see_in_error_output("command not found"));
}

TEST_CASE("a remote pool's concurrency cap holds") {
  auto& cluster = shell_cluster();
  const auto dir = cluster.dir() / "cap";
  std::filesystem::create_directories(dir);
  auto pool = Process::pool([&](Pool& p) {
                for (int i = 0; i < 3; ++i) {
                  p.as("p" + std::to_string(i))
                      .command("touch '" + dir.string() + "/started-'\"$KEY\"; while [ ! -e '" + dir.string() +
                               "/go' ]; do sleep 0.01; done")
                      .env("KEY", std::to_string(i));
                }
              })
                  .concurrency(1)
                  .broker(cluster.endpoint())
                  .start();
  REQUIRE(eventually([&] { return std::filesystem::exists(dir / "started-0"); }, 20s));
  // The worker has two executors, yet the second command waits for the first.
  CHECK_FALSE(eventually([&] { return std::filesystem::exists(dir / "started-1"); }, 500ms));
  touch(dir / "go");
  CHECK(pool.wait().successful());
  CHECK(std::filesystem::exists(dir / "started-2"));
}

TEST_CASE("a remote pool's output callback slower than the broker's patience loses no work") {
  auto& cluster = shell_cluster();
  const auto runs = cluster.dir() / "slow-callback-runs";
  std::filesystem::remove(runs);
  std::atomic<int> calls{0};
  // The session's heartbeats must go on while the callback keeps its thread: the broker drops a
  // client silent for its liveness (1.2 s here) and stops its running command, and the session,
  // told it is unknown, sent the command again. The command outlives that silence.
  const auto results =
      Process::pool([&](Pool& p) { p.as("a").command("echo ran >> '" + runs.string() + "'; echo first; sleep 2; echo second"); })
          .broker(cluster.endpoint())
          .start([&](OutputType, std::string_view, const std::string&) {
            if (calls++ == 0) std::this_thread::sleep_for(3s);  // the slowness under test, not a wait
          })
          .wait();
  INFO(cluster.logs());
  CHECK(calls.load() >= 1);
  CHECK(results["a"].successful());
  CHECK(results["a"].output() == "first\nsecond\n");
  std::ifstream file(runs);
  std::string all((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  CHECK(all == "ran\n");
}

TEST_CASE("stopping a remote pool kills its commands on the worker") {
  auto& cluster = shell_cluster();
  Collected seen;
  auto pool = Process::pool([](Pool& p) { p.as("a").command("echo $$; exec sleep 30"); })
                  .broker(cluster.endpoint())
                  .start(seen.callback("a", OutputType::out));
  REQUIRE(eventually([&] { return !seen.get().empty(); }, 20s));
  const pid_t command = std::stoi(seen.get());
  const auto results = pool.stop(0ms);
  CHECK(results["a"].failed());
  CHECK(eventually([&] { return !fanout_test::process_alive(command); }, 10s));
  // The worker replaced the executor it lost and serves again.
  CHECK(Process::broker(cluster.endpoint()).run("echo again").output() == "again\n");
}

TEST_CASE("a command dies with its worker, even when the worker's supervisor and executors are SIGKILLed") {
  // Its own cluster: this test kills the worker. The worker's supervisor goes first, so that it
  // cannot clean up after its executors; then the executors.
  fanout_test::Cluster cluster({.broker_arguments = {"--heartbeat-ms", "200", "--liveness-ms", "1200"},
                                .workers = {{.processes = 1, .allow_shell = true}}});
  const auto first_run = cluster.dir() / "first-run";
  Collected seen;
  // The first run leaves a background process in its group and waits; a run after it (on the
  // next worker) just says so.
  auto pool = Process::pool([&](Pool& p) {
                p.as("a").command("if [ -e '" + first_run.string() + "' ]; then echo again; exit 0; fi; touch '" +
                                  first_run.string() + "'; sleep 300 & echo $$ $!; wait");
              })
                  .broker(cluster.endpoint())
                  .start(seen.callback("a", OutputType::out));
  REQUIRE(eventually([&] { return seen.get().find('\n') != std::string::npos; }, 20s));
  std::istringstream pids(seen.get());
  pid_t shell = 0;
  pid_t background = 0;
  pids >> shell >> background;
  REQUIRE(shell > 0);
  REQUIRE(background > 0);

  const pid_t supervisor = cluster.worker(0).pid();
  const std::vector<pid_t> executors = fanout_test::children_of(supervisor);
  REQUIRE_FALSE(executors.empty());
  ::kill(supervisor, SIGKILL);
  for (const pid_t executor : executors) ::kill(executor, SIGKILL);
  CHECK(eventually([&] { return fanout_test::process_ended(shell) && fanout_test::process_ended(background); }, 10s));

  // Legitimate work goes on: the task runs again, once, on the next worker.
  const auto next = cluster.start_worker({.processes = 1, .allow_shell = true});
  const auto results = pool.wait();
  INFO(cluster.logs());
  CHECK(results["a"].successful());
  CHECK(results["a"].output() == "again\n");
}

TEST_CASE("FANOUT_PROCESS_BROKER sends pools to remote workers without a code change") {
  auto& cluster = shell_cluster();
  fanout_test::ScopedEnv broker("FANOUT_PROCESS_BROKER", cluster.endpoint().c_str());
  const auto result = Process::run("echo remote");
  CHECK(result.output() == "remote\n");
  CHECK(result.ran_on().find("worker") == 0);
}

TEST_CASE("a worker without --allow-shell never runs a shell command, and the client is told why") {
  fanout_test::Cluster plain(shell_cluster_options(false));
  const auto marker = plain.dir() / "must-not-exist";
  const auto result = Process::broker(plain.endpoint()).run("touch '" + marker.string() + "'");
  CHECK(result.failed());
  CHECK(result.see_in_error_output("--allow-shell"));
  CHECK_FALSE(std::filesystem::exists(marker));
}

TEST_CASE("a remote pool without a broker fails each process with a clear message") {
  // Nothing listens on this port (bound and closed by the OS's choice would race; port 1 needs root
  // to bind and nobody does here).
  const auto result = Process::broker("tcp://127.0.0.1:1").run("true");
  CHECK(result.failed());
  CHECK(result.see_in_error_output("no word from the broker"));
}

TEST_CASE("remote pools leave nothing at the broker: after they finish, and after a stop") {
  auto& cluster = shell_cluster();
  const auto idle = [&] { return cluster.wait_idle(10s); };
  // More processes than the broker may hold at once from one pool are no concern of the caller.
  const auto many = Process::pool([](Pool& p) {
                      for (int i = 0; i < 200; ++i) p.command("echo " + std::to_string(i));
                    })
                        .concurrency(2)
                        .broker(cluster.endpoint())
                        .wait();
  REQUIRE(many.size() == 200);
  CHECK(many.successful());
  CHECK(many[199].output() == "199\n");
  CHECK(idle());

  auto pool = Process::pool([](Pool& p) {
                for (int i = 0; i < 20; ++i) p.command("exec sleep 30");
              })
                  .concurrency(2)
                  .broker(cluster.endpoint())
                  .start();
  REQUIRE(eventually([&] { return !pool.running().empty(); }, 10s));
  const auto stopped = pool.stop(0ms);
  CHECK(stopped.size() == 20);
  for (const auto& result : stopped) CHECK(result.failed());
  CHECK(idle());
  CHECK(Process::broker(cluster.endpoint()).run("echo again").output() == "again\n");
}

TEST_CASE("a remote pool survives its broker SIGKILLed and restarted: every command's result and output, once") {
  auto& cluster = shell_cluster();
  const auto dir = cluster.dir() / "restart";
  std::filesystem::create_directories(dir);
  std::mutex mutex;
  std::map<std::string, std::string> streamed;  // stdout by key, as it reaches the caller
  auto pool = Process::pool([&](Pool& p) {
                for (int i = 0; i < 4; ++i) {
                  p.as("p" + std::to_string(i))
                      .command("touch '" + dir.string() + "/started-'\"$KEY\"; while [ ! -e '" + dir.string() +
                               "/go' ]; do sleep 0.01; done; echo done-$KEY")
                      .env("KEY", std::to_string(i));
                }
              })
                  .broker(cluster.endpoint())
                  .start([&](OutputType type, std::string_view chunk, const std::string& key) {
                    const std::lock_guard lock(mutex);
                    if (type == OutputType::out) streamed[key].append(chunk);
                  });
  // Two commands run (two executors), two wait at the broker when it dies.
  REQUIRE(eventually([&] { return std::filesystem::exists(dir / "started-0") && std::filesystem::exists(dir / "started-1"); }, 20s));
  cluster.broker().restart();
  touch(dir / "go");
  const auto results = pool.wait();
  INFO(cluster.logs());
  REQUIRE(results.size() == 4);
  const std::lock_guard lock(mutex);
  for (int i = 0; i < 4; ++i) {
    const std::string key = "p" + std::to_string(i);
    CHECK(results[key].successful());
    CHECK(results[key].output() == "done-" + std::to_string(i) + "\n");
    CHECK(streamed[key] == "done-" + std::to_string(i) + "\n");  // once, though the two running at the restart may have run twice
  }
}
