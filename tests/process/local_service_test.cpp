// Deferred batches in local mode: a program defers a task and exits at once; the task still runs,
// in the program's local service, which then stops itself once idle.
#include <doctest/doctest.h>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "child.hpp"
#include "local_services.hpp"
#include "test_support.hpp"
#include "transport.hpp"

using namespace std::chrono_literals;

namespace {

// The deferring program, run to its end: it defers a task that waits for `go`, then writes `done`.
fanout_test::Finished defer_and_exit(const std::filesystem::path& go, const std::filesystem::path& done) {
  return fanout_test::run_to_end({FANOUT_DEFERRING_PROGRAM, go.string(), done.string()}, {.merge_output = true});
}

// A local service that answers the status question by which a program finds it, then takes the
// deferred window and is gone without a word: what a program meets when its service stops, idle,
// in between. Its socket file goes with it, as a stopped service's does.
class StoppingService {
 public:
  explicit StoppingService(const std::string& endpoint) : socket_(context_, zmq::socket_type::router) {
    socket_.bind(endpoint);
    thread_ = std::thread([this] { serve(); });
  }
  ~StoppingService() {
    stop_ = true;
    thread_.join();
  }
  StoppingService(const StoppingService&) = delete;
  StoppingService& operator=(const StoppingService&) = delete;

  bool took_window() const { return took_window_; }

 private:
  void serve() {
    while (!stop_ && !took_window_) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(10));
      zmq::message_t identity;
      zmq::message_t frame;
      if (!socket_.recv(identity, zmq::recv_flags::dontwait)) continue;
      if (!socket_.recv(frame)) continue;
      auto message = fanout::wire::InMessage::parse(std::move(frame));
      if (!message) continue;
      if (message->envelope().isStatusRequest()) {
        fanout::wire::OutMessage answer;
        answer.envelope().initStatus();
        socket_.send(identity, zmq::send_flags::sndmore);
        socket_.send(answer.frame(), zmq::send_flags::none);
      } else if (message->envelope().isTasks()) {
        took_window_ = true;
      }
    }
    socket_.close();
  }

  zmq::context_t context_;
  zmq::socket_t socket_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> took_window_{false};
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace

TEST_CASE("a program that exits right after defer still has its task run, by its local service") {
  fanout_test::TempDir dir;
  fanout_test::ScopedEnv state("XDG_STATE_HOME", dir.path().c_str());
  fanout_test::ScopedEnv idle("FANOUT_SERVICE_IDLE_MS", "500");
  fanout_test::ScopedEnv no_broker("FANOUT_BROKER", nullptr);
  const auto go = dir.path() / "go";
  const auto done = dir.path() / "done";
  const fanout_test::LocalServices services(dir.path());

  const auto caller = defer_and_exit(go, done);
  INFO(caller.out);
  REQUIRE(caller.status == 0);
  CHECK_FALSE(caller.out.empty());  // the receipt
  // The caller is gone; the task has not run yet (it waits for `go`).
  CHECK_FALSE(std::filesystem::exists(done));
  std::ofstream(go) << "";
  CHECK(fanout_test::eventually([&] { return std::filesystem::exists(done); }, 30s));
  // Idle again, the service stops itself.
  CHECK(fanout_test::eventually([&] { return !services.serving(); }, 30s));
}

TEST_CASE("a deferred task survives a SIGKILL of the local service and runs after it restarts") {
  fanout_test::TempDir dir;
  fanout_test::ScopedEnv state("XDG_STATE_HOME", dir.path().c_str());
  fanout_test::ScopedEnv idle("FANOUT_SERVICE_IDLE_MS", "500");
  fanout_test::ScopedEnv no_broker("FANOUT_BROKER", nullptr);
  const auto go = dir.path() / "go2";
  const auto done = dir.path() / "done2";
  const fanout_test::LocalServices services(dir.path());
  const auto first = defer_and_exit(go, done);
  REQUIRE(first.status == 0);
  // Kill the service (its workers die with it) while the task waits.
  REQUIRE(fanout_test::eventually([&] { return services.serving(); }, 10s));
  const pid_t service = services.latest_pid();
  REQUIRE(service > 0);
  ::kill(service, SIGKILL);
  CHECK(fanout_test::eventually([&] { return fanout_test::process_ended(service); }, 10s));
  CHECK_FALSE(std::filesystem::exists(done));
  // The next defer (of anything) starts the service again; its journal brings the first task back.
  std::ofstream(go) << "";
  const auto other = dir.path() / "done3";
  const auto second = defer_and_exit(go, other);
  REQUIRE(second.status == 0);
  CHECK(fanout_test::eventually([&] { return std::filesystem::exists(done) && std::filesystem::exists(other); }, 30s));
  CHECK(fanout_test::eventually([&] { return !services.serving(); }, 30s));
}

TEST_CASE("a program whose local service stops between being found and the deferred batch starts it again and defers there") {
  fanout_test::TempDir dir;
  fanout_test::ScopedEnv state("XDG_STATE_HOME", dir.path().c_str());
  fanout_test::ScopedEnv idle("FANOUT_SERVICE_IDLE_MS", "300");
  fanout_test::ScopedEnv no_broker("FANOUT_BROKER", nullptr);
  const auto go = dir.path() / "go";
  std::ofstream(go) << "";
  const fanout_test::LocalServices services(dir.path());
  // A first defer starts the real service, whose log says where it serves; then it stops, idle.
  const auto first = defer_and_exit(go, dir.path() / "first");
  REQUIRE(first.status == 0);
  REQUIRE(fanout_test::eventually([&] { return std::filesystem::exists(dir.path() / "first"); }, 30s));
  REQUIRE(fanout_test::eventually([&] { return !services.serving(); }, 30s));
  const std::string log = services.logs();
  const auto at = log.find("serving ");
  REQUIRE(at != std::string::npos);
  const auto begin = at + std::string("serving ").size();
  const std::string endpoint = log.substr(begin, log.find(' ', begin) - begin);

  // Where it served, one that answers the program's question, takes its window and is gone. The
  // program waits for its answer as long as a loaded machine may take to give it: one that took
  // it for absent would start a real service and never send it the window.
  fanout_test::ScopedEnv patient("FANOUT_SERVICE_PROBE_MS", "2000");
  StoppingService stopping(endpoint);
  const auto started = std::chrono::steady_clock::now();
  const auto second = defer_and_exit(go, dir.path() / "second");
  INFO(second.out);
  CHECK(stopping.took_window());
  REQUIRE(second.status == 0);  // with a receipt: the real service, started again, took it
  // Within the few seconds it takes to notice (not the 30 s an unacknowledged batch waits).
  CHECK(std::chrono::steady_clock::now() - started < 20s);
  CHECK(fanout_test::eventually([&] { return std::filesystem::exists(dir.path() / "second"); }, 30s));
  CHECK(services.starts() == 2);
  CHECK(fanout_test::eventually([&] { return !services.serving(); }, 30s));
}
