// Text that peers send (worker ids, task names, error messages) is escaped wherever the broker
// logs it and wherever `fanout status` shows it: a newline cannot forge a log line, an escape
// sequence cannot reach a terminal.
#include "broker_harness.hpp"

#include <sys/wait.h>

#include <string>

#include "child.hpp"
#include "cluster.hpp"
#include "printable.hpp"

using namespace broker_test;
using fanout::wire::printable;

TEST_CASE("printable keeps plain text and UTF-8, and escapes controls, escapes and bidi overrides") {
  CHECK(printable("worker-1 on héllo.example ✓") == "worker-1 on héllo.example ✓");
  CHECK(printable("a\nb\rc\td") == "a\\nb\\rc\\td");
  CHECK(printable("back\\slash") == "back\\\\slash");
  CHECK(printable("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m");
  CHECK(printable(std::string("nul\0byte", 8)) == "nul\\x00byte");
  CHECK(printable("del\x7f") == "del\\x7f");
  CHECK(printable("\xc2\x9b" "2J") == "\\u{9b}2J");                  // C1 CSI
  CHECK(printable("abc\xe2\x80\xae" "fed") == "abc\\u{202e}fed");     // right-to-left override
  CHECK(printable("bad \xff\xc3 utf8 \xed\xa0\x80") == "bad \\xff\\xc3 utf8 \\xed\\xa0\\x80");
  CHECK(printable("0123456789", 4) == "0123...(10 bytes)");
  CHECK(printable("") == "");
}

TEST_CASE("a worker id with a newline and an escape sequence is shown escaped in the log and in fanout status") {
  zmq::context_t context;
  fanout_test::BrokerProcess broker({"--log-level", "debug", "--heartbeat-ms", "50", "--liveness-ms", "300"});
  const std::string evil = "w1\n[fake] forged line \x1b[2J\x1b[31mred";
  {
    auto supervisor = make_supervisor(context, broker.endpoint(), evil, 1);
    FakeExecutor executor(context, broker.endpoint(),
                          ExecutorOptions{.id = evil + "/0/0", .worker = evil, .names = {"evil\ttask\x1b]0;title\x07"}});
    REQUIRE(wait_executors(context, broker.endpoint(), 1));

    const auto status = fanout_test::run_to_end({FANOUT_TOOL_PROGRAM, "status", "--broker", broker.endpoint()});
    INFO(status.out << status.err);
    REQUIRE(WIFEXITED(status.status));
    CHECK(WEXITSTATUS(status.status) == 0);
    CHECK(contains(status.out, "  w1\\n[fake] forged line \\x1b[2J\\x1b[31mred (version unknown): 1 executor(s)"));
    CHECK(contains(status.out, " evil\\ttask\\x1b]0;title\\x07\n"));
    CHECK_FALSE(contains(status.out, "\x1b"));
    CHECK_FALSE(contains(status.out, "\n[fake]"));
  }
  // The supervisor went silent: the broker logs its end, with the id escaped.
  const std::string escaped = "worker w1\\n[fake] forged line \\x1b[2J\\x1b[31mred";
  CHECK(fanout_test::eventually([&] { return contains(broker.log(), escaped + " went silent"); }));
  const std::string log = broker.log();
  INFO(log);
  CHECK(contains(log, "executor " + printable(evil + "/0/0") + " of " + escaped + " joined"));
  CHECK_FALSE(contains(log, "\x1b"));
  CHECK_FALSE(contains(log, "\n[fake]"));
}
