// The process driver in local mode: no configuration, an embedded broker, and workers made by
// re-executing this test program.
#include <doctest/doctest.h>

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fanout/fanout.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;

namespace {

const fanout::Task local_square{"local.square", [](int x) { return x * x; }};
const fanout::Task local_greet{"local.greet", [](std::string name) { return "hello " + name; }};
const fanout::Task local_pid{"local.pid", [] { return static_cast<int>(::getpid()); }};
const fanout::Task local_parent{"local.parent", [] { return static_cast<int>(::getppid()); }};
const fanout::Task local_fail{"local.fail", [](std::string message) -> int { throw std::invalid_argument(message); }};
const fanout::Task local_sleep{"local.sleep_ms", [](int ms) {
                                 std::this_thread::sleep_for(std::chrono::milliseconds(ms));
                                 return ms;
                               }};
const fanout::Task local_crash{"local.crash", []() -> int {
                                 ::raise(SIGKILL);
                                 return 0;
                               }};
// Quick, but for two arguments: 13 throws, 29 kills the executor running it.
const fanout::Task local_units_probe{"local.units_probe", [](int x) -> int {
                                      if (x == 13) throw std::domain_error("thirteen");
                                      if (x == 29) ::raise(SIGKILL);
                                      return 3 * x;
                                    }};
const fanout::Task local_bytes{"local.bytes", [](fanout::Bytes data) { return data.size(); }};

fanout::Driver process() {
  fanout_test::ScopedEnv no_remote("FANOUT_BROKER", nullptr);
  return fanout::Concurrency::driver("process");
}

}  // namespace

TEST_CASE("local mode runs a batch with no configuration and keeps the order") {
  std::vector<fanout::Call<int>> calls;
  for (int i = 0; i < 200; ++i) calls.push_back(local_square(i));
  const auto results = process().run(calls);
  REQUIRE(results.size() == 200);
  for (int i = 0; i < 200; ++i) CHECK(results[static_cast<std::size_t>(i)] == i * i);

  auto [a, b] = process().run(local_square(12), local_greet("ada"));
  CHECK(a == 144);
  CHECK(b == "hello ada");

  const std::vector<std::pair<std::string, fanout::Call<int>>> jobs{{"b", local_square(2)}, {"a", local_square(3)}};
  const auto keyed = process().run(jobs);
  CHECK(keyed.keys() == std::vector<std::string>{"b", "a"});
  CHECK(keyed["a"] == 9);
}

TEST_CASE("the default driver is the process driver, in local mode") {
  fanout_test::ScopedEnv default_driver("FANOUT_DRIVER", nullptr);
  CHECK(fanout::Concurrency::run(local_square(7)) == std::tuple<int>{49});
}

TEST_CASE("local workers run in other processes, children of a worker this program started") {
  std::vector<fanout::Call<int>> pids;
  std::vector<fanout::Call<int>> parents;
  for (int i = 0; i < 20; ++i) {
    pids.push_back(local_pid());
    parents.push_back(local_parent());
  }
  const auto seen = process().run(pids);
  for (const int pid : seen) CHECK(pid != ::getpid());
  // Executors are forked by the worker supervisor, which is a child of this program.
  for (const int parent : process().run(parents)) CHECK(fanout_test::parent_of(parent) == ::getpid());
}

TEST_CASE("later batches reuse the warm pool") {
  // Ten batches of 16 tasks are answered by the pool's executors, whichever of them each batch
  // happens to reach: never by new processes. (The pool may have grown while tasks waited on slow
  // ones, up to FANOUT_MAX_PROCESSES; a process per task would be 160.)
  std::vector<fanout::Call<int>> calls(16, local_pid());
  std::set<int> seen;
  for (int batch = 0; batch < 10; ++batch) {
    for (const int pid : process().run(calls)) seen.insert(pid);
  }
  CHECK(seen.size() <= std::max<std::size_t>(16, std::thread::hardware_concurrency()));
}

TEST_CASE("a task's exception fails its slot with the remote type and message") {
  try {
    (void)process().run(local_square(1), local_fail("no such table"));
    FAIL("the failure was not rethrown");
  } catch (const fanout::TaskError& error) {
    CHECK(error.index() == 1);
    CHECK(error.kind() == fanout::ErrorKind::exception);
    CHECK(error.remote_type() == "std::invalid_argument");
    CHECK(error.remote_message() == "no such table");
    CHECK(error.ran_on().find("worker") != std::string::npos);
  }
}

