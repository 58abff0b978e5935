// Trust (issue 11, docs/security.md): CurveZMQ keys and roles, played as an attacker against the
// real fanout-broker, fanout-worker and fanout tool on loopback. Every attack is shown refused,
// and legitimate work on the same broker unaffected in the same run.
//
// The cast, each a key pair made by `fanout keygen` and laid out as an operator would:
//   broker                  the broker's own pair
//   alice, bob              clients (clients/)
//   worker, other-worker    workers (workers/); `worker` runs the real fanout-worker "victim"
//   admin                   an admin (admins/): the test's own status queries use it
//   carol                   a client not listed yet (the SIGHUP test adds her)
//   rogue                   never listed anywhere
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include <fanout/error.hpp>

#include "child.hpp"
#include "cluster.hpp"
#include "intruder.hpp"
#include "keys.hpp"
#include "scrape.hpp"
#include "task_window.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using fanout_test::Child;
using fanout_test::ChildOptions;
using fanout_test::Finished;
using security_test::Intruder;
using security_test::Kind;
namespace wire = fanout::wire;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The exit code of a wait status, or -1 when it did not exit normally.
int exit_code(int status) { return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

Finished tool(std::vector<std::string> arguments, std::vector<std::string> env = {}) {
  arguments.insert(arguments.begin(), FANOUT_TOOL_PROGRAM);
  return fanout_test::run_to_end(std::move(arguments), ChildOptions{.env = std::move(env), .drop_env = {"FANOUT_"}}, 30s);
}

mode_t mode_of(const fs::path& file) {
  struct stat info {};
  REQUIRE(::stat(file.c_str(), &info) == 0);
  return info.st_mode & 0777;
}

struct Keys {
  fanout_test::TempDir dir;
  fs::path clients = dir.path() / "clients";
  fs::path workers = dir.path() / "workers";
  fs::path admins = dir.path() / "admins";
  fs::path journal = dir.path() / "journal";

  Keys() {
    for (const auto& directory : {clients, workers, admins}) fs::create_directory(directory);
    for (const char* name : {"broker", "alice", "bob", "carol", "worker", "other-worker", "admin", "rogue"}) {
      const auto made = tool({"keygen", (dir.path() / name).string()});
      REQUIRE_MESSAGE(exit_code(made.status) == 0, made.err);
    }
    for (const char* name : {"alice", "bob"}) fs::copy_file(pub(name), clients / (std::string(name) + ".pub"));
    for (const char* name : {"worker", "other-worker"}) fs::copy_file(pub(name), workers / (std::string(name) + ".pub"));
    fs::copy_file(pub("admin"), admins / "admin.pub");
  }

  fs::path key(const std::string& name) const { return dir.path() / (name + ".key"); }
  fs::path pub(const std::string& name) const { return dir.path() / (name + ".pub"); }
  wire::ClientKeys client(const std::string& name) const {
    return wire::ClientKeys{wire::read_secret_key(key(name)), wire::read_public_key(pub("broker"))};
  }
  // FANOUT_KEY and FANOUT_BROKER_KEY of a child that is `name`.
  std::vector<std::string> env(const std::string& name) const {
    return {"FANOUT_KEY=" + key(name).string(), "FANOUT_BROKER_KEY=" + pub("broker").string()};
  }
  std::vector<std::string> broker_arguments() const {
    return {"--key", key("broker").string(), "--clients", clients.string(), "--workers", workers.string(),
            "--admins", admins.string(), "--journal", journal.string(), "--deferred-attempts", "1",
            "--heartbeat-ms", "200", "--liveness-ms", "1200", "--metrics", "127.0.0.1:0"};
  }
  fanout_test::WorkerOptions victim_worker() const {
    return {.processes = 2, .load = {FANOUT_EXAMPLE_TASKS},
            .arguments = {"--key", key("worker").string(), "--broker-key", pub("broker").string(), "--id", "victim",
                          "--log-level", "debug"},  // its log names its executors' ids
            .name = "victim worker"};
  }
};

// A broker with keys, the real worker "victim" (two executors, victim/0/0/<random> and
// victim/1/0/<random>), and
// this test's status queries made as `admin`.
struct SecuredCluster {
  Keys keys;
  fanout_test::ScopedEnv admin_key{"FANOUT_KEY", keys.key("admin").c_str()};
  fanout_test::ScopedEnv broker_key{"FANOUT_BROKER_KEY", keys.pub("broker").c_str()};
  fanout_test::Cluster cluster{fanout_test::ClusterOptions{.broker_arguments = keys.broker_arguments(),
                                                           .workers = {keys.victim_worker()}}};

  const std::string& endpoint() const { return cluster.endpoint(); }
  // Waits until the broker's /metrics counts at least `count` messages refused for `reason`.
  bool refused_at_least(const std::string& reason, double count) {
    const auto url = fanout_test::url_after(cluster.broker().log(), "serving metrics on ");
    REQUIRE(url);
    const std::string series = "fanout_broker_messages_refused_total{reason=\"" + reason + "\"}";
    return fanout_test::eventually([&] { return fanout_test::scrape(*url, series).value_or(0) >= count; });
  }

  // process_remote_client (100 squares, each checked) as `who` (empty: no keys at all).
  Finished run_client(const std::string& who, std::chrono::milliseconds limit = 60s) const {
    std::vector<std::string> env = who.empty() ? std::vector<std::string>{} : keys.env(who);
    env.push_back(cluster.client_env());
    return fanout_test::run_to_end({FANOUT_REMOTE_CLIENT}, ChildOptions{.env = std::move(env), .drop_env = {"FANOUT_"}}, limit);
  }
  // The legitimate work of each test: alice's batch comes back whole and right.
  void legitimate_work_runs() {
    const auto run = run_client("alice");
    INFO(run.out << run.err << cluster.logs());
    CHECK(exit_code(run.status) == 0);
    CHECK(contains(run.out, "ok, 100 results"));
  }
  // The victim is listed with both of its executors (as an admin sees it).
  bool victim_intact() {
    return fanout_test::eventually(
        [&] { return contains(tool({"status", "--broker", endpoint()}, keys.env("admin")).out, "victim (version " FANOUT_VERSION_TEXT "): 2 executor(s)"); }, 10s);
  }
  Intruder intruder(const std::string& who, const std::string& routing_id = {}) {
    return Intruder(context, endpoint(), who.empty() ? std::nullopt : std::optional(keys.client(who)), routing_id);
  }

  zmq::context_t context;
};

SecuredCluster& secured() {
  static SecuredCluster instance;
  return instance;
}

zmq::message_t announce(wire::Announce::Role role, const std::string& worker, const std::string& executor) {
  wire::OutMessage out;
  auto message = out.envelope().initAnnounce();
  message.setRole(role);
  message.setWorkerId(worker);
  message.setExecutorId(executor);
  auto names = message.initTaskNames(2);
  names.set(0, "example.square");
  names.set(1, "example.sleep_ms");
  message.setSlots(1000);
  message.setProcesses(1);
  message.setHost("intruder");
  return out.frame();
}

// A window of one deferred batch: `count` example.square tasks whose argument is text, so that
// each fails on the worker (bad arguments) and, with --deferred-attempts 1, is dead at once.
zmq::message_t deferred_window(std::uint64_t batch, std::uint32_t count) {
  wire::OutMessage out;
  auto window = out.envelope().initTasks();
  std::vector<fanout_test::TaskSpec> tasks;
  for (std::uint32_t i = 0; i < count; ++i) {
    tasks.push_back({i, "example.square", [](wire::Value::Builder args) { args.initTuple(1)[0].setText("not a number"); }});
  }
  fanout_test::fill_tasks(window, batch, count, tasks);
  window.setDeferred(true);
  return out.frame();
}

}  // namespace

