// Deferred batches at the broker: acknowledged once journaled, run as the broker's own, retried
// then recorded as dead, listed, retried and dropped on request, and recovered after a restart
// (also after SIGKILL of a real fanout-broker process).
#include "broker_harness.hpp"

#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "child.hpp"
#include "cluster.hpp"
#include "retry_backoff.hpp"

using namespace broker_test;

namespace {

fanout::broker::Config journal_config(const std::filesystem::path& dir, unsigned attempts = 3) {
  auto config = test_config();
  config.journal = dir;
  config.deferred_attempts = attempts;
  config.deferred_retry_delay = std::chrono::milliseconds(0);  // retried at once unless a test says otherwise
  return config;
}

// For a fake executor that is to hold several deferred tasks at once (see quick_task_config).
fanout::broker::Config quick_journal_config(const std::filesystem::path& dir) {
  auto config = journal_config(dir);
  config.unknown_task_time = quick_task_config().unknown_task_time;
  return config;
}

zmq::message_t deferred_window(std::uint64_t batch, std::uint32_t count, const std::string& name = "square") {
  std::vector<std::pair<std::uint32_t, std::string>> slots;
  for (std::uint32_t i = 0; i < count; ++i) slots.emplace_back(i, name);
  wire::OutMessage out;
  auto window = out.envelope().initTasks();
  fill_tasks(window, batch, count, slots, 0);
  window.setDeferred(true);
  for (std::uint32_t i = 0; i < count; ++i) {
    window.getTasks()[i].setKey("key-" + std::to_string(i));
    window.getTasks()[i].setHasKey(true);
  }
  return out.frame();
}

zmq::message_t deferred_request(wire::DeferredRequest::Action action, const std::string& receipt = "") {
  wire::OutMessage out;
  auto request = out.envelope().initDeferredRequest();
  request.setAction(action);
  request.setReceipt(receipt);
  return out.frame();
}

// Sends a DeferredRequest on a fresh socket and returns the report's frame.
std::optional<wire::InMessage> ask(zmq::context_t& context, const std::string& endpoint, zmq::message_t request) {
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(endpoint);
  socket.send(request, zmq::send_flags::none);
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  const auto deadline = Clock::now() + kSoon;
  while (Clock::now() < deadline) {
    zmq::poll(&item, 1, std::chrono::milliseconds(100));
    zmq::message_t frame;
    while (socket.recv(frame, zmq::recv_flags::dontwait)) {
      auto message = wire::InMessage::parse(std::move(frame));
      if (message && message->envelope().isDeferredReport()) return message;
    }
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("a deferred batch is acknowledged with a receipt once journaled, then runs without its client") {
  fanout_test::TempDir dir;
  zmq::context_t context;
  RunningBroker broker(journal_config(dir.path()), context);
  FakeClient client(context, broker.endpoint());
  client.send(deferred_window(21, 3));
  const auto receipt = client.wait_ack(21);
  REQUIRE(receipt.has_value());
  CHECK(*receipt == "1");
  CHECK(broker.counters().deferred_accepted == 1);
  CHECK(std::filesystem::file_size(dir.path() / "journal") > 8);

  // Workers come later; the tasks wait for them, then run.
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
  FakeExecutor executor(context, broker.endpoint(), ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 8});
  REQUIRE(executor.wait_tasks(3));
  const auto status = wait_status(context, broker.endpoint(), [](const StatusCounts& s) { return s.deferred_done == 3; });
  REQUIRE(status.has_value());
  CHECK(status->deferred_pending == 0);
  CHECK(status->deferred_dead == 0);
  // The results were the broker's: the client got none.
  CHECK(client.outcomes(21).empty());
}

TEST_CASE("a broker without a journal refuses deferred batches, naming --journal") {
  zmq::context_t context;
  RunningBroker broker(test_config(), context);
  FakeClient client(context, broker.endpoint());
  client.send(deferred_window(22, 2));
  const auto ack = client.wait_ack(22);
  REQUIRE(ack.has_value());
  CHECK(contains(*ack, "refused: "));
  CHECK(contains(*ack, "--journal"));
}

TEST_CASE("a deferred batch must arrive whole in one window, listed by index") {
  fanout_test::TempDir dir;
  zmq::context_t context;
  RunningBroker broker(journal_config(dir.path()), context);
  FakeClient client(context, broker.endpoint());
  client.send(tasks_window(23, 4, 0, 2));  // an ordinary window first: then a deferred one cannot join
  wire::OutMessage partial;
  auto window = partial.envelope().initTasks();
  fill_tasks(window, 24, 4, {{0, "square"}, {1, "square"}}, 0);
  window.setDeferred(true);
  client.send(partial.frame());
  const auto ack = client.wait_ack(24);
  REQUIRE(ack.has_value());
  CHECK(contains(*ack, "whole in one window"));
}

TEST_CASE("a failing deferred task is retried, then dead; it can be listed, retried and dropped") {
  fanout_test::TempDir dir;
  zmq::context_t context;
  RunningBroker broker(journal_config(dir.path(), 2), context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
  auto failing = std::make_unique<FakeExecutor>(
      context, broker.endpoint(), ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 8, .fail = true});
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());
  client.send(deferred_window(25, 2));
  REQUIRE(client.wait_ack(25) == std::optional<std::string>("1"));
  // Two attempts each, then both are dead.
  REQUIRE(failing->wait_tasks(4));
  REQUIRE(wait_status(context, broker.endpoint(), [](const StatusCounts& s) { return s.deferred_dead == 2; }).has_value());
  CHECK(failing->stats().tasks == 4);

  auto listed = ask(context, broker.endpoint(), deferred_request(wire::DeferredRequest::Action::LIST));
  REQUIRE(listed.has_value());
  const auto dead = listed->envelope().getDeferredReport().getDead();
  REQUIRE(dead.size() == 2);
  CHECK(std::string(dead[0].getReceipt().cStr()) == "1");
  CHECK(dead[0].getIndex() == 0);
  CHECK(std::string(dead[0].getName().cStr()) == "square");
  CHECK(std::string(dead[0].getKey().cStr()) == "key-0");
  CHECK(dead[0].getAttempts() == 2);  // every attempt it was given, the fatal one included
  CHECK(std::string(dead[0].getMessage().cStr()) == "boom");

  // A healthy executor replaces the failing one (which says goodbye first: the broker would
  // otherwise keep it, alive as long as its supervisor); retrying runs the dead tasks again.
  failing->peer().send(bye_message());
  REQUIRE(wait_executors(context, broker.endpoint(), 0));
  failing.reset();
  FakeExecutor healthy(context, broker.endpoint(), ExecutorOptions{.id = "w1/1/0", .worker = "w1", .slots = 8});
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  auto retried = ask(context, broker.endpoint(), deferred_request(wire::DeferredRequest::Action::RETRY, "1"));
  REQUIRE(retried.has_value());
  CHECK(retried->envelope().getDeferredReport().getAffected() == 2);
  REQUIRE(healthy.wait_tasks(2));
  REQUIRE(wait_status(context, broker.endpoint(), [](const StatusCounts& s) {
            return s.deferred_dead == 0 && s.deferred_done == 2;
          }).has_value());

  auto unknown = ask(context, broker.endpoint(), deferred_request(wire::DeferredRequest::Action::LIST, "999"));
  REQUIRE(unknown.has_value());
  CHECK(contains(unknown->envelope().getDeferredReport().getError().cStr(), "999"));
}

TEST_CASE("a failed deferred task waits out an exponential backoff before each retry") {
  fanout_test::TempDir dir;
  zmq::context_t context;
  auto config = journal_config(dir.path(), 3);
  config.deferred_retry_delay = std::chrono::milliseconds(400);
  RunningBroker broker(config, context);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
  FakeExecutor failing(context, broker.endpoint(), ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 8, .fail = true});
  REQUIRE(wait_executors(context, broker.endpoint(), 1));
  FakeClient client(context, broker.endpoint());
  client.send(deferred_window(26, 1));
  REQUIRE(client.wait_ack(26).has_value());
  using clock = std::chrono::steady_clock;
  const auto ms = [](clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  REQUIRE(failing.wait_tasks(1));
  const auto first = clock::now();
  REQUIRE(failing.wait_tasks(2, std::chrono::seconds(20)));
  const auto second = clock::now();
  REQUIRE(failing.wait_tasks(3, std::chrono::seconds(20)));
  const auto third = clock::now();
  // 400 ms after the first failure, then 800 ms after the second, each at least half of it (the
  // other half is random); never back to back. (Upper bounds are left to the unit test below: a
  // busy machine only makes waits longer.)
  CHECK(ms(second - first) >= 200);
  CHECK(ms(third - second) >= 400);
  REQUIRE(wait_status(context, broker.endpoint(), [](const StatusCounts& s) { return s.deferred_dead == 1; }).has_value());
  CHECK(failing.stats().tasks == 3);
}

TEST_CASE("retry backoff: doubles from the first delay up to the most, the second half random") {
  using std::chrono::milliseconds;
  fanout::broker::RetryBackoff backoff(milliseconds(1000), milliseconds(5000));
  std::set<milliseconds::rep> seen;
  for (int n = 0; n < 200; ++n) {
    const auto wait = backoff.after(1);
    CHECK(wait >= milliseconds(500));
    CHECK(wait <= milliseconds(1000));
    seen.insert(wait.count());
    const auto third = backoff.after(3);  // 4000 ms
    CHECK(third >= milliseconds(2000));
    CHECK(third <= milliseconds(4000));
    const auto late = backoff.after(1000);  // capped, no overflow
    CHECK(late >= milliseconds(2500));
    CHECK(late <= milliseconds(5000));
  }
  CHECK(seen.size() > 50);  // jitter: tasks that failed together come back apart
  fanout::broker::RetryBackoff off(milliseconds(0), milliseconds(5000));
  CHECK(off.after(7) == milliseconds(0));
}

TEST_CASE("dropping a dead deferred task forgets it for good") {
  fanout_test::TempDir dir;
  zmq::context_t context;
  {
    RunningBroker broker(journal_config(dir.path(), 1), context);
    auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
    FakeExecutor failing(context, broker.endpoint(), ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 8, .fail = true});
    REQUIRE(wait_executors(context, broker.endpoint(), 1));
    FakeClient client(context, broker.endpoint());
    client.send(deferred_window(26, 1));
    REQUIRE(client.wait_ack(26).has_value());
    REQUIRE(wait_status(context, broker.endpoint(), [](const StatusCounts& s) { return s.deferred_dead == 1; }).has_value());
    auto dropped = ask(context, broker.endpoint(), deferred_request(wire::DeferredRequest::Action::DROP));
    REQUIRE(dropped.has_value());
    CHECK(dropped->envelope().getDeferredReport().getAffected() == 1);
    REQUIRE(wait_status(context, broker.endpoint(), [](const StatusCounts& s) { return s.deferred_dead == 0; }).has_value());
  }
  // Nothing comes back after a restart.
  RunningBroker again(quick_journal_config(dir.path()), context);
  auto supervisor = make_supervisor(context, again.endpoint(), "w1", 1);
  FakeExecutor executor(context, again.endpoint(), ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 8});
  REQUIRE(wait_executors(context, again.endpoint(), 1));
  const auto status = query_status(context, again.endpoint());
  REQUIRE(status.has_value());
  CHECK(status->deferred_pending == 0);
  CHECK(status->deferred_dead == 0);
  CHECK(executor.stats().tasks == 0);
}

