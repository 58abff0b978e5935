# fanout.capnp: the one wire contract of fanout.
#
# Everything that crosses a process boundary (a pipe to a forked child, a ZeroMQ frame between
# client, broker and worker, a record in the deferred journal) is one of the structs below. A client
# written in another language needs only this file to submit tasks and read results.
#
# Evolution rules (Cap'n Proto's own): fields are only ever appended with the next ordinal, never
# renumbered or retyped; a reader that meets an unknown union member treats it as "unsupported".
# A change that old peers cannot ignore bumps `protocolVersion` below.

@0x96672d9ac3e2a0ec;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("fanout::wire");

const protocolVersion :UInt16 = 1;
# Carried by every Envelope. A peer that receives another major version answers with an Error of
# kind `badMessage` naming both versions and handles nothing else in that message.

# ---------------------------------------------------------------------------------------------
# Values: what arguments and results are made of.
# ---------------------------------------------------------------------------------------------

struct Value {
  # One dynamically typed value. The C++ codec maps its types onto these members exactly:
  # integers keep their signedness (int / uint), floats keep their width, a std::optional is
  # `none` or `some`, a std::tuple or a user struct is a `tuple`, a std::vector is a `list`, a
  # std::map / std::unordered_map is a `map`. Decoding checks the member against the C++ type it is
  # read into and reports both when they differ.
  union {
    none @0 :Void;             # std::nullopt, void results (std::monostate), an absent value.
    bool @1 :Bool;
    int @2 :Int64;             # every signed integer type and enums with a signed underlying type;
                               # range-checked when read into a narrower C++ type.
    uint @3 :UInt64;           # every unsigned integer type and enums with an unsigned underlying type.
    float32 @4 :Float32;       # float
    float64 @5 :Float64;       # double
    text @6 :Text;             # std::string (UTF-8 is the convention, not checked).
    bytes @7 :Data;            # std::vector<std::byte> / fanout::Bytes: binary, read without a copy.
    list @8 :List(Value);      # a homogeneous sequence, std::vector<T>.
    tuple @9 :List(Value);     # a fixed-arity heterogeneous sequence: std::tuple, std::pair, user structs.
    map @10 :List(MapEntry);   # key/value pairs in the order of the C++ container.
    some @11 :Value;           # an engaged std::optional; nests, so optional<optional<T>> is exact.
  }
}

struct MapEntry {
  key @0 :Value;
  value @1 :Value;
}

# ---------------------------------------------------------------------------------------------
# Tasks and results.
# ---------------------------------------------------------------------------------------------

struct Task {
  # One slot of a batch: a call of a registered task.
  batchId @0 :UInt64;        # Chosen by the client, unique among its batches in flight.
  index @1 :UInt32;          # Position in the batch; results are gathered by (batchId, index).
  key @2 :Text;              # The slot's key for keyed batches; empty when `hasKey` is false.
  hasKey @3 :Bool;           # Distinguishes the key "" from no key.
  name @4 :Text;             # Registered task name, e.g. "square".
  args @5 :Value;            # Always a `tuple`, one element per parameter of the task.
  deadlineUnixMs @6 :Int64;  # Absolute wall-clock deadline in ms since the epoch; 0 = none.
  attempt @7 :UInt16;        # 0 for the first try; raised each time the task is re-dispatched
                             # after losing its worker.
  timeoutMs @8 :UInt32;      # The per-task limit the caller asked for (0 = none), echoed in the
                             # "timeout" error so the message names the limit.
  shell @9 :ShellCommand;    # Set (and `name` is "fanout.shell") for a shell command task.
  avoidWorker @10 :Text;     # A retry of a task that failed on this worker: the broker prefers
                             # any other worker that serves it, and runs it here only if none does.
  slots @11 :UInt32;         # 0: one slot (above). N > 0: a unit, N consecutive slots of one quick
                             # task sent as one: `args` is a `list` of their N argument tuples and
                             # the Result's value the `list` of their N values, a slot that failed
                             # being `none` there and named in Result.slotErrors. The broker
                             # schedules, retries and counts a unit as one task; `index` is the
                             # unit's position in the batch as the broker sees it (the client maps
                             # it back to slots). A unit has no key and no per-task timeout.
  scalarArgs @12 :List(UInt64);  # A unit whose every slot's arguments are the same number (1 to 8)
                             # of bools and numbers, laid out together instead of `args` (unset):
                             # slot s's argument a is element s * arity + a, arity being
                             # scalarArgs.size / slots; each the member's bits as Value holds them
                             # (a bool 0 or 1, a float32's bits in the low half).
  scalarKinds @13 :List(UInt8);  # The Value member of each element of scalarArgs, by its number in
                             # Value's union: bool 1, int 2, uint 3, float32 4, float64 5.
}

