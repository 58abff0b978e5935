// The process driver sends the slots of a batch of one quick task as units (fanout.capnp,
// Task.slots): what the broker receives, and how the client maps the units' outcomes back onto
// slots. A fake broker on a real ZeroMQ socket plays broker and executors at once: it records
// every window and answers each task at once, as an executor that knows units would.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fanout/fanout.hpp>
#include <zmq.hpp>

#include "fake_router.hpp"
#include "test_support.hpp"
#include "transport.hpp"
#include "units.hpp"

using namespace std::chrono_literals;

namespace {

// Only their names and argument types matter here: the fake broker computes the values.
const fanout::Task units_twice{"units.twice", [](int x) { return 2 * x; }};
const fanout::Task units_slow{"units.slow", [](int x) { return 2 * x; }};
// In a unit, the fake executor answers this one with values of several shapes (value_shape).
const fanout::Task units_shapes{"units.shapes", [](int x) { return 2 * x; }};

// Answered with a text of 1 MiB (kBigValue): results that add up, for the heartbeat reports.
const fanout::Task report_big{"report.big", [](int) { return std::string(); }};
constexpr std::size_t kBigValue = std::size_t{1} << 20;

// Its units' values come back laid out together (Result.scalarValues) in several shapes
// (scalar_shape).
const fanout::Task units_scalar_shapes{"units.scalar_shapes", [](int x) { return 2 * x; }};

// Its units come back from far away: a long ranOn, and every value a float64 that no slot's int
// takes (each slot fails naming where it ran).
const fanout::Task units_far_away{"units.far_away", [](int x) { return 2 * x; }};
const std::string kFarAway = "worker " + std::string(300, 'h') + "/123456 pid 123457";

// What the fake executor does with the argument 13 in a unit: the slot throws.
constexpr int kThrows = 13;

// The kinds of Value's scalar members (fanout.capnp), as scalarKinds numbers them.
constexpr std::uint8_t kNoKind = 0, kInt = 2, kUint = 3, kFloat64 = 5;

// Slot `x`'s value in a units.scalar_shapes unit, as (kind, bits): by x % 4, an int, a uint that
// fits an int, a float64 (not an int: a bad result), and no value without an error (malformed).
std::pair<std::uint8_t, std::uint64_t> scalar_shape(std::int64_t x) {
  switch (x % 4) {
    case 1: return {kUint, static_cast<std::uint64_t>(2 * x)};
    case 2: return {kFloat64, std::bit_cast<std::uint64_t>(2.5 * static_cast<double>(x))};
    case 3: return {kNoKind, 0};
    default: return {kInt, static_cast<std::uint64_t>(2 * x)};
  }
}

// The value of slot `x` of a units.shapes unit: by x % 5, an int (as the task's Codec writes it),
// a uint that fits an int, a text, an int too large for an int, an int again.
void value_shape(fanout::wire::Value::Builder value, std::int64_t x) {
  switch (x % 5) {
    case 1: value.setUint(static_cast<std::uint64_t>(2 * x)); break;
    case 2: value.setText("not a number"); break;
    case 3: value.setInt(std::int64_t{1} << 40); break;
    default: value.setInt(2 * x); break;
  }
}

struct SeenTask {
  std::uint64_t batch;
  std::uint32_t index;
  std::uint32_t slots;
  std::string name;
  bool laid_out;  // a unit's scalars laid out together (Task.scalarArgs)
};

class FakeBroker {
 public:
  FakeBroker()
      : router_([this](const std::string& identity, zmq::message_t& frame) {
          auto message = fanout::wire::InMessage::parse(std::move(frame));
          if (message && message->envelope().isTasks()) answer(identity, message->envelope().getTasks().getTasks());
          if (message && message->envelope().isCancel()) ++cancels_;
          if (message && message->envelope().isHeartbeat()) reported_ += message->envelope().getHeartbeat().getResultBytes();
        }) {}