TEST_CASE("an unregistered task name fails with kind unknown task") {
  const fanout::Call<int> ghost("local.no-such-task", fanout::encode_payload(std::tuple<int>{1}));
  auto [outcome, fine] = process().settle(ghost, local_square(3));
  REQUIRE_FALSE(outcome.ok());
  CHECK(outcome.error().kind() == fanout::ErrorKind::unknown_task);
  CHECK(fine.value() == 9);
}

TEST_CASE("arguments of the wrong type fail with kind bad arguments") {
  const fanout::Call<int> wrong("local.square", fanout::encode_payload(std::tuple<std::string>{"x"}));
  auto [outcome] = process().settle(wrong);
  REQUIRE_FALSE(outcome.ok());
  CHECK(outcome.error().kind() == fanout::ErrorKind::bad_arguments);
  CHECK(outcome.error().remote_message().find("expected tuple<int32>") != std::string::npos);
}

TEST_CASE("a batch over its time limit fails the slow slots with kind timeout, and the pool recovers") {
  auto [slow, quick] = process().timeout(500ms).settle(local_sleep(20000), local_square(4));
  REQUIRE_FALSE(slow.ok());
  CHECK(slow.error().kind() == fanout::ErrorKind::timeout);
  CHECK(slow.error().remote_message().find("500 ms") != std::string::npos);
  CHECK(quick.value() == 16);
  // The executor that ran the slow task was replaced; the pool still serves.
  std::vector<fanout::Call<int>> calls(8, local_square(5));
  CHECK(process().run(calls) == std::vector<int>(8, 25));
}

TEST_CASE("timeout() limits each slot's run time, not its wait: four 600 ms slots two at a time all finish under a 1 s limit") {
  const std::vector<fanout::Call<int>> calls(4, local_sleep(600));
  const auto outcomes = process().max_concurrency(2).timeout(1s).settle(calls);
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    CAPTURE(i);
    CHECK(outcomes[i].ok());  // the second pair waited 600 ms, then ran 600 ms: within its limit
  }
}

TEST_CASE("deadline() limits the whole batch, waiting included: what has not finished by then fails as timeout") {
  const auto started = std::chrono::steady_clock::now();
  const std::vector<fanout::Call<int>> calls{local_sleep(100), local_sleep(20000), local_sleep(20000)};
  const auto outcomes = process().max_concurrency(1).deadline(700ms).settle(calls);
  CHECK(outcomes[0].ok());
  for (std::size_t i = 1; i < outcomes.size(); ++i) {
    CAPTURE(i);
    REQUIRE_FALSE(outcomes[i].ok());
    CHECK(outcomes[i].error().kind() == fanout::ErrorKind::timeout);
  }
  CHECK(std::chrono::steady_clock::now() - started < 10s);
}

namespace {

// Executors of this program's local pool: the children of its worker (the only child of this
// process that is a re-executed copy of it).
std::size_t local_executors() {
  std::size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto parent = fanout_test::parent_of(static_cast<pid_t>(std::stoi(name)));
    if (parent && fanout_test::parent_of(*parent) == ::getpid()) ++count;
  }
  return count;
}

}  // namespace

TEST_CASE("with no cap, slow tasks all run at once: the local pool grows beyond one executor per core, then shrinks") {
  cpu_set_t set;
  const std::size_t cores = ::sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;  // the pool's base size
  const std::size_t count = std::min<std::size_t>(cores + 2, 16);
  (void)process().run(local_square(1));  // the pool is up
  const std::vector<fanout::Call<int>> calls(count, local_sleep(800));
  const auto started = std::chrono::steady_clock::now();
  CHECK(process().run(calls) == std::vector<int>(count, 800));
  // One round, not two: the pool grew while the first tasks waited (one per core took 1.6 s).
  CHECK(std::chrono::steady_clock::now() - started < 1400ms);
  CHECK(local_executors() >= count);
  // The extra executors leave after FANOUT_EXTRA_IDLE_MS (set for this test program) idle.
  CHECK(fanout_test::eventually([&] { return local_executors() == cores; }, 20s));
}