TEST_CASE("after a restart, acknowledged tasks that had not finished run; finished ones do not run again") {
  fanout_test::TempDir dir;
  zmq::context_t context;
  {
    RunningBroker broker(quick_journal_config(dir.path()), context);
    auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
    FakeExecutor executor(context, broker.endpoint(),
                          ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 8, .answer = false});
    REQUIRE(wait_executors(context, broker.endpoint(), 1));
    FakeClient client(context, broker.endpoint());
    client.send(deferred_window(27, 5));
    REQUIRE(client.wait_ack(27).has_value());
    REQUIRE(executor.wait_held(5));
    executor.answer(2);  // tasks 0 and 1 finish; 2..4 are running when the broker goes
    REQUIRE(wait_status(context, broker.endpoint(), [](const StatusCounts& s) { return s.deferred_done == 2; }).has_value());
  }
  RunningBroker again(quick_journal_config(dir.path()), context);
  auto supervisor = make_supervisor(context, again.endpoint(), "w1", 1);
  FakeExecutor executor(context, again.endpoint(),
                        ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 8, .answer = false});
  REQUIRE(executor.wait_held(3));
  std::set<std::uint32_t> ran;
  for (const auto& task : executor.held()) ran.insert(task.index);
  CHECK(ran == std::set<std::uint32_t>{2, 3, 4});
  executor.answer(3);
  REQUIRE(wait_status(context, again.endpoint(), [](const StatusCounts& s) { return s.deferred_done == 3; }).has_value());
  CHECK(executor.stats().tasks == 3);
  // A new batch gets a new receipt, never one handed out before the restart.
  FakeClient client(context, again.endpoint());
  client.send(deferred_window(28, 1));
  CHECK(client.wait_ack(28) == std::optional<std::string>("2"));
}