  const std::string& endpoint() const { return router_.endpoint(); }

  // Every task received from now on.
  std::vector<SeenTask> take_seen() {
    const std::lock_guard lock(mutex_);
    return std::exchange(seen_, {});
  }
  // The next unit holding this argument fails whole, as a unit whose executor died does.
  void crash_unit_holding(int argument) { crash_argument_ = argument; }
  // Units of scalars laid out together fail whole as unreadable, as an executor older than
  // Task.scalarArgs fails them (it finds no list of argument tuples).
  void as_old_executor(bool old) { old_executor_ = old; }
  // Units of scalars are answered with this many values (laid out together) instead of one a slot.
  void answer_values_short(bool shorten) { short_values_ = shorten; }
  // Cancel messages received so far. A client's windows come before its cancel on one socket:
  // once the cancel is here, every window it sent is counted.
  int cancels() const { return cancels_.load(); }
  // Bytes of results the client said in its heartbeats it read.
  std::uint64_t reported() const { return reported_.load(); }

 private:
  void answer(const std::string& identity, capnp::List<fanout::wire::Task>::Reader tasks) {
    fanout::wire::OutMessage out;
    auto results = out.envelope().initResults(tasks.size());
    for (unsigned i = 0; i < tasks.size(); ++i) {
      const auto task = tasks[i];
      {
        const std::lock_guard lock(mutex_);
        seen_.push_back({task.getBatchId(), task.getIndex(), task.getSlots(), task.getName().cStr(), task.hasScalarArgs()});
      }
      auto result = results[i];
      result.setBatchId(task.getBatchId());
      result.setIndex(task.getIndex());
      result.setRanOn("fake executor");
      // units.slow takes 5 ms a slot, units.twice nothing measurable.
      const bool slow = std::string(task.getName().cStr()) == "units.slow";
      if (task.getSlots() == 0) {
        result.setElapsedUs(slow ? 5000 : 0);
        if (std::string(task.getName().cStr()) == "report.big") {
          result.initValue().setText(std::string(kBigValue, 'x'));
          continue;
        }
        result.initValue().setInt(2 * task.getArgs().getTuple()[0].getInt());
        continue;
      }
      const bool laid_out = task.hasScalarArgs();
      if (laid_out && old_executor_.load()) {
        auto error = result.initError();
        error.setKind(fanout::wire::ErrorKind::BAD_MESSAGE);
        error.setMessage("a unit of slots without a list of as many argument tuples");
        error.setRanOn("fake executor");
        continue;
      }
      const unsigned count = task.getSlots();
      // Each list read once: a reader counts every read of a list against its traversal limit.
      const auto scalars = task.getScalarArgs();
      const auto tuples = laid_out ? capnp::List<fanout::wire::Value>::Reader() : task.getArgs().getList();
      const auto argument = [&](unsigned slot) -> std::int64_t {
        if (laid_out) return static_cast<std::int64_t>(scalars[slot]);
        return tuples[slot].getTuple()[0].getInt();
      };
      bool crash = false;
      for (unsigned slot = 0; slot < count; ++slot) crash = crash || argument(slot) == crash_argument_.load();
      if (crash) {
        crash_argument_ = -1;
        auto error = result.initError();
        error.setKind(fanout::wire::ErrorKind::CRASHED);
        error.setMessage("the executor died (signal 9)");
        error.setRanOn("fake executor");
        continue;
      }
      result.setElapsedUs(slow ? 5000 * count : 0);
      const std::string name = task.getName().cStr();
      if (name == "units.far_away") result.setRanOn(kFarAway);
      std::vector<std::uint32_t> thrown;
      if (laid_out && name != "units.shapes") {  // values laid out as the arguments came
        const unsigned answered = short_values_.load() ? count - 1 : count;
        auto bits = result.initScalarValues(answered);
        auto kinds = result.initScalarKinds(answered);
        for (unsigned slot = 0; slot < answered; ++slot) {
          const std::int64_t x = argument(slot);
          auto [kind, value] = name == "units.scalar_shapes" ? scalar_shape(x)
                               : name == "units.far_away"    ? std::pair{kFloat64, std::bit_cast<std::uint64_t>(0.5)}
                                                             : std::pair{kInt, static_cast<std::uint64_t>(2 * x)};
          if (x == kThrows) {
            thrown.push_back(slot);
            kind = kNoKind;
          }
          kinds.set(slot, kind);
          bits.set(slot, value);
        }
      } else {
        auto values = result.initValue().initList(count);
        for (unsigned slot = 0; slot < count; ++slot) {
          const std::int64_t x = argument(slot);
          if (x == kThrows) {
            thrown.push_back(slot);
          } else if (name == "units.shapes") {
            value_shape(values[slot], x);
          } else {
            values[slot].setInt(2 * x);
          }
        }
      }
      auto errors = result.initSlotErrors(static_cast<unsigned>(thrown.size()));
      for (unsigned e = 0; e < thrown.size(); ++e) {
        errors[e].setSlot(thrown[e]);
        auto error = errors[e].initError();
        error.setKind(fanout::wire::ErrorKind::EXCEPTION);
        error.setRemoteType("std::domain_error");
        error.setMessage("thirteen");
        error.setRanOn("fake executor");
      }
    }
    router_.send(identity, out.frame());
  }