TEST_CASE("fanout keygen writes a secret key only its owner can read and a public key, and never overwrites") {
  fanout_test::TempDir dir;
  const fs::path base = dir.path() / "alice";
  const auto made = tool({"keygen", base.string()});
  REQUIRE_MESSAGE(exit_code(made.status) == 0, made.err);
  CHECK(mode_of(dir.path() / "alice.key") == 0600);
  CHECK(mode_of(dir.path() / "alice.pub") == 0644);
  // Each file: comment lines and one 40-character Z85 key; the public one is the secret's half.
  const auto pair = wire::read_secret_key(dir.path() / "alice.key");
  CHECK(pair.secret_key.size() == 40);
  CHECK(wire::read_public_key(dir.path() / "alice.pub") == pair.public_key);
  CHECK(contains(made.out, pair.public_key));
  const std::string secret_text = fanout_test::read_file(dir.path() / "alice.key");
  CHECK(contains(secret_text, "# fanout secret key"));

  // Again: refused, and both files are as they were.
  const auto again = tool({"keygen", base.string()});
  CHECK(exit_code(again.status) == 1);
  CHECK(contains(again.err, "refusing to overwrite"));
  CHECK(fanout_test::read_file(dir.path() / "alice.key") == secret_text);
  // A public key alone in the way also stops it before anything is written.
  fs::remove(dir.path() / "alice.key");
  CHECK(exit_code(tool({"keygen", base.string()}).status) == 1);
  CHECK_FALSE(fs::exists(dir.path() / "alice.key"));
}

