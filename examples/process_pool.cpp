// process_pool.cpp: shell commands at once with fanout::Process (the README's pool example).
// Runs locally; with FANOUT_PROCESS_BROKER=tcp://... (workers started with --allow-shell) the same
// pool runs on remote workers.
#include <chrono>
#include <iostream>
#include <string>

#include <fanout/fanout.hpp>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  fanout::init(argc, argv);

  // One command, waited for.
  const auto uname = fanout::Process::run({"uname", "-s"});
  std::cout << "uname: " << uname.output();

  // A pool: keys, per-command options, live output, one result per command.
  auto pool = fanout::Process::pool([](fanout::Pool& p) {
                p.as("count").command("seq 1 5 | wc -l");
                p.as("greet").command("cat").input("hello from stdin");
                p.as("slow").command("sleep 30").timeout(300ms);
                p.as("broken").command({"ls", "/nonexistent-dir"});
              })
                  .concurrency(4)
                  .start([](fanout::OutputType type, std::string_view text, const std::string& key) {
                    // Chunks as they arrive (not whole lines), from the pool's thread.
                    if (type == fanout::OutputType::err) std::cerr << key << " wrote " << text.size() << " bytes to stderr\n";
                  });
  const fanout::PoolResults results = pool.wait();

  for (const auto& result : results) {
    std::cout << result.key() << ": exit " << result.exit_code() << (result.timed_out() ? " (timed out)" : "")
              << ", output '" << result.output().substr(0, result.output().find('\n')) << "'\n";
  }
  try {
    results["broken"].throw_if_failed();
  } catch (const fanout::ProcessFailed& failed) {
    std::cout << "broken failed as expected: exit " << failed.result().exit_code() << "\n";
  }
  return results["count"].output() == "5\n" && results["greet"].output() == "hello from stdin" ? 0 : 1;
}