  std::mutex mutex_;
  std::vector<SeenTask> seen_;
  std::atomic<int> crash_argument_{-1};
  std::atomic<bool> old_executor_{false};
  std::atomic<bool> short_values_{false};
  std::atomic<int> cancels_{0};
  std::atomic<std::uint64_t> reported_{0};
  fanout_test::FakeRouter router_;  // last: serves once everything above exists
};

// One broker for the whole program: the process driver connects once per process.
FakeBroker& broker() {
  static FakeBroker fake;
  static const fanout_test::ScopedEnv remote("FANOUT_BROKER", fake.endpoint().c_str());
  return fake;
}

template <class T>
std::vector<fanout::Call<int>> calls_of(const fanout::Task<T>& task, int count, int first = 0) {
  std::vector<fanout::Call<int>> calls;
  for (int i = first; i < first + count; ++i) calls.push_back(task(i));
  return calls;
}

fanout::Driver process() { return fanout::Concurrency::driver("process").deadline(20s); }

std::uint64_t total_slots(const std::vector<SeenTask>& seen) {
  std::uint64_t slots = 0;
  for (const auto& task : seen) slots += task.slots == 0 ? 1 : task.slots;
  return slots;
}

}  // namespace

TEST_CASE("a batch of a task known to be quick goes as units; each slot gets its own value or failure") {
  auto& fake = broker();
  // The first batch of a task goes slot by slot: nothing is known of it yet. Its results say it is quick.
  CHECK(process().run(calls_of(units_twice, 64, 100)).at(5) == 210);
  for (const auto& task : fake.take_seen()) CHECK(task.slots == 0);

  const auto outcomes = process().settle(calls_of(units_twice, 1000));
  const auto seen = fake.take_seen();
  CHECK(total_slots(seen) == 1000);
  CHECK(seen.size() < 100);  // units of many slots, not 1,000 tasks
  for (const auto& task : seen) {
    CHECK(task.slots > 1);
    CHECK(task.laid_out);  // calls of one int: a word and a kind byte each, not a tuple
  }
  REQUIRE(outcomes.size() == 1000);
  for (int i = 0; i < 1000; ++i) {
    CAPTURE(i);
    if (i == kThrows) {
      REQUIRE_FALSE(outcomes[13].ok());
      CHECK(outcomes[13].error().kind() == fanout::ErrorKind::exception);
      CHECK(outcomes[13].error().remote_type() == "std::domain_error");
      CHECK(outcomes[13].error().remote_message() == "thirteen");
      CHECK(outcomes[13].error().index() == 13);
    } else {
      REQUIRE(outcomes[static_cast<std::size_t>(i)].ok());
      CHECK(outcomes[static_cast<std::size_t>(i)].value() == 2 * i);
    }
  }
}

