// lookups: the classic case for fanout. Three independent slow lookups (200 ms each, standing in
// for a database query, an HTTP call, a file scan) run one after another take 600 ms; fanned out
// they take about as long as the slowest one.
//
//   fanout-lookups [--driver NAME]...   (default: sync, then the default driver, then fork)
//
// The default driver is the process driver in local mode: a pool of worker processes, one per
// core unless FANOUT_PROCESSES says otherwise, started in the background when the program first
// gets the driver (below, before the sync run: `--driver process` alone shows a batch that waits
// for the start) and reused. Like the fork driver, it runs as wide as the work: while tasks wait
// on slow ones, the pool grows (up to FANOUT_MAX_PROCESSES, at least 16), so the three lookups
// run at once on any number of cores.
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fanout/fanout.hpp>

namespace {

using namespace std::chrono_literals;

// Tasks are defined once, at namespace scope, in every binary that may run them.
const fanout::Task count_rows{"lookups.count_rows", [](std::string table) {
                                std::this_thread::sleep_for(200ms);  // the slow part
                                return static_cast<long>(table.size() * 1000);
                              }};
const fanout::Task find_user{"lookups.find_user", [](int id) {
                               std::this_thread::sleep_for(200ms);
                               return "user-" + std::to_string(id);
                             }};
const fanout::Task latest_prices{"lookups.latest_prices", [](std::vector<std::string> symbols) {
                                   std::this_thread::sleep_for(200ms);
                                   std::map<std::string, double> prices;
                                   double price = 100.0;
                                   for (const auto& symbol : symbols) prices[symbol] = price += 1.25;
                                   return prices;
                                 }};

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

void fan_out(const fanout::Driver& driver) {
  const auto start = std::chrono::steady_clock::now();
  auto [rows, user, prices] =
      driver.run(count_rows("orders"), find_user(42), latest_prices({"ACME", "INIT", "ZETA"}));
  const double elapsed = milliseconds_since(start);

  std::printf("%-7s  rows=%ld  user=%s  prices={", std::string(driver.name()).c_str(), rows, user.c_str());
  const char* separator = "";
  for (const auto& [symbol, price] : prices) {
    std::printf("%s%s: %.2f", separator, symbol.c_str(), price);
    separator = ", ";
  }
  std::printf("}  %.0f ms\n", elapsed);
}

}  // namespace

int main(int argc, char** argv) {
  fanout::init(argc, argv);

  std::vector<std::string> drivers;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string_view(argv[i]) == "--driver") drivers.emplace_back(argv[++i]);
  }
  if (drivers.empty()) drivers = {"sync", std::string(fanout::Concurrency::driver().name()), "fork"};

  std::printf("three lookups of 200 ms each; one after another they take 600 ms\n");
  for (const auto& name : drivers) fan_out(fanout::Concurrency::driver(name));

  // A keyed batch keeps its keys, in the order given, like a PHP array.
  const std::vector<std::pair<std::string, fanout::Call<long>>> tables{
      {"users", count_rows("users")}, {"orders", count_rows("orders")}, {"invoices", count_rows("invoices")}};
  const auto start = std::chrono::steady_clock::now();
  const auto counts = fanout::Concurrency::driver("fork").run(tables);
  std::printf("keyed (fork):");
  for (const auto& [table, count] : counts) std::printf(" %s=%ld", table.c_str(), count);
  std::printf("  %.0f ms\n", milliseconds_since(start));
  return 0;
}