TEST_CASE("a secret key that group or others may read is refused by every binary, saying how to fix it") {
  Keys keys;
  REQUIRE(::chmod(keys.key("alice").c_str(), 0640) == 0);
  REQUIRE(::chmod(keys.key("broker").c_str(), 0604) == 0);
  try {
    (void)wire::read_secret_key(keys.key("alice"));
    FAIL("a secret key of mode 0640 was read");
  } catch (const fanout::Error& error) {
    CHECK(contains(error.what(), "chmod 600"));
  }

  const auto status = tool({"status", "--broker", "tcp://127.0.0.1:9", "--key", keys.key("alice").string(), "--broker-key",
                            keys.pub("broker").string()});
  CHECK(exit_code(status.status) == 2);
  CHECK(contains(status.err, "mode is 0640"));

  const auto worker = fanout_test::run_to_end({fanout_test::worker_program(), "--connect", "tcp://127.0.0.1:9", "--key",
                                               keys.key("alice").string(), "--broker-key", keys.pub("broker").string()},
                                              ChildOptions{.drop_env = {"FANOUT_"}}, 30s);
  CHECK(exit_code(worker.status) == 2);
  CHECK(contains(worker.err, "chmod 600"));

  std::vector<std::string> broker{fanout_test::broker_program(), "--bind", "tcp://127.0.0.1:*"};
  auto arguments = keys.broker_arguments();
  broker.insert(broker.end(), arguments.begin(), arguments.end());
  const auto refused = fanout_test::run_to_end(broker, ChildOptions{.drop_env = {"FANOUT_"}}, 30s);
  CHECK(exit_code(refused.status) == 2);
  CHECK(contains(refused.err, "mode is 0604"));
}

TEST_CASE("a broker refuses a non-loopback endpoint without keys, saying why and what to do") {
  const auto refused = fanout_test::run_to_end({fanout_test::broker_program(), "--bind", "tcp://0.0.0.0:*"},
                                               ChildOptions{.drop_env = {"FANOUT_"}}, 30s);
  CHECK(exit_code(refused.status) == 3);
  CHECK(contains(refused.err, "has no keys"));
  CHECK(contains(refused.err, "--key"));
  CHECK(contains(refused.err, "--insecure"));
  // Keys without the directories that say who may connect are a usage error, not an open door.
  Keys keys;
  const auto half = fanout_test::run_to_end(
      {fanout_test::broker_program(), "--bind", "tcp://127.0.0.1:*", "--key", keys.key("broker").string()},
      ChildOptions{.drop_env = {"FANOUT_"}}, 30s);
  CHECK(exit_code(half.status) == 2);
  CHECK(contains(half.err, "--clients"));
}