TEST_CASE("a unit's values are read as a slot's value is: converted where the type allows, else that slot fails") {
  auto& fake = broker();
  (void)process().run(calls_of(units_shapes, 64, 100));  // slot by slot: ints only
  (void)fake.take_seen();
  // Units of 312 slots: more than the client reads at once (Results::values).
  const auto outcomes = process().settle(calls_of(units_shapes, 5000, 20));
  std::uint32_t largest = 0;
  for (const auto& task : fake.take_seen()) largest = std::max(largest, task.slots);
  CHECK(largest > 256);
  REQUIRE(outcomes.size() == 5000);
  for (int i = 0; i < 5000; ++i) {
    const int x = i + 20;
    CAPTURE(x);
    const auto& outcome = outcomes[static_cast<std::size_t>(i)];
    switch (x % 5) {
      case 2:
        REQUIRE_FALSE(outcome.ok());
        CHECK(outcome.error().kind() == fanout::ErrorKind::bad_result);
        CHECK(outcome.error().index() == static_cast<std::size_t>(i));
        CHECK(std::string(outcome.error().what()).find("text") != std::string::npos);
        break;
      case 3:
        REQUIRE_FALSE(outcome.ok());
        CHECK(outcome.error().kind() == fanout::ErrorKind::bad_result);
        break;
      default:  // an int, or a uint that fits
        REQUIRE(outcome.ok());
        CHECK(outcome.value() == 2 * x);
    }
  }
}

TEST_CASE("a unit's values laid out together are read as a slot's value is; a slot with none and no error fails") {
  auto& fake = broker();
  (void)process().run(calls_of(units_scalar_shapes, 64, 100));  // slot by slot: ints only
  (void)fake.take_seen();
  const auto outcomes = process().settle(calls_of(units_scalar_shapes, 3000, 4));
  std::uint32_t laid_out = 0;
  for (const auto& task : fake.take_seen()) laid_out += task.laid_out ? task.slots : 0;
  CHECK(laid_out == 3000);
  REQUIRE(outcomes.size() == 3000);
  for (int i = 0; i < 3000; ++i) {
    const int x = i + 4;
    CAPTURE(x);
    const auto& outcome = outcomes[static_cast<std::size_t>(i)];
    if (x == kThrows) {
      REQUIRE_FALSE(outcome.ok());
      CHECK(outcome.error().kind() == fanout::ErrorKind::exception);
      continue;
    }
    switch (x % 4) {
      case 2:
        REQUIRE_FALSE(outcome.ok());
        CHECK(outcome.error().kind() == fanout::ErrorKind::bad_result);
        CHECK(std::string(outcome.error().what()).find("float64") != std::string::npos);
        break;
      case 3:
        REQUIRE_FALSE(outcome.ok());
        CHECK(outcome.error().kind() == fanout::ErrorKind::bad_message);
        CHECK(std::string(outcome.error().what()).find("kind 0") != std::string::npos);
        break;
      default:  // an int, or a uint that fits
        REQUIRE(outcome.ok());
        CHECK(outcome.value() == 2 * x);
    }
  }

  SUBCASE("values fewer than the unit's slots fail the unit's slots as unreadable") {
    fake.answer_values_short(true);
    const auto shorted = process().settle(calls_of(units_twice, 1000, 20));
    fake.answer_values_short(false);
    std::size_t unreadable = 0;
    for (const auto& outcome : shorted) {
      if (outcome.ok()) continue;
      CHECK(outcome.error().kind() == fanout::ErrorKind::bad_message);
      CHECK(std::string(outcome.error().what()).find("does not hold as many values") != std::string::npos);
      ++unreadable;
    }
    CHECK(unreadable > 0);
  }
}