struct ShellCommand {
  # A command for fanout::Process pools run on remote workers started with --allow-shell.
  argv @0 :List(Text);       # Executed directly when `useShell` is false.
  script @1 :Text;           # Run through /bin/sh -c when `useShell` is true.
  useShell @2 :Bool;
  workingDirectory @3 :Text;
  env @4 :List(EnvVar);
  input @5 :Data;            # Written to stdin, then stdin is closed.
  hasInput @6 :Bool;         # Distinguishes empty input from "no stdin redirection".
  idleTimeoutMs @7 :UInt32;  # Kill after this long without output; 0 = none.
  quiet @8 :Bool;            # Do not stream or keep output.
  stream @9 :Bool;           # Send output as it comes (OutputChunk), besides keeping it whole.
}

struct ShellOutcome {
  # How a shell command task ended; in Result.shell (the Result's value is then `none`).
  exitCode @0 :Int32;        # 128+N when signal N ended it
  signal @1 :Int32;          # 0 unless a signal ended it
  timedOut @2 :Bool;
  idleTimedOut @3 :Bool;
  started @4 :Bool;          # false: it could not start (errorOutput says why)
  output @5 :Data;
  errorOutput @6 :Data;
}

struct EnvVar {
  name @0 :Text;
  value @1 :Text;
  unset @2 :Bool;            # Remove the inherited variable instead of setting it.
}

struct Result {
  # The outcome of one slot.
  batchId @0 :UInt64;
  index @1 :UInt32;
  attempt @2 :UInt16;        # Which attempt produced it; lets the broker drop duplicates.
  union {
    value @3 :Value;         # The task returned this.
    error @4 :TaskError;     # The task (or the system running it) failed.
  }
  ranOn @5 :Text;            # Where it ran: "fork pid 1234", "worker host-a/3 pid 77", "sync".
  elapsedUs @6 :UInt64;      # Run time inside the executor (a unit's: all of its slots').
  exitCode @7 :Int32;        # Shell tasks: exit code (128+N for signal N).
  shell @8 :ShellOutcome;    # Shell tasks: how the command ended.
  slotErrors @9 :List(SlotError);  # A unit's slots that failed (Task.slots); the others succeeded.
  scalarValues @10 :List(UInt64);  # A unit sent with scalarArgs whose slots all ran on their
                             # scalars as they came: one value per slot, laid out together, and
                             # `value` is unset. Otherwise (or from a peer that does not write
                             # these) the answer is the `list` of values.
  scalarKinds @11 :List(UInt8);  # The Value member of each of scalarValues (Task.scalarKinds); 0 for
                             # a slot named in slotErrors.
}

struct SlotError {
  slot @0 :UInt32;           # Position in its unit, from 0.
  error @1 :TaskError;
}

struct TaskError {
  kind @0 :ErrorKind;
  remoteType @1 :Text;       # Demangled C++ exception type, e.g. "std::out_of_range"; empty when
                             # the failure is not an exception (crash, timeout...).
  message @2 :Text;          # what() of the exception, or a sentence from fanout itself.
  ranOn @3 :Text;            # Where it failed, as in Result.ranOn.
}

enum ErrorKind {
  # Tells the caller how to respond (Cap'n Proto's habit): retrying helps for some, not for others.
  exception @0;              # The task threw; remoteType and message say what.
  unknownTask @1;            # No task of that name is registered where it was sent.
  badArguments @2;           # The arguments do not decode into the task's parameter types.
  crashed @3;                # The process running it died (signal) or exited before answering.
  timeout @4;                # It ran past its limit and was killed; the message names the limit.
  workerLost @5;             # It took down its worker too many times.
  cancelled @6;              # The batch was cancelled before this slot finished.
  badResult @7;              # The result does not decode into the type the caller expects.
  refused @8;                # The worker will not run it (e.g. shell commands without --allow-shell).
  badMessage @9;             # The peer sent something unreadable or of another protocol version.
  unreachable @10;           # The broker could not be reached for longer than the client waits
                             # (its reconnect limit or the batch's deadline).
}

# ---------------------------------------------------------------------------------------------
# Messages between client, broker and worker (ZeroMQ frames; also journal records).
# ---------------------------------------------------------------------------------------------

