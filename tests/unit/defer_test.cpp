// defer: every batch form on every driver hands the batch off and returns a receipt once it is safe.
// sync runs it inline, fork detaches a runner that outlives the caller, process waits for the
// broker's journaled ack (here a fake broker on a real ZeroMQ socket).
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <fanout/broker/broker.hpp>
#include <fanout/fanout.hpp>
#include <zmq.hpp>

#include "broker_thread.hpp"
#include "child.hpp"
#include "fake_router.hpp"
#include "test_support.hpp"
#include "transport.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using fanout_test::eventually;
using fanout_test::process_ended;
using fanout_test::read_file;
using fanout_test::ScopedEnv;
using fanout_test::stat_field;
using fanout_test::TempDir;

namespace {

std::mutex recorded_mutex;
std::vector<int> recorded;

const fanout::Task defer_record{"defer.record", [](int x) {
                                  const std::lock_guard lock(recorded_mutex);
                                  recorded.push_back(x);
                                  return x;
                                }};
const fanout::Task defer_fail{"defer.fail", [](std::string why) -> int { throw std::runtime_error(why); }};

std::vector<int> take_recorded() {
  const std::lock_guard lock(recorded_mutex);
  return std::exchange(recorded, {});
}

// ---- a fake broker: a ROUTER on loopback TCP, answering the first `tasks` window as told ----

struct SeenTask {
  std::uint64_t batch_id = 0;
  std::uint32_t index = 0;
  std::string name;
  std::optional<std::string> key;
};

struct SeenWindow {
  std::uint64_t batch_id = 0;
  std::uint32_t total = 0;
  bool deferred = false;
  std::vector<SeenTask> tasks;
};

class FakeBroker {
 public:
  enum class Answer { receipt, refuse, silence };

  FakeBroker(Answer answer, std::string text)
      : answer_(answer),
        text_(std::move(text)),
        router_([this](const std::string& identity, zmq::message_t& frame) { handle(identity, frame); }) {}

  const std::string& endpoint() const { return router_.endpoint(); }

  // Every message received so far, and the `tasks` windows among them.
  std::size_t messages() const {
    const std::lock_guard lock(mutex_);
    return messages_;
  }
  std::vector<SeenWindow> windows() const {
    const std::lock_guard lock(mutex_);
    return windows_;
  }

 private:
  void handle(const std::string& identity, zmq::message_t& frame) {
    const std::lock_guard lock(mutex_);
    ++messages_;
    auto message = fanout::wire::InMessage::parse(std::move(frame), nullptr, fanout::wire::kDefaultMaxFrameBytes,
                                                  fanout::wire::InMessage::Check::whole);
    if (!message || message->envelope().which() != fanout::wire::Envelope::TASKS) return;
    const auto window = message->envelope().getTasks();
    SeenWindow seen{window.getBatchId(), window.getTotal(), window.getDeferred(), {}};
    for (const auto task : window.getTasks()) {
      seen.tasks.push_back(SeenTask{task.getBatchId(), task.getIndex(), task.getName().cStr(),
                                    task.getHasKey() ? std::optional<std::string>(task.getKey().cStr()) : std::nullopt});
    }
    windows_.push_back(seen);
    if (answer_ == Answer::silence) return;
    fanout::wire::OutMessage out;
    auto ack = out.envelope().initAck();
    ack.setBatchId(seen.batch_id);
    if (answer_ == Answer::receipt) {
      ack.setAccepted(static_cast<std::uint32_t>(seen.tasks.size()));
      ack.setReceipt(text_);
    } else {
      auto refused = ack.initRefused();
      refused.setKind(fanout::wire::ErrorKind::REFUSED);
      refused.setMessage(text_);
      refused.setRanOn("broker");
    }
    router_.send(identity, out.frame());
  }

