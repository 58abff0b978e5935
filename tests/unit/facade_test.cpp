// The Concurrency facade: batch forms, driver choice and the failure rule, identical on every
// driver that can run in-process tests (sync and fork).
#include <doctest/doctest.h>

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fanout/fanout.hpp>

#include "test_support.hpp"

namespace {

const fanout::Task facade_square{"facade.square", [](int x) { return x * x; }};
const fanout::Task facade_greet{"facade.greet", [](std::string name) { return "hello " + name; }};
const fanout::Task facade_sleepy{"facade.sleepy", [](int index, int total) {
                                   // Later slots finish first, so order can only come from indexes.
                                   std::this_thread::sleep_for(std::chrono::milliseconds(5 * (total - index)));
                                   return index;
                                 }};
const fanout::Task facade_fail{"facade.fail", [](std::string kind) -> int {
                                 if (kind == "runtime") throw std::runtime_error("runtime went wrong");
                                 if (kind == "logic") throw std::logic_error("logic went wrong");
                                 if (kind == "int") throw 42;
                                 return 1;
                               }};
const fanout::Task facade_touch{"facade.touch", [](std::string path) {
                                  std::ofstream(path) << "ran";
                                  return true;
                                }};
const fanout::Task facade_nothing{"facade.nothing", [] {}};

std::atomic<int> sync_side_effects{0};
const fanout::Task facade_count{"facade.count", [] { return ++sync_side_effects; }};

const char* const kDrivers[] = {"sync", "fork"};

}  // namespace

TEST_CASE("variadic run returns a tuple in argument order, with each slot's own type") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    const auto driver = fanout::Concurrency::driver(name);
    auto [a, b, c] = driver.run(facade_square(3), facade_greet("ada"), facade_square(-4));
    CHECK(a == 9);
    CHECK(b == "hello ada");
    CHECK(c == 16);
  }
}

TEST_CASE("vector run returns results in batch order whatever order they finish in") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    std::vector<fanout::Call<int>> calls;
    for (int i = 0; i < 12; ++i) calls.push_back(facade_sleepy(i, 12));
    const std::vector<int> results = fanout::Concurrency::driver(name).max_concurrency(4).run(calls);
    REQUIRE(results.size() == 12);
    for (int i = 0; i < 12; ++i) CHECK(results[static_cast<std::size_t>(i)] == i);
  }
}

TEST_CASE("keyed run returns the same keys in the order given and looks up by key") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    const std::vector<std::pair<std::string, fanout::Call<int>>> jobs{
        {"zeta", facade_square(2)}, {"alpha", facade_square(3)}, {"mid", facade_square(4)}};
    const auto results = fanout::Concurrency::driver(name).run(jobs);
    CHECK(results.keys() == std::vector<std::string>{"zeta", "alpha", "mid"});
    CHECK(results["alpha"] == 9);
    CHECK(results.at("zeta") == 4);
    CHECK(results.contains("mid"));
    CHECK_FALSE(results.contains("beta"));
    CHECK_THROWS_AS((void)results.at("beta"), std::out_of_range);
    std::vector<int> in_order;
    for (const auto& [key, value] : results) in_order.push_back(value);
    CHECK(in_order == std::vector<int>{4, 9, 16});
  }
}

TEST_CASE("a keyed batch with a duplicate key is refused before anything runs") {
  const int before = sync_side_effects.load();
  const std::vector<std::pair<std::string, fanout::Call<int>>> jobs{
      {"a", facade_count()}, {"b", facade_count()}, {"a", facade_count()}};
  try {
    (void)fanout::Concurrency::driver("sync").run(jobs);
    FAIL("duplicate keys were accepted");
  } catch (const fanout::Error& error) {
    CHECK(std::string(error.what()).find("\"a\" appears twice") != std::string::npos);
  }
  CHECK(sync_side_effects.load() == before);
}