struct Envelope {
  # One ZeroMQ message between two fanout peers is exactly one frame holding one Envelope in capnp's
  # flat format (ROUTER sockets add the routing-id frame in front). docs/protocol.md tells who
  # sends what when.
  version @0 :UInt16;              # protocolVersion of the sender.
  union {
    tasks @1 :TaskBatch;           # client -> broker (a window of a batch); broker -> executor
                                   # (forwarded as received when it fits, else a subset)
    results @2 :List(Result);      # executor -> broker -> client; all of one batch per message
    announce @3 :Announce;         # supervisor or executor -> broker: who I am, what I serve
    heartbeat @4 :Heartbeat;       # every peer, both ways
    cancel @5 :Cancel;             # client -> broker
    ack @6 :Ack;                   # broker -> client: a batch (window) was accepted or refused
    output @7 :OutputChunk;        # executor -> broker -> client: live output of shell tasks
    error @8 :TaskError;           # a complaint about the message received (kind badMessage...)
    statusRequest @9 :Void;        # `fanout status` -> broker
    status @10 :Status;            # broker -> `fanout status`
    executorLost @11 :ExecutorLost;  # supervisor -> broker: an executor died
    stopExecutor @12 :StopExecutor;  # broker -> supervisor: kill (and replace) an executor
    bye @13 :Void;                 # a peer leaving on purpose (client done, worker draining)
    deferredRequest @14 :DeferredRequest;  # `fanout deferred` -> broker
    deferredReport @15 :DeferredReport;    # broker -> `fanout deferred`
    handBack @16 :HandBack;        # executor -> broker: tasks it received and will not run
    reclaim @17 :Reclaim;          # broker -> executor: hand back tasks you have not started
    grow @18 :Grow;                # broker -> supervisor: start more executors (up to maxProcesses)
  }
}

struct TaskBatch {
  batchId @0 :UInt64;        # Random 64-bit id chosen by the client; unique among batches in flight.
  total @1 :UInt32;          # Slots in the whole batch; one message carries a window of them.
  timeoutMs @2 :UInt32;      # Per-batch limit covering queue wait and run time, from submission; 0 = none.
  tasks @3 :List(Task);
  deferred @4 :Bool;         # Fire-and-forget: acknowledged once journaled, results stay at the broker.
  maxRunning @5 :UInt32;     # At most this many of the batch's tasks at executors at once; 0 = no limit.
  settledBefore @6 :UInt32;  # A batch resubmitted to a broker that restarted (or forgot it): how
                             # many of its slots the client already has. They count as received
                             # and settled; the windows bring the others again.
}

struct Announce {
  role @0 :Role;
  enum Role {
    supervisor @0;           # the worker process: heartbeats for its executors, reports their deaths
    executor @1;             # runs tasks; receives `tasks`, answers `results`
  }
  workerId @1 :Text;         # The supervisor's id ("host/pid"); executors give their supervisor's.
  executorId @2 :Text;       # Executors only: unique id, also their ZeroMQ routing id.
  taskNames @3 :List(Text);  # What it serves; the broker sends nothing else.
  slots @4 :UInt32;          # Executors: how many tasks the broker may send ahead (credit).
  allowShell @5 :Bool;
  host @6 :Text;
  processes @7 :UInt32;      # Supervisors: executor processes supervised.
  pid @8 :Int32;
  draining @9 :Bool;         # Stopping: send nothing new.
  maxProcesses @10 :UInt32;  # Supervisors: how many executors it may run at most when asked to
                             # grow (0 or `processes`: a fixed number).
  fresh @11 :Bool;           # Executors: announced from a fresh connection (after a partition):
                             # what was sent to the previous one may never have arrived.
  version @12 :Text;         # Supervisors: the fanout release it runs ("0.1.0"), for `fanout status`;
                             # empty from a worker older than this field.
  extra @13 :Bool;           # Executors: started beyond the worker's own number (growth, for slow
                             # work), and leaving once idle. Work known to be quick goes to the
                             # worker's other executors while they have room: on one core each,
                             # tiny tasks only slow each other down.
}

struct TaskRef {
  batchId @0 :UInt64;
  index @1 :UInt32;
}

struct HandBack {
  # Tasks an executor received but has not started and will not run: it is draining, or the broker
  # reclaimed them (an idle executor can start them sooner). The broker queues them again, at the
  # front, without counting an attempt. Sent in answer to every Reclaim, empty when nothing was left.
  tasks @0 :List(TaskRef);
}

struct Reclaim {
  count @0 :UInt32;          # Hand back up to this many tasks not started, the last received first.
}