TEST_CASE("slow tasks at a cap of two run as a list scheduler would: about N/P task times, never one behind another") {
  const auto makespan = [](const std::vector<fanout::Call<int>>& calls) {
    const auto started = std::chrono::steady_clock::now();
    CHECK(process().max_concurrency(2).run(calls).size() == calls.size());
    return std::chrono::steady_clock::now() - started;
  };
  (void)process().run(local_square(1));  // the pool is up
  // Six of 300 ms: three rounds, ideal 900 ms.
  const auto equal = makespan(std::vector<fanout::Call<int>>(6, local_sleep(300)));
  CHECK(equal >= 850ms);
  CHECK(equal <= 1125ms);
  // One of 900 ms and nine of 100 ms: the nine one after another beside the long one, ideal 900 ms.
  std::vector<fanout::Call<int>> uneven{local_sleep(900)};
  for (int i = 0; i < 9; ++i) uneven.push_back(local_sleep(100));
  const auto mixed = makespan(uneven);
  CHECK(mixed >= 850ms);
  CHECK(mixed <= 1125ms);
  // Tasks of a name that has been quick so far, now slow: what one executor took ahead of a cap of
  // two goes to the other (the batch's slots are spread, and an overdue one is reclaimed).
  (void)process().run(std::vector<fanout::Call<int>>(50, local_sleep(1)));
  const auto after_fast = makespan(std::vector<fanout::Call<int>>(6, local_sleep(300)));
  CHECK(after_fast <= 1125ms);
}

TEST_CASE("each result reaches the per-result callback as soon as it exists, while a longer task still runs") {
  std::vector<fanout::Call<int>> calls{local_sleep(1500), local_sleep(100), local_sleep(100), local_sleep(100)};
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::chrono::steady_clock::duration> seen(calls.size());
  const auto values = process().max_concurrency(2).run(calls, [&](std::size_t index, fanout::Outcome<int>&& outcome) {
    CHECK(outcome.ok());
    seen[index] = std::chrono::steady_clock::now() - started;
  });
  CHECK(values == std::vector<int>{1500, 100, 100, 100});
  // The three short ones ran one after another beside the long one: the last at about 300 ms.
  for (std::size_t i = 1; i < seen.size(); ++i) {
    CAPTURE(i);
    CHECK(seen[i] < 1000ms);
  }
  CHECK(seen[0] >= 1500ms);
}

TEST_CASE("a task that keeps killing its executor fails with kind worker lost") {
  auto [crash, fine] = process().settle(local_crash(), local_square(6));
  REQUIRE_FALSE(crash.ok());
  CHECK(crash.error().kind() == fanout::ErrorKind::worker_lost);
  CHECK(crash.error().remote_message().find("3 times") != std::string::npos);
  CHECK(fine.value() == 36);
}

// A batch of a task known to be quick travels in units of many slots (units.hpp); a slot's
// failure must stay its own, a crash's too (the unit goes again slot by slot).
TEST_CASE("in a batch of a quick task, a slot that throws and a slot that kills its executor fail alone") {
  std::vector<fanout::Call<int>> warm_up;
  for (int i = 100; i < 164; ++i) warm_up.push_back(local_units_probe(i));
  CHECK(process().run(warm_up).at(1) == 303);  // run slot by slot: its results say it is quick

  std::vector<fanout::Call<int>> calls;
  for (int i = 0; i < 500; ++i) calls.push_back(local_units_probe(i));
  const auto outcomes = process().deadline(60s).settle(calls);
  REQUIRE(outcomes.size() == 500);
  for (std::size_t i = 0; i < 500; ++i) {
    CAPTURE(i);
    if (i == 13) {
      REQUIRE_FALSE(outcomes[i].ok());
      CHECK(outcomes[i].error().kind() == fanout::ErrorKind::exception);
      CHECK(outcomes[i].error().remote_message() == "thirteen");
    } else if (i == 29) {
      REQUIRE_FALSE(outcomes[i].ok());
      CHECK(outcomes[i].error().kind() == fanout::ErrorKind::worker_lost);
    } else {
      REQUIRE(outcomes[i].ok());
      CHECK(outcomes[i].value() == 3 * static_cast<int>(i));
    }
  }
  // The pool recovered.
  CHECK(process().run(local_square(7)) == std::tuple<int>{49});
}

