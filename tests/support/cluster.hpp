// cluster.hpp: fanout as it runs across machines, on loopback: a fanout-broker process on a port
// the OS picks (read back from its "listening ..." line), worker processes connected to it, a
// scratch directory, and the environment a client needs. Every process is a Child: killed with
// its group and reaped with the cluster, whatever the test did.
//
// What the broker knows (workers, executors, queues, deferred tasks) is read through the status
// API (broker_status.hpp), never from `fanout status` text.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "broker_status.hpp"
#include "child.hpp"
#include "test_support.hpp"

namespace fanout_test {

// The fanout-broker and fanout-worker binaries of this build.
const std::string& broker_program();
const std::string& worker_program();

// A fanout-broker process bound to tcp://127.0.0.1:* (the port of the OS's choosing) with
// `arguments` after --bind. Its environment is the test's minus FANOUT_*. Fails the test, with
// the broker's log, when it does not say where it listens within 20 s.
class BrokerProcess {
 public:
  explicit BrokerProcess(std::vector<std::string> arguments = {});

  // Where it listens, with the port: tcp://127.0.0.1:<port>.
  const std::string& endpoint() const noexcept { return endpoint_; }
  Child& process() { return *process_; }
  // What it wrote (stdout and stderr).
  std::string log() const { return process_->out(); }

  // SIGKILL to the broker, then reaped.
  void kill() { process_->kill(); }
  // Kills it, then starts a new fanout-broker with the same arguments on the same endpoint.
  void restart();

 private:
  void start(const std::string& bind);

  std::vector<std::string> arguments_;
  std::string endpoint_;
  std::unique_ptr<Child> process_;
};

struct WorkerOptions {
  // Empty: fanout-worker. Else a program of the test's own, run as a worker the way users run
  // theirs: FANOUT_WORKER=<endpoint>, FANOUT_PROCESSES=<processes>, no arguments.
  std::string program{};
  unsigned processes = 2;     // executors
  bool allow_shell = false;   // fanout-worker --allow-shell
  std::vector<std::string> load{};       // fanout-worker --load, one each
  std::vector<std::string> arguments{};  // more fanout-worker flags (--log-level info...)
  std::string name = "worker";           // in logs()
};

struct ClusterOptions {
  std::vector<std::string> broker_arguments{};  // after --bind (--heartbeat-ms 200, --journal DIR...)
  std::vector<WorkerOptions> workers{};
};

class Cluster {
 public:
  // Starts the broker and the workers, and waits until the broker lists every worker with all of
  // its executors (fails the test, with the logs, when that takes more than 20 s).
  explicit Cluster(ClusterOptions options = {});
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const std::string& endpoint() const noexcept { return broker_.endpoint(); }
  // "FANOUT_BROKER=<endpoint>": the environment entry of a child that is a client of this cluster.
  std::string client_env() const { return "FANOUT_BROKER=" + endpoint(); }
  // FANOUT_BROKER=<endpoint> in this process for a scope: this test program is a client.
  [[nodiscard]] ScopedEnv client_scope() const { return ScopedEnv("FANOUT_BROKER", endpoint().c_str()); }
  // A scratch directory for the test's files, removed with the cluster.
  const std::filesystem::path& dir() const noexcept { return dir_.path(); }

  BrokerProcess& broker() noexcept { return broker_; }
  // The n-th worker of the options.
  Child& worker(std::size_t n) { return *workers_.at(n).process; }
  // A further worker, connected to this broker and owned by the caller (not waited for).
  std::unique_ptr<Child> start_worker(const WorkerOptions& options) const;

  // The broker's counts now; nullopt when it does not answer within 5 s.
  std::optional<StatusCounts> status();
  // Waits until `condition` holds of the broker's counts; those counts, or nullopt at `limit`.
  std::optional<StatusCounts> wait_for(const std::function<bool(const StatusCounts&)>& condition,
                                       std::chrono::milliseconds limit = std::chrono::seconds(20));
  // Waits until the broker lists exactly `count` workers, or `count` executors over all of them.
  bool wait_for_workers(std::size_t count, std::chrono::milliseconds limit = std::chrono::seconds(20));
  bool wait_for_executors(std::size_t count, std::chrono::milliseconds limit = std::chrono::seconds(20));
  // Waits until nothing of any client is queued or running at the broker.
  bool wait_idle(std::chrono::milliseconds limit = std::chrono::seconds(10));

  // The broker's and the workers' logs, for a failure message.
  std::string logs() const;

 private:
  struct Worker {
    std::string name;
    std::unique_ptr<Child> process;
  };

  TempDir dir_;
  zmq::context_t context_;
  BrokerProcess broker_;
  std::vector<Worker> workers_;
};

}  // namespace fanout_test
