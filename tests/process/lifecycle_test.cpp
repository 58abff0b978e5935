// Local mode from outside: what happens to workers when their program dies, and to programs
// that forgot fanout::init.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "../unit/test_support.hpp"

namespace {

// A child process whose stdout we read line by line; killed and reaped at the end of the scope.
class Spawned {
 public:
  explicit Spawned(const char* path) {
    int ends[2];
    REQUIRE(::pipe(ends) == 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(ends[1], STDOUT_FILENO);
      ::close(ends[0]);
      ::close(ends[1]);
      ::unsetenv("FANOUT_BROKER");
      ::execl(path, path, static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(ends[1]);
    out_ = ::fdopen(ends[0], "r");
  }
  ~Spawned() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ != nullptr) std::fclose(out_);
  }
  Spawned(const Spawned&) = delete;
  Spawned& operator=(const Spawned&) = delete;

  std::optional<std::string> line() {
    char buffer[256];
    if (std::fgets(buffer, sizeof(buffer), out_) == nullptr) return std::nullopt;
    std::string text(buffer);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  }
  void kill_hard() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

}  // namespace

TEST_CASE("a program without fanout::init gets a clear error from the process driver") {
  fanout_test::ScopedEnv local("FANOUT_BROKER", nullptr);
  const auto output = fanout_test::run_capturing(FANOUT_FORGOT_INIT_PROGRAM);
  CHECK(WIFEXITED(output.status));
  CHECK(WEXITSTATUS(output.status) == 0);
  CHECK(output.text.find("refused:") != std::string::npos);
  CHECK(output.text.find("fanout::init(argc, argv)") != std::string::npos);
}

TEST_CASE("a re-executed worker that never reaches fanout::init stops instead of spawning workers") {
  fanout_test::ScopedEnv worker("FANOUT_LOCAL_WORKER", "ipc://@fanout-test-nobody-listens");
  const auto output = fanout_test::run_capturing(FANOUT_FORGOT_INIT_PROGRAM);
  CHECK(WIFEXITED(output.status));
  CHECK(WEXITSTATUS(output.status) == 70);
  CHECK(output.text.find("never called fanout::init") != std::string::npos);
}

TEST_CASE("killing a program with SIGKILL takes its local workers with it") {
  Spawned victim(FANOUT_VICTIM_PROGRAM);
  std::vector<pid_t> pids;
  while (auto line = victim.line()) {
    if (*line == "ready") break;
    if (!line->empty() && line->find_first_not_of("0123456789") == std::string::npos) pids.push_back(std::stoi(*line));
  }
  REQUIRE(pids.size() >= 2);  // the worker supervisor and at least one executor
  for (const pid_t pid : pids) CHECK(fanout_test::process_alive(pid));
  victim.kill_hard();
  for (const pid_t pid : pids) {
    CAPTURE(pid);
    CHECK(fanout_test::eventually([&] {
      // Gone, or a zombie waiting for init to reap it: either way it runs nothing any more.
      if (!fanout_test::process_alive(pid)) return true;
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string line;
      std::getline(stat, line);
      const auto close = line.rfind(')');
      return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
    }));
  }
}