// A reader counts each read of a text against a limit proportional to the message: a unit's
// answer is small when its values are laid out together, and a failure of every slot named where
// it ran, read again for each, once ran the reader out of it half-way through the unit.
TEST_CASE("a unit whose every slot fails, from a peer with a long name, fails each slot and leaves none waiting") {
  auto& fake = broker();
  (void)process().run(calls_of(units_far_away, 64, 100));  // slot by slot: the fake answers ints
  (void)fake.take_seen();
  const auto outcomes = process().settle(calls_of(units_far_away, 4000, 20));  // no 13: no slot throws
  std::uint32_t largest = 0;
  for (const auto& task : fake.take_seen()) largest = std::max(largest, task.slots);
  CHECK(largest >= 200);
  REQUIRE(outcomes.size() == 4000);
  std::size_t named = 0;
  for (const auto& outcome : outcomes) {
    REQUIRE_FALSE(outcome.ok());
    CHECK(outcome.error().kind() == fanout::ErrorKind::bad_result);  // not a timeout: none left waiting
    named += outcome.error().ran_on() == kFarAway ? 1 : 0;
  }
  CHECK(named == 4000);
}

TEST_CASE("an executor that knows nothing of scalars laid out together fails their units; their slots go alone, "
          "and later units go as tuples") {
  auto& fake = broker();
  (void)process().run(calls_of(units_twice, 64, 100));
  (void)fake.take_seen();
  fake.as_old_executor(true);
  // Whatever fails below, the tests after this one find a new executor and units laid out.
  struct Restore {
    FakeBroker& fake;
    ~Restore() {
      fake.as_old_executor(false);
      fanout::detail::laid_out_units::allow();
    }
  } restore{fake};
  const auto values = process().run(calls_of(units_twice, 1000, 20));
  REQUIRE(values.size() == 1000);
  for (int i = 0; i < 1000; ++i) CHECK(values[static_cast<std::size_t>(i)] == 2 * (i + 20));
  // Units written after the first refusal came back go as tuples (on a slow client, results are
  // read between windows): only the slots of units laid out go again, each alone.
  std::uint64_t plain = 0, laid_out = 0, tuples = 0;
  for (const auto& task : fake.take_seen()) {
    if (task.slots == 0) {
      ++plain;
    } else {
      (task.laid_out ? laid_out : tuples) += task.slots;
    }
  }
  CHECK(laid_out > 0);
  CHECK(plain == laid_out);  // every slot of a refused unit again, alone
  CHECK(plain + tuples == 1000);
  CHECK_FALSE(fanout::detail::laid_out_units::allowed());

  // The next batch's units go as tuples, which the old executor reads.
  CHECK(process().run(calls_of(units_twice, 1000, 20)).at(999) == 2 * 1019);
  const auto seen = fake.take_seen();
  REQUIRE_FALSE(seen.empty());
  for (const auto& task : seen) {
    CHECK(task.slots > 1);
    CHECK_FALSE(task.laid_out);
  }
}

TEST_CASE("a unit that failed whole (its executor died) goes again slot by slot, in a batch of its own") {
  auto& fake = broker();
  (void)process().run(calls_of(units_twice, 64, 100));
  (void)fake.take_seen();
  fake.crash_unit_holding(300);
  const auto values = process().run(calls_of(units_twice, 1000, 20));  // no 13: every slot succeeds
  REQUIRE(values.size() == 1000);
  for (int i = 0; i < 1000; ++i) CHECK(values[static_cast<std::size_t>(i)] == 2 * (i + 20));

  const auto seen = fake.take_seen();
  std::set<std::uint64_t> batches;
  std::uint64_t plain = 0;
  for (const auto& task : seen) {
    batches.insert(task.batch);
    if (task.slots == 0) ++plain;
  }
  CHECK(batches.size() == 2);
  CHECK(plain > 1);  // the crashed unit's slots, one task each
  CHECK(total_slots(seen) == 1000 + plain);
}

