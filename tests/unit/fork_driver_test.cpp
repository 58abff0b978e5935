// The fork driver: a child per slot, bounded concurrency, results through pipes, and every way a
// child can go wrong turned into a clear slot failure with nothing left running.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fanout/fanout.hpp>

#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using fanout_test::read_file;

namespace {

fanout::Driver fork_driver() { return fanout::Concurrency::driver("fork"); }

std::size_t count_files(const fs::path& dir, const std::string& prefix) {
  std::size_t count = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind(prefix, 0) == 0) ++count;
  }
  return count;
}

struct Totals {
  long count = 0;
  std::map<std::string, double> by_name;
};
auto fanout_fields(Totals& totals) { return std::tie(totals.count, totals.by_name); }

const fanout::Task fork_square{"fork.square", [](int x) { return x * x; }};

}  // namespace

TEST_CASE("fork driver runs slots in separate processes at the same time") {
  fanout_test::TempDir dir;
  // A barrier through the file system: each child announces itself and waits (with a deadline)
  // until all three have. It can only pass when three children are alive at once.
  const auto meet = [&](int index) {
    std::ofstream(dir.path() / ("arrived-" + std::to_string(index))) << ::getpid();
    const bool all_met = fanout_test::eventually([&] { return count_files(dir.path(), "arrived-") == 3; });
    return std::make_pair(all_met, static_cast<int>(::getpid()));
  };
  auto [a, b, c] = fork_driver().max_concurrency(3).run([&] { return meet(0); }, [&] { return meet(1); },
                                                         [&] { return meet(2); });
  CHECK(a.first);
  CHECK(b.first);
  CHECK(c.first);
  CHECK(a.second != ::getpid());
  CHECK(a.second != b.second);
  CHECK(b.second != c.second);
}

TEST_CASE("fork driver never runs more children at once than its limit") {
  fanout_test::TempDir dir;
  std::vector<std::function<std::size_t()>> slots;
  for (int i = 0; i < 8; ++i) {
    slots.emplace_back([&, i] {
      const auto mine = dir.path() / ("running-" + std::to_string(i));
      std::ofstream(mine) << "x";
      const std::size_t seen = count_files(dir.path(), "running-");
      std::this_thread::sleep_for(10ms);
      fs::remove(mine);  // before the child exits, hence before the parent may start another
      return seen;
    });
  }
  const auto seen = fork_driver().max_concurrency(2).run(slots);
  REQUIRE(seen.size() == 8);
  for (const std::size_t running : seen) CHECK(running <= 2);
}

TEST_CASE("with no cap, slow fork slots all start at once, more of them than there are cores") {
  // One more than the cores (and than the old default width): every slot waits at a barrier that
  // opens only when all of them run at the same time.
  const std::size_t count = std::min<std::size_t>(std::max(1u, std::thread::hardware_concurrency()) + 1, 16);
  fanout_test::TempDir dir;
  std::vector<std::function<bool()>> slots;
  for (std::size_t i = 0; i < count; ++i) {
    slots.emplace_back([&, i] {
      std::ofstream(dir.path() / ("arrived-" + std::to_string(i))) << "x";
      return fanout_test::eventually([&] { return count_files(dir.path(), "arrived-") == count; });
    });
  }
  const auto started = std::chrono::steady_clock::now();
  const auto met = fork_driver().run(slots);
  for (std::size_t i = 0; i < count; ++i) {
    CAPTURE(i);
    CHECK(met[i]);
  }
  CHECK(std::chrono::steady_clock::now() - started < 5s);
}

TEST_CASE("FANOUT_MAX_PROCESSES bounds how wide a fork batch with no cap runs") {
  const fanout_test::ScopedEnv limit("FANOUT_MAX_PROCESSES", "2");
  fanout_test::TempDir dir;
  std::vector<std::function<std::size_t()>> slots;
  for (int i = 0; i < 6; ++i) {
    slots.emplace_back([&, i] {
      const auto mine = dir.path() / ("running-" + std::to_string(i));
      std::ofstream(mine) << "x";
      std::this_thread::sleep_for(30ms);  // slow: would widen the batch without the limit
      const std::size_t seen = count_files(dir.path(), "running-");
      fs::remove(mine);
      return seen;
    });
  }
  for (const std::size_t running : fork_driver().run(slots)) CHECK(running <= 2);
}

TEST_CASE("what a progress callback prints into a buffered stdout is printed once, not again by each child") {
  fanout_test::TempDir dir;
  const auto captured = dir.path() / "output.txt";
  {
    fanout_test::RedirectedOutput capture(captured);  // a file: fully buffered, as a pipe is
    (void)fork_driver()
        .max_concurrency(1)
        .on_progress([](std::size_t settled, std::size_t total) { std::printf("progress %zu/%zu\n", settled, total); })
        .run([] { return 1; }, [] { return 2; }, [] { return 3; }, [] { return 4; });
  }
  const std::string output = read_file(captured);
  INFO(output);
  std::size_t lines = 0;
  for (auto at = output.find("progress "); at != std::string::npos; at = output.find("progress ", at + 1)) ++lines;
  CHECK(lines == 4);
}