TEST_CASE("an empty batch returns empty and starts nothing") {
  // This test program never calls fanout::init, so a process driver that tried to start its local
  // pool would throw; and no child process may appear.
  const auto children_at_start = fanout_test::child_count();
  const auto process = fanout::Concurrency::driver("process");
  CHECK(process.run(std::vector<fanout::Call<int>>{}).empty());
  CHECK(process.run(std::vector<std::pair<std::string, fanout::Call<int>>>{}).empty());
  CHECK(process.settle(std::vector<fanout::Call<int>>{}).empty());
  static_assert(std::is_same_v<decltype(process.run()), std::tuple<>>);
  CHECK(fanout_test::child_count() == children_at_start);
  for (const char* name : kDrivers) {
    const auto children_before = fanout_test::child_count();
    CHECK(fanout::Concurrency::driver(name).run(std::vector<fanout::Call<int>>{}).empty());
    CHECK(fanout_test::child_count() == children_before);
  }
}

TEST_CASE("the default driver comes from FANOUT_DRIVER, else process") {
  fanout_test::ScopedEnv unset("FANOUT_DRIVER", nullptr);
  CHECK(fanout::Concurrency::driver().name() == "process");
  {
    fanout_test::ScopedEnv sync("FANOUT_DRIVER", "sync");
    CHECK(fanout::Concurrency::driver().name() == "sync");
    CHECK(fanout::Concurrency::run(facade_square(7)) == std::tuple<int>{49});
  }
  {
    fanout_test::ScopedEnv fork("FANOUT_DRIVER", "fork");
    CHECK(fanout::Concurrency::driver().name() == "fork");
  }
  {
    fanout_test::ScopedEnv bogus("FANOUT_DRIVER", "threads");
    try {
      (void)fanout::Concurrency::driver();
      FAIL("an unknown FANOUT_DRIVER was accepted");
    } catch (const fanout::Error& error) {
      const std::string message = error.what();
      CHECK(message.find("'threads' (from FANOUT_DRIVER)") != std::string::npos);
      CHECK(message.find("process, fork, sync") != std::string::npos);
    }
  }
}

TEST_CASE("an unknown driver name is an error listing the valid ones") {
  try {
    (void)fanout::Concurrency::driver("parallel");
    FAIL("an unknown driver was accepted");
  } catch (const fanout::Error& error) {
    CHECK(std::string(error.what()) == "unknown driver 'parallel'; valid drivers: process, fork, sync");
  }
  CHECK(fanout::Concurrency::drivers() == std::vector<std::string>{"process", "fork", "sync"});
}

TEST_CASE("a plain callable on the process driver is refused before anything runs") {
  int calls = 0;
  try {
    (void)fanout::Concurrency::driver("process").run([&] { return ++calls; });
    FAIL("a plain callable was accepted by the process driver");
  } catch (const fanout::Error& error) {
    CHECK(std::string(error.what()).find("registered tasks only") != std::string::npos);
  }
  CHECK(calls == 0);
}

TEST_CASE("the batch settles, then the first failed slot in batch order is rethrown") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    fanout_test::TempDir dir;
    const auto marker = (dir.path() / "last-slot-ran").string();
    try {
      (void)fanout::Concurrency::driver(name).run(facade_square(2), facade_fail("runtime"), facade_fail("logic"),
                                                  facade_touch(marker));
      FAIL("a failed batch did not throw");
    } catch (const fanout::TaskError& error) {
      CHECK(error.index() == 1);
      CHECK(error.kind() == fanout::ErrorKind::exception);
      CHECK(error.remote_type() == "std::runtime_error");
      CHECK(error.remote_message() == "runtime went wrong");
      CHECK(error.task() == "facade.fail");
      CHECK_FALSE(error.key().has_value());
      CHECK_FALSE(error.ran_on().empty());
      const std::string message = error.what();
      CHECK(message.find("task 'facade.fail' (index 1) failed") != std::string::npos);
      CHECK(message.find("std::runtime_error: runtime went wrong") != std::string::npos);
    }
    // The slot after the failures still ran: the batch settled before the rethrow.
    CHECK(std::filesystem::exists(marker));
  }
}

TEST_CASE("a failed keyed slot names its key") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    const std::vector<std::pair<std::string, fanout::Call<int>>> jobs{{"fine", facade_fail("none")},
                                                                      {"broken", facade_fail("logic")}};
    try {
      (void)fanout::Concurrency::driver(name).run(jobs);
      FAIL("a failed keyed batch did not throw");
    } catch (const fanout::TaskError& error) {
      CHECK(error.key() == std::optional<std::string>("broken"));
      CHECK(error.index() == 1);
      CHECK(error.remote_type() == "std::logic_error");
      CHECK(std::string(error.what()).find("key \"broken\"") != std::string::npos);
    }
  }
}