struct Grow {
  # Tasks wait while the executors run slow tasks (waiting on something, not computing): start
  # this many more executors, as far as maxProcesses allows. The extra ones stop by themselves
  # after a while with nothing to do (they say `bye`).
  executors @0 :UInt32;
}

struct Heartbeat {
  sentUnixMs @0 :Int64;
  resultBytes @1 :UInt64;    # Clients: bytes of results and output read on this connection since
                             # its previous heartbeat; the broker holds back the work of a client
                             # that has much unread (docs/limits.md).
}

struct Cancel {
  batchId @0 :UInt64;        # Queued tasks are dropped, running ones killed, slots fail as cancelled.
}

struct Ack {
  batchId @0 :UInt64;
  accepted @1 :UInt32;       # Tasks of the window accepted.
  receipt @2 :Text;          # Deferred batches: the id `fanout deferred` looks up.
  refused @3 :TaskError;     # Set when the window was refused (the batch's slots fail with it).
}

struct OutputChunk {
  batchId @0 :UInt64;
  index @1 :UInt32;
  stream @2 :Stream;
  data @3 :Data;
  enum Stream {
    out @0;
    err @1;
  }
}

struct ExecutorLost {
  executorId @0 :Text;
  signal @1 :Int32;          # Signal that ended it, 0 if it exited.
  exitCode @2 :Int32;
  running @3 :Bool;          # Whether it was running a task when it died:
  batchId @4 :UInt64;        # ...this one (read from memory the executor shares with its supervisor).
  index @5 :UInt32;
  stoppedByBroker @6 :Bool;  # It was killed on the broker's StopExecutor (timeout, cancel).
  drained @7 :Bool;          # It was killed when its worker's drain timed out: what it ran is not
                             # to blame, and runs again elsewhere without counting an attempt.
}

struct StopExecutor {
  executorId @0 :Text;
  reason @1 :Text;           # For the logs: "timeout of batch 7 after 200 ms".
}

struct Status {
  workers @0 :List(WorkerStatus);
  queued @1 :UInt64;
  running @2 :UInt64;
  deferredPending @3 :UInt64;
  deferredRunning @4 :UInt64;
  deferredDone @5 :UInt64;
  deferredDead @6 :UInt64;
  droppedMessages @7 :UInt64; # Malformed or refused messages since start.
  version @8 :Text;          # The broker's fanout release ("0.1.0"); empty from an older broker.
  refused @9 :List(Count);   # droppedMessages by reason ("bad_message", "refused", "unknown_peer"),
                             # as of the broker's last heartbeat.
  clients @10 :UInt64;       # Clients with batches or heard from within the liveness period.
}

struct Count {
  label @0 :Text;
  count @1 :UInt64;
}

struct DeferredRequest {
  # What `fanout deferred` asks a broker with a journal. `receipt` empty: every dead task;
  # `index` is used only with `hasIndex` (else the whole receipt).
  action @0 :Action;
  enum Action {
    list @0;                 # the dead tasks, with their errors
    retry @1;                # dead tasks back to pending, attempts reset
    drop @2;                 # dead tasks forgotten for good
  }
  receipt @1 :Text;
  index @2 :UInt32;
  hasIndex @3 :Bool;
}

struct DeferredReport {
  dead @0 :List(DeadTask);   # for `list`: every dead task matching the request
  affected @1 :UInt32;       # for `retry` and `drop`: how many tasks changed
  error @2 :Text;            # set when the request could not be served (no journal...)
}

struct DeadTask {
  receipt @0 :Text;
  index @1 :UInt32;
  name @2 :Text;
  key @3 :Text;
  attempts @4 :UInt32;
  kind @5 :ErrorKind;
  message @6 :Text;
  arguments @7 :Text;        # The task's arguments as text, e.g. (3, "abc") (value_text.hpp);
                             # empty from an older broker.
}

struct WorkerStatus {
  workerId @0 :Text;
  freeSlots @1 :UInt32;
  processes @2 :UInt32;
  taskNames @3 :List(Text);
  lastSeenMsAgo @4 :UInt32;
  host @5 :Text;
  version @6 :Text;          # As the worker announced it; empty from an older worker.
  busy @7 :UInt32;           # Executors with at least one task in flight.
  running @8 :UInt32;        # Tasks in flight at its executors.
  credit @9 :UInt32;         # Tasks its executors may hold at once (slots, prefetch included).
  restarts @10 :UInt64;      # Executors lost while the worker stayed connected.
}