TEST_CASE("peers without keys or with an unlisted key cannot connect, and fail with one clear error in time") {
  auto& s = secured();
  // Both at once: each gives up after the client's connect timeout (4 s of silence).
  const auto started = std::chrono::steady_clock::now();
  Child keyless({FANOUT_REMOTE_CLIENT}, ChildOptions{.env = {s.cluster.client_env()}, .drop_env = {"FANOUT_"}});
  auto rogue_env = s.keys.env("rogue");
  rogue_env.push_back(s.cluster.client_env());
  Child rogue({FANOUT_REMOTE_CLIENT}, ChildOptions{.env = rogue_env, .drop_env = {"FANOUT_"}});
  const int keyless_code = exit_code(*keyless.wait_exit(30s));
  const int rogue_code = exit_code(*rogue.wait_exit(30s));
  CHECK(std::chrono::steady_clock::now() - started < 20s);
  INFO(keyless.out() << rogue.out());
  CHECK(keyless_code == 1);
  CHECK(rogue_code == 1);
  CHECK(contains(keyless.out(), "cannot reach the broker at " + s.endpoint()));
  CHECK(contains(keyless.out(), "a broker with keys answers only peers with a listed key"));
  CHECK(contains(rogue.out(), "cannot reach the broker at " + s.endpoint()));
  CHECK(contains(rogue.out(), "refused this peer's key"));
  // The broker says whom it turned away, once, by key.
  const std::string rogue_key = wire::read_secret_key(s.keys.key("rogue")).public_key;
  CHECK(fanout_test::eventually([&] { return contains(s.cluster.broker().log(), "its key " + rogue_key + " is not listed"); }));

  // Nor can a hand-made peer without keys get as far as a heartbeat's answer.
  Intruder bare = s.intruder("");
  bare.send(announce(wire::Announce::Role::EXECUTOR, "bare", "bare/0/0"));
  bare.listen(1s);
  CHECK(bare.count(Kind::ERROR) + bare.count(Kind::HEARTBEAT) + bare.count(Kind::TASKS) == 0);

  s.legitimate_work_runs();
}

// ZeroMQ never tries a connection again once the broker refused its handshake: a client's second
// batch on that socket had nowhere to send, and its blocking send waited forever.
TEST_CASE("a client without keys gets the same clear error on its next batch, not a hang") {
  auto& s = secured();
  const auto started = std::chrono::steady_clock::now();
  Child keyless({FANOUT_REMOTE_CLIENT, "--twice"}, ChildOptions{.env = {s.cluster.client_env()}, .drop_env = {"FANOUT_"}});
  const auto exited = keyless.wait_exit(30s);
  INFO(keyless.out());
  REQUIRE(exited.has_value());
  CHECK(exit_code(*exited) == 1);
  CHECK(std::chrono::steady_clock::now() - started < 20s);
  CHECK(contains(keyless.out(), "batch 1: cannot reach the broker at " + s.endpoint()));
  CHECK(contains(keyless.out(), "batch 2: cannot reach the broker at " + s.endpoint()));
}

TEST_CASE("a worker key cannot submit a batch") {
  auto& s = secured();
  const auto run = s.run_client("worker");
  INFO(run.out);
  CHECK(exit_code(run.status) == 1);
  CHECK(contains(run.out, "submitting or deferring a batch needs a client key"));
  s.legitimate_work_runs();
}

TEST_CASE("a client key announcing itself as a worker gets no task of anyone's") {
  auto& s = secured();
  // The rogue worker of issue 11 (which took 87 of 100 tasks): alice's key, an executor serving
  // what the victim serves, with plenty of credit.
  Intruder rogue = s.intruder("alice", "rogue/0/0");
  rogue.send(announce(wire::Announce::Role::SUPERVISOR, "rogue", ""));
  rogue.send(announce(wire::Announce::Role::EXECUTOR, "rogue", "rogue/0/0"));
  REQUIRE(rogue.wait_for(Kind::ERROR, 10s));
  CHECK(contains(rogue.errors(), "announcing as a worker needs a worker key"));
  s.legitimate_work_runs();  // 100 tasks while the rogue listens
  rogue.listen(500ms);
  CHECK(rogue.count(Kind::TASKS) == 0);
  INFO(s.cluster.broker().log());
  CHECK(contains(s.cluster.broker().log(), "refused 'announce' from rogue/0/0"));
  CHECK(s.refused_at_least("not_a_worker", 2));  // both announces, though only the first was answered
}