TEST_CASE("settle returns every slot's outcome and never throws for a task's failure") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    const auto driver = fanout::Concurrency::driver(name);
    auto [ok, failed, odd] = driver.settle(facade_square(5), facade_fail("runtime"), facade_fail("int"));
    REQUIRE(ok.ok());
    CHECK(ok.value() == 25);
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.error().remote_message() == "runtime went wrong");
    CHECK_THROWS_AS((void)failed.value(), fanout::TaskError);
    REQUIRE_FALSE(odd.ok());
    CHECK(odd.error().remote_type() == "int");

    std::vector<fanout::Call<int>> calls{facade_fail("logic"), facade_square(6)};
    const auto outcomes = driver.settle(calls);
    REQUIRE(outcomes.size() == 2);
    CHECK_FALSE(outcomes[0].ok());
    CHECK(outcomes[1].value() == 36);

    const std::vector<std::pair<std::string, fanout::Call<int>>> jobs{{"x", facade_fail("logic")},
                                                                      {"y", facade_square(2)}};
    const auto keyed = driver.settle(jobs);
    CHECK_FALSE(keyed["x"].ok());
    CHECK(keyed["x"].error().key() == std::optional<std::string>("x"));
    CHECK(keyed["y"].value() == 4);
  }
}

TEST_CASE("calling an unregistered name fails its slot with kind unknown task") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    const fanout::Call<int> ghost("facade.no-such-task", fanout::encode_payload(std::tuple<int>{1}));
    auto [outcome, fine] = fanout::Concurrency::driver(name).settle(ghost, facade_square(2));
    REQUIRE_FALSE(outcome.ok());
    CHECK(outcome.error().kind() == fanout::ErrorKind::unknown_task);
    CHECK(outcome.error().remote_message().find("facade.no-such-task") != std::string::npos);
    CHECK(std::string(outcome.error().what()).find("[unknown task]") != std::string::npos);
    CHECK(fine.value() == 4);
  }
}

TEST_CASE("arguments of the wrong type fail the slot with kind bad arguments, naming both types") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    const fanout::Call<int> wrong("facade.square", fanout::encode_payload(std::tuple<std::string>{"three"}));
    auto [outcome] = fanout::Concurrency::driver(name).settle(wrong);
    REQUIRE_FALSE(outcome.ok());
    CHECK(outcome.error().kind() == fanout::ErrorKind::bad_arguments);
    CHECK(outcome.error().remote_message().find("expected tuple<int32>") != std::string::npos);
    CHECK(outcome.error().remote_message().find("got tuple<text>") != std::string::npos);
  }
}

TEST_CASE("a result of another type than expected fails the slot with kind bad result") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    const fanout::Call<std::string> mistyped("facade.square", fanout::encode_payload(std::tuple<int>{3}));
    auto [outcome] = fanout::Concurrency::driver(name).settle(mistyped);
    REQUIRE_FALSE(outcome.ok());
    CHECK(outcome.error().kind() == fanout::ErrorKind::bad_result);
    CHECK(outcome.error().remote_message().find("expected string, got int") != std::string::npos);
  }
}

TEST_CASE("plain callables and void tasks run on sync and fork") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    const std::vector<int> data{1, 2, 3, 4};
    const auto driver = fanout::Concurrency::driver(name);
    auto [sum, text, nothing, unit] = driver.run([&] { return data[0] + data[1] + data[2] + data[3]; },
                                                 [] { return std::string("text"); }, [] {}, facade_nothing());
    CHECK(sum == 10);
    CHECK(text == "text");
    static_assert(std::is_same_v<decltype(nothing), std::monostate>);
    static_assert(std::is_same_v<decltype(unit), std::monostate>);

    std::vector<std::function<int()>> functions;
    for (int i = 0; i < 5; ++i) functions.emplace_back([i] { return i * 10; });
    CHECK(driver.run(functions) == std::vector<int>{0, 10, 20, 30, 40});
  }
}

