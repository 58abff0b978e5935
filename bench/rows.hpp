// rows.hpp: how fanout-bench and fanout-bench-sched measure a row in a process of its own.
//
// A row child is the benchmark re-run with its own arguments; it prints its figures as one JSON
// line and exits 0, or exits kExitWrongResult when a task returned something it should not have.
// For the process driver's remote mode the parent first starts a RemoteCluster (a fanout-broker on
// tcp loopback and a worker that is the benchmark itself) and gives the row child FANOUT_BROKER.
// The Python peers (bench/peers.py) print rows in the same JSON shape.
//
// Every process started here is a fanout_bench::Child: killed and reaped on every way out.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <fanout/fanout.hpp>

#include "bench_common.hpp"
#include "child.hpp"

namespace fanout_bench {

// The peers are Debian's interpreter, never a virtualenv's, so the figures match the anchors.
inline constexpr const char* kPython = "/usr/bin/python3";

// A result that is not what the task computes means the library is broken: no figure is worth
// printing then. A row child exits with kExitWrongResult, and the parent stops too.
class WrongResult : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
inline constexpr int kExitWrongResult = 2;

nlohmann::json to_json(const Row& row);
// The numbers of `object` as figures; "system" is the row's name. Other values are ignored.
Row from_json(const nlohmann::json& object);

// Returns when `status` is exit 0. Throws WrongResult for kExitWrongResult, std::runtime_error
// naming `what` for anything else.
void check_exit(int status, const std::string& what);

// Runs this program with `arguments` and `environment` and returns the row it prints (its first
// stdout line starting with '{'). Throws as check_exit does when the child fails, and
// std::runtime_error when no row comes within `limit`.
Row measure_in_child(const std::vector<std::string>& arguments, const std::vector<std::string>& environment,
                     std::chrono::seconds limit, const std::string& what);

bool is_process_row(std::string_view row);

// The driver a row measures ("sync", "fork", "process-local", "process-remote"). The process
// driver's mode comes from FANOUT_BROKER, which the parent sets for process-remote children only;
// throws std::runtime_error on a mismatch (the child was started wrongly).
fanout::Driver driver_for(std::string_view row);

// Runs small batches of a task returning its executor's pid until `expected` distinct executors
// have answered: the pool is up and every executor has announced itself to the broker. Throws
// std::runtime_error after 20 s.
void wait_for_executors(const fanout::Driver& driver, std::size_t expected, const std::string& row);

// A fanout-broker on an OS-chosen loopback port and one worker with `processes` executors, which is
// this program with FANOUT_WORKER set (a program that calls fanout::init becomes a worker of a
// remote broker that way, serving its own tasks). Both are killed when the cluster goes; stop()
// ends them the clean way.
class RemoteCluster {
 public:
  // Throws std::runtime_error when the broker does not say where it listens within 10 s.
  explicit RemoteCluster(int processes);

  const std::string& endpoint() const noexcept { return endpoint_; }
  pid_t broker_pid() const noexcept { return broker_.pid(); }

  // SIGTERM to the worker (it drains), then to the broker; throws unless both exit 0.
  void stop();

 private:
  BrokerProcess broker_;
  std::string endpoint_;
  std::optional<Child> worker_;
};

// Runs bench/peers.py --json with `arguments` (no shell in between: each argument reaches Python as
// given); one row per JSON line it prints. Throws std::runtime_error when it fails.
std::vector<Row> measure_peers(const std::vector<std::string>& arguments);

// One row per system, each figure the median over `runs` (each run holds the same systems in the
// same order); figures whose key ends in "_peak" take the maximum instead, so that one run that
// went over a cap shows.
std::vector<Row> median_of_runs(const std::vector<std::vector<Row>>& runs);

}  // namespace fanout_bench