TEST_CASE("another worker's key can neither report for the victim's executors nor take their ids") {
  auto& s = secured();
  REQUIRE(s.victim_intact());
  // A worker of its own, legitimately: other-worker's key, worker "intruder".
  Intruder supervisor = s.intruder("other-worker", "intruder-supervisor");
  supervisor.send(announce(wire::Announce::Role::SUPERVISOR, "intruder", ""));
  REQUIRE(supervisor.wait_for(Kind::HEARTBEAT, 10s));  // accepted: the broker heartbeats it at once
  // A forged executorLost for the victim's first executor, which would fail its work as
  // worker_lost. Its real id (which outsiders cannot guess: it ends in 64 random bits) from the
  // victim's log, as if the attacker had learned it.
  const std::string victim_log = s.cluster.worker(0).out() + s.cluster.worker(0).err();
  const auto named = victim_log.find("started executor victim/0/0/");
  REQUIRE(named != std::string::npos);
  const std::string first_executor = victim_log.substr(named + 17, std::string("victim/0/0/").size() + 16);
  {
    wire::OutMessage out;
    auto lost = out.envelope().initExecutorLost();
    lost.setExecutorId(first_executor);
    lost.setSignal(SIGKILL);
    supervisor.send(out.frame());
  }
  // The victim's worker id, announced by a supervisor of another key.
  Intruder squatter = s.intruder("other-worker", "squat-supervisor");
  squatter.send(announce(wire::Announce::Role::SUPERVISOR, "victim", ""));
  // Executor ids of the victim's as an outsider would guess them (the first executor's, the
  // next one a replacement would take): the real ones end in 64 random bits, so these take no
  // live connection over, and their announces are refused.
  Intruder live_id = s.intruder("other-worker", "victim/0/0");
  live_id.send(announce(wire::Announce::Role::EXECUTOR, "victim", "victim/0/0"));
  Intruder next_id = s.intruder("other-worker", "victim/0/1");
  next_id.send(announce(wire::Announce::Role::EXECUTOR, "victim", "victim/0/1"));
  // Its own worker id, with an executor id outside it.
  Intruder outside = s.intruder("other-worker", "stranger/1/9");
  outside.send(announce(wire::Announce::Role::EXECUTOR, "intruder", "stranger/1/9"));
  REQUIRE(squatter.wait_for(Kind::ERROR, 10s));
  REQUIRE(live_id.wait_for(Kind::ERROR, 10s));
  REQUIRE(next_id.wait_for(Kind::ERROR, 10s));
  REQUIRE(outside.wait_for(Kind::ERROR, 10s));
  CHECK(contains(squatter.errors(), "worker id victim belongs to another key"));
  CHECK(contains(live_id.errors(), "worker id victim belongs to another key"));
  CHECK(contains(next_id.errors(), "worker id victim belongs to another key"));
  CHECK(contains(outside.errors(), "is not of its worker intruder"));
  CHECK(s.refused_at_least("foreign_executor", 5));
  CHECK(fanout_test::eventually(
      [&] { return contains(s.cluster.broker().log(), "refused a report of a lost executor from intruder-supervisor"); }));
  // The victim keeps both executors, and serves.
  CHECK(s.victim_intact());
  s.legitimate_work_runs();
  for (Intruder* squatting : {&live_id, &next_id}) {
    squatting->listen(200ms);
    CHECK(squatting->count(Kind::TASKS) == 0);
  }
}

TEST_CASE("the status needs an admin key") {
  auto& s = secured();
  const auto as_client = tool({"status", "--broker", s.endpoint(), "--key", s.keys.key("alice").string(), "--broker-key",
                               s.keys.pub("broker").string()});
  CHECK(exit_code(as_client.status) == 4);
  CHECK(contains(as_client.err, "the broker's status needs an admin key"));
  CHECK_FALSE(contains(as_client.out, "victim"));
  CHECK(s.refused_at_least("not_an_admin", 1));
  const auto as_admin = tool({"status", "--broker", s.endpoint()}, s.keys.env("admin"));
  CHECK(exit_code(as_admin.status) == 0);
  CHECK(contains(as_admin.out, "victim"));
}