namespace {

const fanout::Task local_size{"local.size", [](fanout::Bytes data) { return data.size(); }};
// Appends a line to the file at `path` for a run that returns a large value; small ones are left
// uncounted so that they stay quick (microseconds a slot: a file opened each time would not) and the
// task is sent in units.
void count_large_run(const std::filesystem::path& path, std::size_t bytes) {
  if (bytes < 4096) return;
  if (std::FILE* file = std::fopen(path.c_str(), "a")) {
    std::fputs("ran\n", file);
    std::fclose(file);
  }
}

// Returns `bytes` bytes of `slot`'s low byte, and counts its large runs in the file at `path`.
const fanout::Task local_blob{"local.blob", [](std::string path, int slot, std::size_t bytes) {
                                count_large_run(path, bytes);
                                return fanout::Bytes(bytes, static_cast<std::byte>(slot & 0xff));
                              }};

// Returns `bytes` bytes of `slot`'s low byte, and counts its large runs in a file named after this
// test program (the executor's grandparent: its arguments are scalars only, so they name no path).
std::filesystem::path numbered_runs_file(int program) {
  return std::filesystem::temp_directory_path() / ("fanout-local-numbered-" + std::to_string(program));
}
const fanout::Task local_numbered_blob{"local.numbered_blob", [](int slot, std::size_t bytes) {
                                         if (bytes >= 4096) {
                                           count_large_run(numbered_runs_file(fanout_test::parent_of(::getppid()).value_or(0)), bytes);
                                         }
                                         return fanout::Bytes(bytes, static_cast<std::byte>(slot & 0xff));
                                       }};

std::size_t lines_in(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::size_t lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  return lines;
}

}  // namespace

// Units of a quick task must stay far below a frame (16 MiB), whatever its slots carry: 128
// slots of 2.15 MiB each fit a frame alone, 8 of them (a unit's size here) do not.
TEST_CASE("a quick task's slots whose arguments would make units larger than a frame still run") {
  constexpr std::size_t kSlotBytes = 2200 << 10;
  for (int i = 0; i < 3; ++i) {
    std::vector<fanout::Call<std::size_t>> small;
    for (int slot = 0; slot < 256; ++slot) small.push_back(local_size(fanout::Bytes(8, std::byte{1})));
    (void)process().run(small);  // the task is quick
  }
  std::vector<fanout::Call<std::size_t>> large;
  for (int slot = 0; slot < 128; ++slot) large.push_back(local_size(fanout::Bytes(kSlotBytes, std::byte{1})));
  CHECK(process().deadline(60s).run(large) == std::vector<std::size_t>(128, kSlotBytes));
}

// A unit's values are only known once its slots ran: the executor stops a unit whose values fill
// half a frame, and the client sends the slots not run one by one. `slot_call(slot, bytes)` makes
// a call of a task that returns `bytes` bytes of the slot's low byte and counts its large runs in
// `runs`. Made quick first, so that the large batch goes in units (8 slots of 2.2 MiB: 17.6 MiB).
template <class SlotCall>
void check_units_outgrowing_a_frame(const std::filesystem::path& runs, SlotCall slot_call) {
  const auto calls = [&](int count, std::size_t bytes) {
    std::vector<fanout::Call<fanout::Bytes>> batch;
    for (int slot = 0; slot < count; ++slot) batch.push_back(slot_call(slot, bytes));
    return batch;
  };
  for (int i = 0; i < 3; ++i) (void)process().run(calls(256, 8));
  std::filesystem::remove(runs);

  constexpr std::size_t kValueBytes = 2200 << 10;
  const auto values = process().deadline(60s).run(calls(128, kValueBytes));
  REQUIRE(values.size() == 128);
  for (std::size_t slot = 0; slot < values.size(); ++slot) {
    CHECK(values[slot].size() == kValueBytes);
    CHECK(values[slot].front() == static_cast<std::byte>(slot & 0xff));
  }
  CHECK(lines_in(runs) == 128);  // each slot ran once
}

TEST_CASE("a quick task's slots whose values outgrow a frame together each run once and have their value") {
  const fanout_test::TempDir dir;
  const auto runs = dir.path() / "runs";
  check_units_outgrowing_a_frame(runs, [&](int slot, std::size_t bytes) { return local_blob(runs.string(), slot, bytes); });
}