TEST_CASE("the sync driver runs in order in the calling process") {
  std::vector<int> order;
  const auto pid = ::getpid();
  std::vector<std::function<int()>> functions;
  for (int i = 0; i < 4; ++i) {
    functions.emplace_back([&, i] {
      order.push_back(i);
      return static_cast<int>(::getpid() == pid);
    });
  }
  CHECK(fanout::Concurrency::driver("sync").run(functions) == std::vector<int>{1, 1, 1, 1});
  CHECK(order == std::vector<int>{0, 1, 2, 3});
}

TEST_CASE("the sync driver starts no slot after the batch's deadline") {
  auto [first, second] = fanout::Concurrency::driver("sync")
                             .deadline(std::chrono::milliseconds(30))
                             .settle(
                                 [] {
                                   std::this_thread::sleep_for(std::chrono::milliseconds(60));
                                   return 1;
                                 },
                                 [] { return 2; });
  CHECK(first.value() == 1);  // it had started: the sync driver cannot stop it
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().kind() == fanout::ErrorKind::timeout);
  CHECK(second.error().remote_message().find("deadline of 30 ms") != std::string::npos);
}

TEST_CASE("the sync driver fails a slot that overran its time limit, as the others would") {
  auto [slow, quick] = fanout::Concurrency::driver("sync")
                           .timeout(std::chrono::milliseconds(20))
                           .settle(
                               [] {
                                 std::this_thread::sleep_for(std::chrono::milliseconds(60));
                                 return 1;
                               },
                               [] { return 2; });
  REQUIRE_FALSE(slow.ok());
  CHECK(slow.error().kind() == fanout::ErrorKind::timeout);
  CHECK(slow.error().remote_message().find("20 ms") != std::string::npos);
  CHECK(quick.value() == 2);
}

TEST_CASE("a progress callback hears of every settled slot, failures included") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    std::vector<std::pair<std::size_t, std::size_t>> reports;
    const auto driver = fanout::Concurrency::driver(name).on_progress(
        [&](std::size_t settled, std::size_t total) { reports.emplace_back(settled, total); });
    std::vector<fanout::Call<int>> calls{facade_square(1), facade_fail("logic"), facade_square(3)};
    (void)driver.settle(calls);
    REQUIRE(reports.size() == 3);
    for (std::size_t i = 0; i < reports.size(); ++i) {
      CHECK(reports[i].first == i + 1);
      CHECK(reports[i].second == 3);
    }
  }
}

TEST_CASE("each result can be taken as it completes while run still returns all of them by index") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    std::vector<fanout::Call<int>> calls;
    for (int i = 0; i < 6; ++i) calls.push_back(facade_sleepy(i, 6));
    std::vector<int> seen(6, -1);
    std::size_t callbacks = 0;
    const auto values = fanout::Concurrency::driver(name).max_concurrency(3).run(
        calls, [&](std::size_t index, fanout::Outcome<int>&& outcome) {
          ++callbacks;
          seen[index] = outcome.value();
        });
    CHECK(callbacks == 6);
    CHECK(values == std::vector<int>{0, 1, 2, 3, 4, 5});
    CHECK(seen == values);
  }
}

TEST_CASE("a cancelled batch fails every slot it did not finish with kind cancelled") {
  for (const char* name : kDrivers) {
    CAPTURE(name);
    fanout::CancellationToken token;
    std::vector<std::function<int()>> slots;
    slots.emplace_back([token]() mutable {
      token.cancel();  // the first slot cancels its own batch (sync runs in order)
      return 1;
    });
    for (int i = 0; i < 3; ++i) {
      slots.emplace_back([] {
        std::this_thread::sleep_for(std::chrono::seconds(30));
        return 2;
      });
    }
    if (std::string(name) == "fork") {
      // A forked child cannot reach the parent's token: cancel from a thread of the parent.
      slots[0] = [] { return 1; };
      std::thread([token]() mutable {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        token.cancel();
      }).detach();
    }
    const auto started = std::chrono::steady_clock::now();
    const auto outcomes = fanout::Concurrency::driver(name).max_concurrency(4).cancel_with(token).settle(slots);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(20));
    REQUIRE(outcomes.size() == 4);
    CHECK(outcomes[0].value() == 1);
    for (std::size_t i = 1; i < outcomes.size(); ++i) {
      REQUIRE_FALSE(outcomes[i].ok());
      CHECK(outcomes[i].error().kind() == fanout::ErrorKind::cancelled);
    }
    CHECK(fanout_test::child_count() == 0);
  }
}