TEST_CASE("a deferred batch sent again after a restart (its ack was lost) gets its receipt again and runs once") {
  fanout_test::TempDir dir;
  zmq::context_t context;
  std::optional<std::string> receipt;
  {
    RunningBroker broker(journal_config(dir.path()), context);
    FakeClient client(context, broker.endpoint());
    client.send(deferred_window(29, 3));
    receipt = client.wait_ack(29);
    REQUIRE(receipt.has_value());
  }
  // The client never saw that ack (the broker died first): it sends the same batch to the new one.
  RunningBroker again(quick_journal_config(dir.path()), context);
  FakeClient client(context, again.endpoint());
  client.send(deferred_window(29, 3));
  CHECK(client.wait_ack(29) == receipt);
  auto supervisor = make_supervisor(context, again.endpoint(), "w1", 1);
  FakeExecutor executor(context, again.endpoint(), ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 8});
  REQUIRE(wait_status(context, again.endpoint(), [](const StatusCounts& s) { return s.deferred_done == 3; }).has_value());
  CHECK(executor.stats().tasks == 3);  // once each, not twice
  CHECK(wait_status(context, again.endpoint(), [](const StatusCounts& s) { return s.deferred_pending == 0; }).has_value());
}

TEST_CASE("SIGKILL of fanout-broker right after an acknowledgement loses no acknowledged task") {
  fanout_test::TempDir dir;
  zmq::context_t context;
  auto start = [&] {
    auto broker = std::make_unique<fanout_test::BrokerProcess>(std::vector<std::string>{
        "--journal", (dir.path() / "journal-dir").string(), "--heartbeat-ms", "50", "--liveness-ms", "300"});
    const std::string endpoint = broker->endpoint();
    return std::make_pair(std::move(broker), endpoint);
  };
  std::set<std::string> receipts;
  {
    auto [broker, endpoint] = start();
    FakeClient client(context, endpoint);
    for (std::uint64_t batch = 1; batch <= 20; ++batch) client.send(deferred_window(100 + batch, 3));
    // Kill the moment the last acknowledgement is in: every acknowledged batch must survive.
    REQUIRE(client.wait_ack(120).has_value());
    broker->kill();
    for (std::uint64_t batch = 1; batch <= 20; ++batch) {
      const auto ack = client.ack(100 + batch);
      REQUIRE(ack.has_value());
      receipts.insert(*ack);
    }
  }
  auto [broker, endpoint] = start();
  auto supervisor = make_supervisor(context, endpoint, "w1", 1);
  FakeExecutor executor(context, endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 64});
  const auto status =
      wait_status(context, endpoint, [](const StatusCounts& s) { return s.deferred_done == 60; }, std::chrono::seconds(20));
  INFO(broker->log());
  REQUIRE(status.has_value());
  CHECK(receipts.size() == 20);
  CHECK(executor.stats().tasks == 60);
}