TEST_CASE("a client lists and drops its own deferred tasks only; an admin sees every one") {
  auto& s = secured();
  // alice defers a batch whose two tasks die at once (bad arguments, one attempt).
  Intruder alice = s.intruder("alice");
  alice.send(deferred_window(4242, 2));
  const auto ack = alice.wait_for(Kind::ACK, 20s);
  REQUIRE(ack);
  const std::string receipt = ack->envelope().getAck().getReceipt().cStr();
  REQUIRE_FALSE(receipt.empty());
  const auto list = [&](const std::string& who, std::vector<std::string> more = {}) {
    std::vector<std::string> arguments{"deferred", "list", "--broker", s.endpoint(), "--json"};
    arguments.insert(arguments.end(), more.begin(), more.end());
    return tool(arguments, s.keys.env(who));
  };
  REQUIRE(fanout_test::eventually([&] { return contains(list("admin").out, "\"receipt\": \"" + receipt + "\""); }, 20s));
  CHECK(contains(list("alice").out, "\"receipt\": \"" + receipt + "\""));

  // bob sees none of it, and cannot name it either.
  CHECK_FALSE(contains(list("bob").out, "\"receipt\": \"" + receipt + "\""));
  const auto named = list("bob", {"--receipt", receipt});
  CHECK(exit_code(named.status) == 3);
  CHECK(contains(named.err, "among this key's own"));
  const auto dropped = tool({"deferred", "drop", "--broker", s.endpoint(), "--receipt", receipt}, s.keys.env("bob"));
  CHECK(exit_code(dropped.status) == 3);
  CHECK(contains(list("alice").out, "\"receipt\": \"" + receipt + "\""));  // still there
  // A worker key has no business here at all.
  const auto as_worker = list("worker");
  CHECK(exit_code(as_worker.status) != 0);

  // alice drops her own.
  const auto own = tool({"deferred", "drop", "--broker", s.endpoint(), "--receipt", receipt}, s.keys.env("alice"));
  INFO(own.out << own.err);
  CHECK(exit_code(own.status) == 0);
  CHECK_FALSE(contains(list("admin").out, "\"receipt\": \"" + receipt + "\""));
}

TEST_CASE("SIGHUP adds and removes keys: new connections and old ones follow the directories") {
  Keys keys;
  fanout_test::ScopedEnv admin_key{"FANOUT_KEY", keys.key("admin").c_str()};
  fanout_test::ScopedEnv broker_key{"FANOUT_BROKER_KEY", keys.pub("broker").c_str()};
  fanout_test::Cluster cluster{fanout_test::ClusterOptions{.broker_arguments = keys.broker_arguments(),
                                                           .workers = {keys.victim_worker()}}};
  const auto client = [&](const std::string& who) {
    auto env = keys.env(who);
    env.push_back(cluster.client_env());
    return fanout_test::run_to_end({FANOUT_REMOTE_CLIENT}, ChildOptions{.env = env, .drop_env = {"FANOUT_"}}, 60s);
  };
  zmq::context_t context;
  // alice, connected before the change, keeps her socket open through it.
  Intruder alice(context, cluster.endpoint(), keys.client("alice"));
  alice.send(deferred_window(1, 1));
  REQUIRE(alice.wait_for(Kind::ACK, 20s));

  // carol is not listed yet; then she is, and alice no longer is.
  fs::copy_file(keys.pub("carol"), keys.clients / "carol.pub");
  fs::remove(keys.clients / "alice.pub");
  CHECK(exit_code(client("alice").status) == 0);  // nothing changed before the signal
  cluster.broker().process().signal(SIGHUP);
  REQUIRE(fanout_test::eventually([&] { return contains(cluster.broker().log(), "keys reloaded"); }));
  const std::string log = cluster.broker().log();
  CHECK(contains(log, "added carol.pub"));
  CHECK(contains(log, "removed alice.pub"));

  const auto carol = client("carol");
  INFO(carol.out << cluster.logs());
  CHECK(exit_code(carol.status) == 0);
  const auto refused = client("alice");
  CHECK(exit_code(refused.status) == 1);
  CHECK(contains(refused.out, "refused this peer's key"));
  // Her old connection lost its role with her key: its next window is refused.
  alice.send(deferred_window(2, 1));
  const auto answer = alice.wait_for(Kind::ACK, 10s);
  REQUIRE(answer);
  CHECK(answer->envelope().getAck().hasRefused());
  CHECK(contains(answer->envelope().getAck().getRefused().getMessage().cStr(), "not listed"));

  // An unreadable directory keeps the keys in force, and says so.
  fs::remove_all(keys.admins);
  cluster.broker().process().signal(SIGHUP);
  CHECK(fanout_test::eventually([&] { return contains(cluster.broker().log(), "keys not reloaded"); }));
  CHECK(exit_code(client("carol").status) == 0);
}