// The same with arguments that are all scalars, sent laid out together (Task.scalarArgs): the
// executor's other way through a unit stops at half a frame too.
TEST_CASE("a quick task of scalar arguments whose values outgrow a frame together runs each slot once") {
  const auto runs = numbered_runs_file(::getpid());
  struct Remove {
    std::filesystem::path path;
    ~Remove() { std::filesystem::remove(path); }
  } remove{runs};
  check_units_outgrowing_a_frame(runs, [](int slot, std::size_t bytes) { return local_numbered_blob(slot, bytes); });
}

namespace {

// Appends a line to the file at `path`, then sleeps `ms`.
const fanout::Task local_counted_sleep{"local.counted_sleep", [](std::string path, int ms) {
                                         if (std::FILE* file = std::fopen(path.c_str(), "a")) {
                                           std::fputs("ran\n", file);
                                           std::fclose(file);
                                         }
                                         std::this_thread::sleep_for(std::chrono::milliseconds(ms));
                                         return ms;
                                       }};

}  // namespace

// The calling thread runs the caller's callbacks, and heartbeats wait for them: a callback that
// takes longer than the broker waits for a word must not make it drop the batch and run it again.
TEST_CASE("a per-result callback slower than the broker's patience loses no work") {
  const fanout_test::TempDir dir;
  const auto runs = (dir.path() / "runs").string();
  const std::vector<fanout::Call<int>> calls{local_counted_sleep(runs, 0), local_counted_sleep(runs, 3000),
                                             local_counted_sleep(runs, 3000)};
  bool slept = false;
  const auto values = process().deadline(60s).run(calls, [&](std::size_t, const auto&) {
    if (!std::exchange(slept, true)) std::this_thread::sleep_for(4s);
  });
  REQUIRE(values.size() == 3);
  CHECK(values[1] == 3000);
  CHECK(lines_in(runs) == 3);
}

TEST_CASE("large payloads travel to local workers") {
  std::vector<fanout::Call<std::size_t>> calls;
  for (int i = 0; i < 8; ++i) calls.push_back(local_bytes(fanout::Bytes(1 << 20, std::byte{7})));
  CHECK(process().run(calls) == std::vector<std::size_t>(8, std::size_t{1} << 20));
}

TEST_CASE("progress is reported as results arrive") {
  std::size_t last = 0;
  std::size_t calls_seen = 0;
  std::vector<fanout::Call<int>> calls;
  for (int i = 0; i < 50; ++i) calls.push_back(local_square(i));
  (void)process()
      .on_progress([&](std::size_t settled, std::size_t total) {
        CHECK(total == 50);
        CHECK(settled == last + 1);
        last = settled;
        ++calls_seen;
      })
      .run(calls);
  CHECK(calls_seen == 50);
}

TEST_CASE("a running batch can be cancelled: queued tasks dropped, running ones stopped") {
  fanout::CancellationToken token;
  std::vector<fanout::Call<int>> calls(10, local_sleep(30000));
  std::thread canceller([token]() mutable {
    std::this_thread::sleep_for(300ms);
    token.cancel();
  });
  const auto started = std::chrono::steady_clock::now();
  const auto outcomes = process().cancel_with(token).settle(calls);
  canceller.join();
  CHECK(std::chrono::steady_clock::now() - started < 20s);
  for (const auto& outcome : outcomes) {
    REQUIRE_FALSE(outcome.ok());
    CHECK(outcome.error().kind() == fanout::ErrorKind::cancelled);
  }
  // The executors that ran the cancelled tasks were replaced; the pool still serves.
  std::vector<fanout::Call<int>> after(6, local_square(3));
  CHECK(process().timeout(30s).run(after) == std::vector<int>(6, 9));
}

TEST_CASE("each result of a process batch can be taken as it completes") {
  std::vector<fanout::Call<int>> calls;
  for (int i = 0; i < 40; ++i) calls.push_back(local_square(i));
  std::size_t callbacks = 0;
  const auto values = process().run(calls, [&](std::size_t index, fanout::Outcome<int>&& outcome) {
    ++callbacks;
    CHECK(outcome.value() == static_cast<int>(index * index));
  });
  CHECK(callbacks == 40);
  CHECK(values[39] == 39 * 39);
}