TEST_CASE("a flipped bit in the first of three acknowledged batches costs that batch only: the others run") {
  fanout_test::TempDir dir;
  zmq::context_t context;
  const auto journal_dir = dir.path() / "journal-dir";
  std::vector<std::string> arguments{"--journal", journal_dir.string(), "--heartbeat-ms", "50", "--liveness-ms", "300"};
  {
    fanout_test::BrokerProcess broker(arguments);
    FakeClient client(context, broker.endpoint());
    for (std::uint64_t batch = 1; batch <= 3; ++batch) {
      client.send(deferred_window(200 + batch, 2));
      REQUIRE(client.wait_ack(200 + batch).has_value());
    }
    broker.kill();
  }
  // The first record follows the 16-byte header; flip one bit of its receipt.
  const auto file = journal_dir / "journal";
  std::string bytes = fanout_test::read_file(file);
  bytes[16 + 8 + 2] = static_cast<char>(bytes[16 + 8 + 2] ^ 0x10);
  fanout_test::write_file(file, bytes);

  fanout_test::BrokerProcess broker(arguments);
  auto supervisor = make_supervisor(context, broker.endpoint(), "w1", 1);
  FakeExecutor executor(context, broker.endpoint(), ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 8});
  const auto status = wait_status(context, broker.endpoint(), [](const StatusCounts& s) { return s.deferred_done == 4; });
  INFO(broker.log());
  REQUIRE(status.has_value());
  CHECK(status->deferred_pending == 0);
  CHECK(executor.stats().tasks == 4);
  CHECK(contains(broker.log(), "damaged bytes at offset 16"));
  CHECK(contains(broker.log(), "2 deferred batch(es) with 4 pending task(s) recovered"));
}