TEST_CASE("fork children see the parent's memory, captures included") {
  std::vector<long> data(100000);
  std::iota(data.begin(), data.end(), 1L);
  const std::string label = "sum";
  auto [sum, text] = fork_driver().run([&] { return std::accumulate(data.begin(), data.end(), 0L); },
                                       [&] { return label + "!"; });
  CHECK(sum == 5000050000L);
  CHECK(text == "sum!");
}

TEST_CASE("large results never hang: 16 results of 1 MiB at once") {
  std::vector<std::function<fanout::Bytes()>> slots;
  for (int i = 0; i < 16; ++i) {
    slots.emplace_back([i] { return fanout::Bytes(1 << 20, static_cast<std::byte>(i)); });
  }
  // The time limit turns a hang into a failure instead of a stuck test.
  const auto results = fork_driver().max_concurrency(16).timeout(60s).run(slots);
  REQUIRE(results.size() == 16);
  for (std::size_t i = 0; i < results.size(); ++i) {
    CHECK(results[i].size() == (1u << 20));
    CHECK(results[i].front() == static_cast<std::byte>(i));
    CHECK(results[i].back() == static_cast<std::byte>(i));
  }
}

TEST_CASE("a child that throws gives the exception's type name and message") {
  struct CustomFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  auto [custom, range, text] =
      fork_driver().settle([]() -> int { throw CustomFailure("custom went wrong"); },
                           []() -> int { return std::vector<int>{}.at(3); },
                           []() -> int { throw std::string("a thrown string"); });
  REQUIRE_FALSE(custom.ok());
  CHECK(custom.error().kind() == fanout::ErrorKind::exception);
  CHECK(custom.error().remote_type().find("CustomFailure") != std::string::npos);
  CHECK(custom.error().remote_message() == "custom went wrong");
  CHECK(custom.error().ran_on().rfind("fork pid ", 0) == 0);
  REQUIRE_FALSE(range.ok());
  CHECK(range.error().remote_type() == "std::out_of_range");
  CHECK_FALSE(range.error().remote_message().empty());
  REQUIRE_FALSE(text.ok());
  CHECK(text.error().remote_type() == "std::string");
}

TEST_CASE("a child killed by a signal gives kind crashed naming the signal") {
  auto [killed, fine] = fork_driver().settle(
      []() -> int {
        ::raise(SIGKILL);
        return 0;
      },
      [] { return 1; });
  REQUIRE_FALSE(killed.ok());
  CHECK(killed.error().kind() == fanout::ErrorKind::crashed);
  CHECK(killed.error().remote_message().find("signal 9 (SIGKILL") != std::string::npos);
  CHECK(fine.value() == 1);
}

TEST_CASE("a child that exits before answering gives kind crashed naming the exit code") {
  auto [exited, exited_zero] = fork_driver().settle(
      []() -> int {
        std::_Exit(3);
      },
      []() -> int {
        std::_Exit(0);
      });
  REQUIRE_FALSE(exited.ok());
  CHECK(exited.error().kind() == fanout::ErrorKind::crashed);
  CHECK(exited.error().remote_message().find("exited with code 3") != std::string::npos);
  REQUIRE_FALSE(exited_zero.ok());
  CHECK(exited_zero.error().remote_message().find("exited with code 0 before returning a result") !=
        std::string::npos);
}

TEST_CASE("a slot over its time limit is killed and fails with kind timeout naming the limit") {
  const auto started = std::chrono::steady_clock::now();
  auto [slow, quick] = fork_driver().timeout(200ms).settle(
      [] {
        std::this_thread::sleep_for(30s);
        return 0;
      },
      [] { return 7; });
  const auto elapsed = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(slow.ok());
  CHECK(slow.error().kind() == fanout::ErrorKind::timeout);
  CHECK(slow.error().remote_message().find("200 ms") != std::string::npos);
  CHECK(quick.value() == 7);
  CHECK(elapsed < 20s);  // killed, not waited for
  CHECK(fanout_test::child_count() == 0);
}