  Answer answer_;
  std::string text_;
  mutable std::mutex mutex_;
  std::size_t messages_ = 0;
  std::vector<SeenWindow> windows_;
  fanout_test::FakeRouter router_;  // last: serves once everything above exists
};

// The real broker library on a thread, on loopback TCP, with a journal in `journal` (none when
// empty); stopped and joined at the end of the scope.
class RealBroker {
 public:
  explicit RealBroker(const fs::path& journal) : broker_(config(journal), context_) {}

  const std::string& endpoint() const { return broker_.endpoint(); }
  const fanout::broker::Counters& counters() const { return broker_.counters(); }

 private:
  static fanout::broker::Config config(const fs::path& journal) {
    fanout::broker::Config config;
    config.endpoints = {"tcp://127.0.0.1:*"};
    config.journal = journal;
    return config;
  }

  zmq::context_t context_;
  fanout_test::RunningBroker broker_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// receipts
// ---------------------------------------------------------------------------------------------

TEST_CASE("a receipt prints its id, driver and task count") {
  const fanout::Receipt receipt("r-42", "process", 3);
  CHECK(receipt.id() == "r-42");
  CHECK(receipt.driver() == "process");
  CHECK(receipt.tasks() == 3);
  CHECK(fanout::to_string(receipt) == "r-42 (process driver, 3 tasks)");
  std::ostringstream printed;
  printed << fanout::Receipt("fork-7", "fork", 1);
  CHECK(printed.str() == "fork-7 (fork driver, 1 task)");
}

// ---------------------------------------------------------------------------------------------
// sync
// ---------------------------------------------------------------------------------------------

TEST_CASE("sync defer runs the batch inline and returns a receipt") {
  take_recorded();
  const auto sync = fanout::Concurrency::driver("sync");
  const fanout::Receipt first = sync.defer(defer_record(1), defer_record(2));
  CHECK(take_recorded() == std::vector<int>{1, 2});  // already ran when defer returned
  CHECK(first.id().rfind("sync-", 0) == 0);
  CHECK(first.driver() == "sync");
  CHECK(first.tasks() == 2);

  int calls = 0;
  const fanout::Receipt second = sync.defer([&] { ++calls; }, [&] { return ++calls; });
  CHECK(calls == 2);
  CHECK(second.id().rfind("sync-", 0) == 0);
  CHECK(second.id() != first.id());
}

TEST_CASE("sync defer takes vectors and keyed batches, on the facade too") {
  const ScopedEnv driver("FANOUT_DRIVER", "sync");
  take_recorded();
  const std::vector<fanout::Call<int>> calls{defer_record(3), defer_record(4), defer_record(5)};
  CHECK(fanout::Concurrency::defer(calls).tasks() == 3);
  CHECK(take_recorded() == std::vector<int>{3, 4, 5});

  const std::vector<std::pair<std::string, fanout::Call<int>>> keyed{{"a", defer_record(6)}, {"b", defer_record(7)}};
  const fanout::Receipt receipt = fanout::Concurrency::defer(keyed);
  CHECK(receipt.tasks() == 2);
  CHECK(receipt.driver() == "sync");
  CHECK(take_recorded() == std::vector<int>{6, 7});

  const std::vector<std::pair<std::string, fanout::Call<int>>> twice{{"a", defer_record(8)}, {"a", defer_record(9)}};
  CHECK_THROWS_WITH_AS(fanout::Concurrency::defer(twice), doctest::Contains("appears twice"), fanout::Error);
  CHECK(take_recorded().empty());  // refused before anything ran
}

TEST_CASE("sync defer runs the whole batch, then rethrows the first failure") {
  take_recorded();
  const std::vector<std::pair<std::string, fanout::Call<int>>> keyed{
      {"ok", defer_record(1)}, {"first", defer_fail("first went wrong")}, {"second", defer_fail("second too")},
      {"last", defer_record(2)}};
  try {
    (void)fanout::Concurrency::driver("sync").defer(keyed);
    FAIL("defer did not throw");
  } catch (const fanout::TaskError& error) {
    CHECK(error.index() == 1);
    CHECK(error.key() == std::optional<std::string>("first"));
    CHECK(error.remote_message() == "first went wrong");
    CHECK(error.kind() == fanout::ErrorKind::exception);
  }
  CHECK(take_recorded() == std::vector<int>{1, 2});  // the slot after the failures ran too
}

TEST_CASE("an empty deferred batch starts nothing") {
  for (const char* name : {"sync", "fork", "process"}) {
    const fanout::Receipt receipt = fanout::Concurrency::driver(name).defer(std::vector<fanout::Call<int>>{});
    CHECK(receipt.id().empty());
    CHECK(receipt.tasks() == 0);
    CHECK(receipt.driver() == name);
  }
  CHECK(fanout_test::child_count() == 0);
}

// ---------------------------------------------------------------------------------------------
// fork
// ---------------------------------------------------------------------------------------------

TEST_CASE("fork defer with plain callables sees the caller's memory and leaves no child behind") {
  const TempDir dir;
  const std::string secret = "only in the caller's memory " + std::to_string(::getpid());
  const fs::path out = dir.path() / "seen";
  const fanout::Receipt receipt = fanout::Concurrency::driver("fork").defer([&] {
    const auto partial = out.string() + ".partial";
    std::ofstream(partial) << secret;
    fs::rename(partial, out);
  });
  // The intermediate process is reaped and the runner is not our child: nothing of ours remains.
  CHECK(fanout_test::child_count() == 0);
  REQUIRE(receipt.id().rfind("fork-", 0) == 0);
  CHECK(receipt.driver() == "fork");
  CHECK(receipt.tasks() == 1);
  const pid_t runner = std::stoi(receipt.id().substr(5));
  CHECK(fanout_test::parent_of(runner) != ::getpid());
  REQUIRE(eventually([&] { return fs::exists(out); }));
  CHECK(read_file(out) == secret);
  CHECK(eventually([&] { return process_ended(runner); }));
  CHECK(fanout_test::child_count() == 0);
}

TEST_CASE("fork defer's runner outlives a caller that exits right after defer") {
  const TempDir dir;
  const fs::path go = dir.path() / "go";
  const fs::path done = dir.path() / "done";

  // Its stdin is a file (not /dev/null), so that the task's /dev/null below is the driver's doing.
  fanout_test::Child caller({FANOUT_DEFERRING_CALLER_PROGRAM, go.string(), done.string()}, {.input = ""});

  // The caller exits at once: its task cannot finish before the test creates `go`.
  const auto status = caller.wait_exit(10s);
  REQUIRE(status.has_value());
  REQUIRE(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK(fanout_test::child_count() == 0);  // the caller is reaped; nothing else of ours remains

  const std::string receipt = caller.out();
  REQUIRE(receipt.rfind("fork-", 0) == 0);
  const pid_t runner = std::stoi(receipt.substr(5));
  CHECK(fanout_test::process_alive(runner));
  CHECK(!process_ended(runner));
  const auto runner_parent = fanout_test::parent_of(runner);
  CHECK(runner_parent != caller.pid());
  CHECK(runner_parent != ::getpid());
  // A session of its own: neither ours nor the (gone) caller's.
  CHECK(stat_field(runner, 6) != std::to_string(::getsid(0)));
  CHECK(!fs::exists(done));

  std::ofstream(go.string()) << "go";
  REQUIRE(eventually([&] { return fs::exists(done); }, 20s));
  std::istringstream seen(read_file(done));
  pid_t task_parent = 0;
  std::string task_stdin;
  seen >> task_parent >> task_stdin;
  CHECK(task_parent == runner);  // the task ran in a child of the runner, as the fork driver runs it
  CHECK(task_stdin == "/dev/null");
  CHECK(eventually([&] { return process_ended(runner); }));
}

TEST_CASE("fork defer reports failures on the runner's stderr with the receipt") {
  const TempDir dir;
  const fs::path log = dir.path() / "stderr";
  const std::vector<std::pair<std::string, std::function<int()>>> keyed{
      {"fine", [] { return 1; }},
      {"broken", []() -> int { throw std::runtime_error("boom in a deferred task"); }},
      {"slow", [] {
         std::this_thread::sleep_for(30s);  // killed by the per-task timeout long before
         return 3;
       }}};
  std::optional<fanout::Receipt> receipt;
  {
    const fanout_test::RedirectedOutput captured(log, fanout_test::RedirectedOutput::stderr_only);
    receipt = fanout::Concurrency::driver("fork").timeout(300ms).defer(keyed);
  }
  REQUIRE(receipt->id().rfind("fork-", 0) == 0);
  CHECK(receipt->tasks() == 3);
  const std::string prefix = "fanout: deferred batch " + receipt->id() + ": ";
  REQUIRE(eventually([&] { return read_file(log).find("tasks failed") != std::string::npos; }, 20s));
  const std::string text = read_file(log);
  CHECK(text.find(prefix + "slot (index 1, key \"broken\") failed [exception]") != std::string::npos);
  CHECK(text.find("boom in a deferred task") != std::string::npos);
  CHECK(text.find(prefix + "slot (index 2, key \"slow\") failed [timeout]") != std::string::npos);
  CHECK(text.find("of 3 tasks failed") != std::string::npos);
}

TEST_CASE("fork defer refuses an invalid batch before anything starts") {
  const std::vector<std::pair<std::string, std::function<int()>>> twice{{"a", [] { return 1; }}, {"a", [] { return 2; }}};
  CHECK_THROWS_WITH_AS(fanout::Concurrency::driver("fork").defer(twice), doctest::Contains("appears twice"),
                       fanout::Error);
  CHECK(fanout_test::child_count() == 0);
}

// ---------------------------------------------------------------------------------------------
// process (against a fake broker)
// ---------------------------------------------------------------------------------------------

TEST_CASE("process defer sends the whole batch as one deferred window and returns the broker's receipt") {
  FakeBroker broker(FakeBroker::Answer::receipt, "r-42");
  const ScopedEnv remote("FANOUT_BROKER", broker.endpoint().c_str());
  const fanout::Receipt receipt = fanout::Concurrency::driver("process").defer(defer_record(1), defer_record(2), defer_record(3));
  CHECK(receipt.id() == "r-42");
  CHECK(receipt.driver() == "process");
  CHECK(receipt.tasks() == 3);

  const auto windows = broker.windows();
  REQUIRE(windows.size() == 1);
  CHECK(broker.messages() == 1);  // nothing but the window: no heartbeats, no second frame
  const SeenWindow& window = windows.front();
  CHECK(window.deferred);
  CHECK(window.total == 3);
  CHECK(window.batch_id != 0);
  REQUIRE(window.tasks.size() == 3);
  for (std::uint32_t i = 0; i < 3; ++i) {
    CHECK(window.tasks[i].index == i);
    CHECK(window.tasks[i].batch_id == window.batch_id);
    CHECK(window.tasks[i].name == "defer.record");
    CHECK(!window.tasks[i].key);
  }
  CHECK(take_recorded().empty());  // nothing ran here
}

TEST_CASE("process defer carries keys and takes a vector on a driver object") {
  FakeBroker broker(FakeBroker::Answer::receipt, "r-7");
  const ScopedEnv remote("FANOUT_BROKER", broker.endpoint().c_str());
  const auto process = fanout::Concurrency::driver("process");
  const std::vector<std::pair<std::string, fanout::Call<int>>> keyed{{"", defer_record(1)}, {"second", defer_record(2)}};
  CHECK(process.defer(keyed).id() == "r-7");
  std::vector<fanout::Call<int>> many;
  for (int i = 0; i < 2000; ++i) many.push_back(defer_record(i));
  CHECK(process.defer(many).tasks() == 2000);

  const auto windows = broker.windows();
  REQUIRE(windows.size() == 2);
  REQUIRE(windows[0].tasks.size() == 2);
  CHECK(windows[0].tasks[0].key == std::optional<std::string>(""));
  CHECK(windows[0].tasks[1].key == std::optional<std::string>("second"));
  CHECK(windows[1].total == 2000);
  CHECK(windows[1].tasks.size() == 2000);  // one window, however large the batch
  CHECK(windows[1].deferred);
  CHECK(windows[0].batch_id != windows[1].batch_id);
}

TEST_CASE("process defer throws the broker's refusal") {
  const std::string why = "this broker keeps no journal; start it with --journal DIR";
  FakeBroker broker(FakeBroker::Answer::refuse, why);
  const ScopedEnv remote("FANOUT_BROKER", broker.endpoint().c_str());
  CHECK_THROWS_WITH_AS(fanout::Concurrency::driver("process").defer(defer_record(1)), doctest::Contains(why.c_str()),
                       fanout::Error);
  CHECK(broker.windows().size() == 1);
}

TEST_CASE("process defer gives up when the broker does not acknowledge in time") {
  FakeBroker broker(FakeBroker::Answer::silence, "");
  const ScopedEnv remote("FANOUT_BROKER", broker.endpoint().c_str());
  const auto started = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH_AS(fanout::Concurrency::driver("process").timeout(300ms).defer(defer_record(1)),
                       doctest::Contains("acknowledge"), fanout::Error);
  const auto waited = std::chrono::steady_clock::now() - started;
  CHECK(waited >= 300ms);
  CHECK(waited < 10s);
  CHECK(broker.windows().size() == 1);
}

TEST_CASE("process defer refuses plain callables before anything is sent") {
  FakeBroker broker(FakeBroker::Answer::receipt, "r-1");
  const ScopedEnv remote("FANOUT_BROKER", broker.endpoint().c_str());
  CHECK_THROWS_WITH_AS(fanout::Concurrency::driver("process").defer([] { return 1; }),
                       doctest::Contains("registered tasks only"), fanout::Error);
  CHECK(broker.messages() == 0);
}

TEST_CASE("process defer refuses a batch larger than one broker message before sending it") {
  FakeBroker broker(FakeBroker::Answer::receipt, "r-1");
  const ScopedEnv remote("FANOUT_BROKER", broker.endpoint().c_str());
  const fanout::Task defer_text{"defer.text", [](const std::string& text) { return text.size(); }};
  // Copies of a call share its encoded arguments: 600 x 1 MiB on the wire, 1 MiB here.
  const auto call = defer_text(std::string(std::size_t{1} << 20, 'x'));
  const std::vector<std::remove_cvref_t<decltype(call)>> batch(600, call);
  CHECK_THROWS_WITH_AS(fanout::Concurrency::driver("process").defer(batch), doctest::Contains("smaller batches"),
                       fanout::Error);
  CHECK(broker.messages() == 0);
}

TEST_CASE("process defer against a real broker: journaled with a receipt, or refused without a journal") {
  const TempDir dir;
  {
    RealBroker broker(dir.path());
    const ScopedEnv remote("FANOUT_BROKER", broker.endpoint().c_str());
    const std::vector<std::pair<std::string, fanout::Call<int>>> keyed{{"a", defer_record(1)}, {"b", defer_record(2)}};
    const fanout::Receipt receipt = fanout::Concurrency::driver("process").defer(keyed);
    CHECK(!receipt.id().empty());
    CHECK(receipt.tasks() == 2);
    CHECK(broker.counters().deferred_accepted == 1);
    CHECK(fanout::Concurrency::driver("process").defer(defer_record(3)).id() != receipt.id());
  }
  RealBroker without_journal({});
  const ScopedEnv remote("FANOUT_BROKER", without_journal.endpoint().c_str());
  CHECK_THROWS_WITH_AS(fanout::Concurrency::driver("process").defer(defer_record(1)), doctest::Contains("--journal"),
                       fanout::Error);
  CHECK(take_recorded().empty());  // nothing ran here
}