TEST_CASE("a second fanout-broker on a journal whose LOCK was deleted refuses to start, saying why") {
  fanout_test::TempDir dir;
  zmq::context_t context;
  const auto journal_dir = dir.path() / "journal-dir";
  fanout_test::BrokerProcess first({"--journal", journal_dir.string()});
  std::filesystem::remove(journal_dir / "LOCK");
  const auto second = fanout_test::run_to_end(
      {fanout_test::broker_program(), "--bind", "tcp://127.0.0.1:*", "--journal", journal_dir.string()});
  INFO(second.out << second.err);
  REQUIRE(WIFEXITED(second.status));
  CHECK(WEXITSTATUS(second.status) == 3);
  CHECK(contains(second.err, "is in use by another journal"));
  // The first one still owns its journal and takes deferred batches.
  FakeClient client(context, first.endpoint());
  client.send(deferred_window(301, 1));
  CHECK(client.wait_ack(301) == std::optional<std::string>("1"));
}

TEST_CASE("on a full disk fanout-broker keeps what it acknowledged, refuses new batches, and recovers by itself") {
  // A real full disk: fanout-broker in a mount namespace of its own, its journal on a 1 MiB tmpfs
  // (root only). The test fills that tmpfs through /proc/PID/root, which shows the broker's mounts.
  if (::geteuid() != 0) {
    MESSAGE("skipped: a private tmpfs needs root");
    return;
  }
  fanout_test::TempDir dir;
  zmq::context_t context;
  const std::string script = "mount --make-rprivate / && mount -t tmpfs -o size=1m tmpfs \"$1\" && shift && exec \"$@\"";
  fanout_test::Child broker({"/usr/bin/unshare", "-m", "/bin/sh", "-c", script, "sh", dir.path().string(),
                             fanout_test::broker_program(), "--bind", "tcp://127.0.0.1:*", "--journal",
                             (dir.path() / "journal-dir").string(), "--heartbeat-ms", "50", "--liveness-ms", "300"},
                            {.merge_output = true});
  const auto endpoint = broker.wait_for_line("listening ", std::chrono::seconds(20));
  INFO(broker.out());
  REQUIRE(endpoint.has_value());
  FakeClient client(context, *endpoint);
  client.send(deferred_window(401, 2));
  REQUIRE(client.wait_ack(401) == std::optional<std::string>("1"));

  const auto filler = std::filesystem::path("/proc") / std::to_string(broker.pid()) / "root" /
                      dir.path().relative_path() / "filler";
  {
    std::ofstream out(filler, std::ios::binary);
    REQUIRE(out.is_open());
    const std::string chunk(4096, 'f');
    while (out.write(chunk.data(), static_cast<std::streamsize>(chunk.size())) && out.flush()) {
    }
  }
  client.send(deferred_window(402, 400));  // a record of several pages: it cannot be written now
  REQUIRE(fanout_test::eventually([&] { return contains(broker.out(), "No space left on device"); }));
  CHECK_FALSE(client.ack(402).has_value());  // not acknowledged while it is not durable
  client.send(deferred_window(403, 1));
  const auto refused = client.wait_ack(403);
  REQUIRE(refused.has_value());
  CHECK(contains(*refused, "refused: "));
  CHECK(contains(*refused, "cannot write for now"));

  std::filesystem::remove(filler);
  CHECK(client.wait_ack(402, std::chrono::seconds(10)) == std::optional<std::string>("2"));
  CHECK(fanout_test::eventually([&] { return contains(broker.out(), "writing again"); }));
  // Every acknowledged task runs.
  auto supervisor = make_supervisor(context, *endpoint, "w1", 1);
  FakeExecutor executor(context, *endpoint, ExecutorOptions{.id = "w1/0/0", .worker = "w1", .slots = 512});
  const auto status = wait_status(
      context, *endpoint, [](const StatusCounts& s) { return s.deferred_done == 402; }, std::chrono::seconds(20));
  REQUIRE(status.has_value());
  CHECK(status->deferred_pending == 0);
}
