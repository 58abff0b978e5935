// remote_session.hpp: one long-lived connection to a broker through which shell commands run on
// workers started with --allow-shell: one DEALER socket, one thread, one batch for everything.
//
// Jobs are submitted one at a time (submit(seq, spec), from any thread) while earlier ones run.
// The session sends them as windows of ONE batch whose TaskBatch.maxRunning caps how many run at
// once, keeping at most `max_ahead` sent and not finished: the broker holds the ones beyond the
// cap and starts the next the moment one ends, with no round trip to this client. Each command is
// a task named "fanout.shell" with the command in Task.shell; its output comes back as
// OutputChunk messages while it runs (when `stream`), and whole in its result.
//
// The batch is open-ended: TaskBatch.total is 0xFFFFFFFF, because the session does not know how
// many jobs will come (`fanout run` reads stdin lazily). The broker accepts that as any other
// total (its checks are index < total and received + count <= total), and since received never
// reaches total it never sweeps the batch as finished: it keeps the (empty) batch until the client
// leaves. So the session always ends with `bye`, once every outcome it waited for has come in (or
// right after `cancel`, when destroyed with jobs outstanding); `bye` makes the broker forget the
// client and the batch at once. Results are never lost to this: the session says bye only when it
// wants no more of them. A session that vanishes without bye is dropped by the broker after its
// client liveness; until then the session heartbeats every 500 ms, jobs or not.
//
// Callbacks run on the session's thread, one at a time, never after the destructor returns.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <fanout/command.hpp>

namespace fanout::detail {

class RemoteSession {
 public:
  struct Options {
    std::string endpoint;              // the broker
    std::size_t max_running = 0;       // TaskBatch.maxRunning: at most this many run at once; 0: no cap
    std::size_t max_ahead = 16384;     // jobs sent to the broker and not finished, at most
    bool stream = false;               // ask workers for live output (OutputChunk messages)
  };
  // Output of job `seq` as it arrives (only with Options::stream).
  using OnOutput = std::function<void(std::size_t seq, OutputType type, std::string_view text)>;
  // Job `seq` has ended, or never will run; called exactly once per submit().
  using OnFinished = std::function<void(std::size_t seq, ProcessOutcome outcome)>;
  // The session itself failed (the broker cannot be reached, went silent, refused the batch or
  // lost it): called once, before every job outstanding is finished with a failure saying so.
  // Jobs submitted afterwards finish at once the same way.
  using OnFailure = std::function<void(const std::string& message)>;

  // Connects (ZeroMQ connects lazily: an absent broker shows as silence, reported through
  // on_failure after 4 s with jobs outstanding). Throws fanout::Error for an endpoint ZeroMQ
  // refuses.
  RemoteSession(Options options, OnOutput on_output, OnFinished on_finished, OnFailure on_failure = {});
  // With jobs outstanding: cancels the batch (the broker kills the running commands), says bye and
  // returns without waiting for their outcomes (no callback for them). Otherwise says bye.
  ~RemoteSession();
  RemoteSession(const RemoteSession&) = delete;
  RemoteSession& operator=(const RemoteSession&) = delete;

  // Queues job `seq` for the broker.
  void submit(std::size_t seq, ProcessSpec spec);
  // Cancels: the broker fails the jobs it holds and kills the running ones (no grace: the
  // worker's supervisor replaces the executor); those not sent yet finish with "stopped before it
  // started". Every job still gets its on_finished. Final: later submissions finish the same way.
  void stop();
  // Jobs submitted so far that went to the broker (they went in submission order).
  std::size_t sent() const noexcept;

 private:
  class Engine;  // the socket, the thread and the jobs in flight (remote_session.cpp)
  std::unique_ptr<Engine> engine_;
};

}  // namespace fanout::detail