TEST_CASE("no units under a cap, a per-slot timeout, or for a task not known to be quick") {
  auto& fake = broker();
  (void)process().run(calls_of(units_twice, 64, 100));
  (void)fake.take_seen();
  SUBCASE("a cap counts slots, which the broker does not see inside a unit") {
    CHECK(process().max_concurrency(4).run(calls_of(units_twice, 1000, 20)).at(1) == 42);
  }
  SUBCASE("a per-slot timeout is each slot's own") {
    CHECK(process().timeout(5s).run(calls_of(units_twice, 1000, 20)).at(1) == 42);
  }
  SUBCASE("a task that took 5 ms a slot") {
    CHECK(process().run(calls_of(units_slow, 64)).at(1) == 2);
    CHECK(process().run(calls_of(units_slow, 1000, 20)).at(1) == 42);
  }
  const auto seen = fake.take_seen();
  CHECK(seen.size() >= 1000);
  for (const auto& task : seen) CHECK(task.slots == 0);
}

namespace {
const fanout::Task units_cancelled{"units.cancelled", [](int x) { return 2 * x; }};
const fanout::Task slots_cancelled{"slots.cancelled", [](int x) { return 2 * x; }};

// Runs `slots` calls of `task`, cancelling on the first settled slot, and returns how many slots
// had been sent to the broker by then (windows keep going out while results come back).
std::uint64_t slots_sent_before_cancel(FakeBroker& fake, const std::vector<fanout::Call<int>>& calls) {
  (void)fake.take_seen();
  const int cancels = fake.cancels();
  fanout::CancellationToken token;
  const auto outcomes = process()
                            .cancel_with(token)
                            .on_progress([&](std::size_t settled, std::size_t) {
                              if (settled == 1) token.cancel();
                            })
                            .settle(calls);
  std::size_t cancelled = 0;
  for (const auto& outcome : outcomes) cancelled += !outcome.ok() && outcome.error().kind() == fanout::ErrorKind::cancelled;
  CHECK(cancelled > 0);
  REQUIRE(fanout_test::eventually([&] { return fake.cancels() > cancels; }));
  return total_slots(fake.take_seen());
}
}  // namespace

TEST_CASE("a cancellation stops the windows still to go, while results keep coming between them") {
  auto& fake = broker();
  // At most the windows in flight before the first result was taken (16,384 slots, one window
  // more at most): the rest of the batch never leaves the client. Whether results come back
  // while the first windows are still being written depends on the machine: a few rounds.
  SUBCASE("slot by slot") {
    for (int round = 0; round < 3; ++round) {
      CHECK(slots_sent_before_cancel(fake, calls_of(slots_cancelled, 200000)) <= 16384 + 1024);
    }
  }
  SUBCASE("in units") {
    (void)process().run(calls_of(units_cancelled, 64, 100));  // slot by slot: learnt quick
    for (int round = 0; round < 3; ++round) {
      CHECK(slots_sent_before_cancel(fake, calls_of(units_cancelled, 400000)) <= 16384 + 1024);
    }
  }
}

// The broker holds back a client's work while it has more than 64 MiB of results unreported
// (docs/limits.md); a client reports what it read in heartbeats. A program running batch after
// batch, each shorter than a heartbeat interval and reading less than the 8 MiB that call for an
// early report, reported nothing (each batch started counting afresh): once every 64 MiB one of
// its batches waited for the broker to hear from it, half a second.
TEST_CASE("a client running short batches back to back reports what it read every 8 MiB, across batches") {
  auto& fake = broker();
  const std::uint64_t before = fake.reported();
  for (int batch = 0; batch < 12; ++batch) {
    const auto values = process().run(std::vector{report_big(batch)});
    REQUIRE(values.at(0).size() == kBigValue);
  }
  CHECK(fanout_test::eventually([&] { return fake.reported() - before >= (std::uint64_t{8} << 20); }));
}