TEST_CASE("the fork driver's timeout limits each slot's run time, its deadline the whole batch") {
  const auto slow = [] {
    std::this_thread::sleep_for(600ms);
    return 1;
  };
  SUBCASE("four 600 ms slots two at a time all finish under a 1 s timeout") {
    std::vector<std::function<int()>> slots(4, slow);
    for (const auto& outcome : fork_driver().max_concurrency(2).timeout(1s).settle(slots)) CHECK(outcome.ok());
  }
  SUBCASE("with a 900 ms deadline, the second pair is killed and fails as timeout") {
    std::vector<std::function<int()>> slots(4, slow);
    const auto outcomes = fork_driver().max_concurrency(2).deadline(900ms).settle(slots);
    CHECK(outcomes[0].ok());
    CHECK(outcomes[1].ok());
    for (std::size_t i = 2; i < 4; ++i) {
      REQUIRE_FALSE(outcomes[i].ok());
      CHECK(outcomes[i].error().kind() == fanout::ErrorKind::timeout);
      CHECK(outcomes[i].error().remote_message().find("deadline of 900 ms") != std::string::npos);
    }
  }
  SUBCASE("slots that never started by the deadline fail as timeout too") {
    std::vector<std::function<int()>> slots(3, slow);
    const auto outcomes = fork_driver().max_concurrency(1).deadline(300ms).settle(slots);
    for (const auto& outcome : outcomes) {
      REQUIRE_FALSE(outcome.ok());
      CHECK(outcome.error().kind() == fanout::ErrorKind::timeout);
    }
  }
}

TEST_CASE("a timeout also stops what the slot started") {
  fanout_test::TempDir dir;
  const auto pid_file = dir.path() / "grandchild.pid";
  auto [slow] = fork_driver().timeout(300ms).settle([&] {
    const pid_t grandchild = ::fork();
    if (grandchild == 0) {
      ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr));
      std::_Exit(127);
    }
    std::ofstream(pid_file) << grandchild;
    ::waitpid(grandchild, nullptr, 0);
    return 0;
  });
  REQUIRE_FALSE(slow.ok());
  CHECK(slow.error().kind() == fanout::ErrorKind::timeout);
  REQUIRE(fs::exists(pid_file));
  const pid_t grandchild = std::stoi(read_file(pid_file));
  // Reparented to init (or a subreaper) after the kill, it must be gone soon.
  CHECK(fanout_test::eventually([&] { return !fanout_test::process_alive(grandchild); }));
}

TEST_CASE("nothing a task prints can corrupt a result, and the printed output is not lost") {
  fanout_test::TempDir dir;
  const auto captured = dir.path() / "output.txt";
  std::vector<std::string> results;
  {
    fanout_test::RedirectedOutput capture(captured);
    std::vector<std::function<std::string()>> slots;
    for (int i = 0; i < 4; ++i) {
      slots.emplace_back([i] {
        // Output that looks like a frame header, binary noise and a lot of text on both streams.
        const std::uint64_t fake_header = 3;
        std::fwrite(&fake_header, sizeof(fake_header), 1, stdout);
        for (int line = 0; line < 2000; ++line) std::printf("slot %d line %d\n", i, line);
        std::fprintf(stderr, "slot %d complains\n", i);
        ::write(STDOUT_FILENO, "raw\n", 4);
        return "result " + std::to_string(i);
      });
    }
    results = fork_driver().max_concurrency(4).run(slots);
  }
  CHECK(results == std::vector<std::string>{"result 0", "result 1", "result 2", "result 3"});
  const std::string output = read_file(captured);
  CHECK(output.find("slot 3 line 1999\n") != std::string::npos);
  CHECK(output.find("slot 0 complains") != std::string::npos);
}

TEST_CASE("output the parent had not flushed is printed once, not once per child") {
  fanout_test::TempDir dir;
  const auto captured = dir.path() / "output.txt";
  {
    fanout_test::RedirectedOutput capture(captured);
    std::printf("parent-before-fork");  // no newline: still in the stdio buffer
    (void)fork_driver().run([] { return 1; }, [] { return 2; }, [] { return 3; });
  }
  const std::string output = read_file(captured);
  std::size_t copies = 0;
  for (auto at = output.find("parent-before-fork"); at != std::string::npos;
       at = output.find("parent-before-fork", at + 1)) {
    ++copies;
  }
  CHECK(copies == 1);
}

TEST_CASE("no zombie or stray child remains after run returns or throws") {
  CHECK(fanout_test::child_count() == 0);
  (void)fork_driver().run([] { return 1; }, [] { return 2; });
  CHECK(fanout_test::child_count() == 0);
  CHECK_THROWS_AS((void)fork_driver().run([]() -> int { throw std::runtime_error("x"); }, [] { return 2; }),
                  fanout::TaskError);
  CHECK(fanout_test::child_count() == 0);
  (void)fork_driver().timeout(100ms).settle([] {
    std::this_thread::sleep_for(10s);
    return 0;
  });
  CHECK(fanout_test::child_count() == 0);
  int status = 0;
  CHECK(::waitpid(-1, &status, WNOHANG) == -1);  // ECHILD: nothing left to reap
}

TEST_CASE("registered tasks and user structs cross the fork boundary") {
  auto [totals, squared] = fork_driver().run([] { return Totals{3, {{"a", 1.5}, {"b", 2.5}}}; }, fork_square(9));
  CHECK(totals.count == 3);
  CHECK(totals.by_name.at("b") == 2.5);
  CHECK(squared == 81);
}
