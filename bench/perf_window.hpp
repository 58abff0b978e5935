// perf_window.hpp: lets `perf record` see only the timed regions of fanout-bench.
//
//   mkfifo /tmp/ctl /tmp/ack
//   export FANOUT_BENCH_PERF_CTL=/tmp/ctl FANOUT_BENCH_PERF_ACK=/tmp/ack
//   perf record -D -1 --control fifo:/tmp/ctl,/tmp/ack -g -- fanout-bench --rows process-local --workloads w2
//
// perf follows the benchmark's child processes (the row's process, its local workers, the remote
// broker and worker); a PerfWindow in the row's process enables the events for as long as it
// lives. Without FANOUT_BENCH_PERF_CTL it does nothing.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string_view>

namespace fanout_bench {

class PerfWindow {
 public:
  PerfWindow() { command("enable\n"); }
  ~PerfWindow() { command("disable\n"); }
  PerfWindow(const PerfWindow&) = delete;
  PerfWindow& operator=(const PerfWindow&) = delete;

 private:
  struct Fifos {
    int control = -1;
    int ack = -1;
  };

  static Fifos& fifos() {
    static Fifos opened = [] {
      Fifos result;
      if (const char* control = std::getenv("FANOUT_BENCH_PERF_CTL"); control != nullptr && *control != '\0') {
        result.control = ::open(control, O_WRONLY | O_CLOEXEC);
      }
      if (const char* ack = std::getenv("FANOUT_BENCH_PERF_ACK"); ack != nullptr && *ack != '\0') {
        result.ack = ::open(ack, O_RDONLY | O_CLOEXEC);
      }
      return result;
    }();
    return opened;
  }

  // Sends a command and, with an ack fifo, waits until perf has carried it out.
  static void command(std::string_view text) {
    const Fifos& open = fifos();
    if (open.control < 0) return;
    if (::write(open.control, text.data(), text.size()) < 0) return;
    if (open.ack < 0) return;
    char reply[16];
    [[maybe_unused]] const auto got = ::read(open.ack, reply, sizeof(reply));
  }
};

}  // namespace fanout_bench
