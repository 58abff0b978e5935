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
  elapsedUs @6 :UInt64;      # Run time inside the executor.
  exitCode @7 :Int32;        # Shell tasks: exit code (128+N for signal N).
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
}

# ---------------------------------------------------------------------------------------------
# Messages between client, broker and worker (ZeroMQ frames; also journal records).
# ---------------------------------------------------------------------------------------------

struct Envelope {
  version @0 :UInt16;        # protocolVersion of the sender.
  union {
    submit @1 :Submit;             # client -> broker
    results @2 :List(Result);      # worker -> broker -> client, many per message
    dispatch @3 :List(Task);       # broker -> worker, many per message (only what the worker has room for)
    announce @4 :Announce;         # worker -> broker, on connect and whenever its offer changes
    heartbeat @5 :Heartbeat;       # both ways
    cancel @6 :Cancel;             # client -> broker -> worker
    ack @7 :Ack;                   # broker -> client, e.g. a deferred batch is on disk
    output @8 :OutputChunk;        # worker -> broker -> client, live shell output
    error @9 :TaskError;           # a protocol-level complaint about the message received
    credit @10 :Credit;            # client <-> broker flow control
    statusRequest @11 :Void;       # fanout status -> broker
    status @12 :Status;            # broker -> fanout status
  }
}

struct Submit {
  batchId @0 :UInt64;
  total @1 :UInt32;          # Slots in the whole batch; this message may carry only a window of them.
  tasks @2 :List(Task);
  deferred @3 :Bool;         # Fire-and-forget: acknowledge once journaled, no results to the client.
  timeoutMs @4 :UInt32;      # Per-batch limit covering queue wait and run time; 0 = none.
}

struct Announce {
  workerId @0 :Text;         # Stable for the worker's life, e.g. "host-a/1234".
  taskNames @1 :List(Text);  # What it serves; the broker sends nothing else.
  freeSlots @2 :UInt32;      # Credit: how many tasks it can start now.
  allowShell @3 :Bool;
  host @4 :Text;
  processes @5 :UInt32;      # Executor processes supervised.
}

struct Heartbeat {
  sentUnixMs @0 :Int64;
  freeSlots @1 :UInt32;      # Workers restate their credit so a lost message cannot starve them.
}

struct Cancel {
  batchId @0 :UInt64;
  indexes @1 :List(UInt32);  # Empty = the whole batch.
}

struct Ack {
  batchId @0 :UInt64;
  accepted @1 :UInt32;       # Slots accepted (written to the journal for deferred batches).
  receipt @2 :Text;          # For deferred batches: the id `fanout deferred` looks up.
}

struct Credit {
  batchId @0 :UInt64;
  slots @1 :UInt32;          # How many more tasks the receiver may send for this batch.
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

struct Status {
  workers @0 :List(WorkerStatus);
  queued @1 :UInt64;
  running @2 :UInt64;
  deferredPending @3 :UInt64;
  deferredRunning @4 :UInt64;
  deferredDone @5 :UInt64;
  deferredDead @6 :UInt64;
  droppedMessages @7 :UInt64; # Malformed or refused messages since start.
}

struct WorkerStatus {
  workerId @0 :Text;
  freeSlots @1 :UInt32;
  processes @2 :UInt32;
  taskNames @3 :List(Text);
  lastSeenMsAgo @4 :UInt32;
}
