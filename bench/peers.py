#!/usr/bin/python3
"""The Python peers of fanout-bench, measured the same way (see bench/README.md).

Run with Debian's /usr/bin/python3 so the figures compare with /work/shared/anchors.md:
  /usr/bin/python3 bench/peers.py            # a markdown table
  /usr/bin/python3 bench/peers.py --json     # one JSON object per system (what fanout-bench --peers reads)

Systems and workloads (the keys of the JSON objects are those of fanout-bench's rows):
  Python os.fork + pipe           W1: 3 children, each sends i*2 back through its own pipe; W6: a child
                                  per task, 2 at a time
  Python multiprocessing.Pool(2)  W1: apply_async x3 on a warm pool; W2: map in chunks of 1,250 (10,000
                                  and 1,000,000 tasks); W3: map of len over 1 MiB bytes (default chunks);
                                  W4: Pool(2) created to first result, in this running interpreter
  Python ProcessPoolExecutor(2)   the same with submit x3, map(chunksize=1,250), map (chunksize 1)

Scheduling mode (W7, what fanout-bench-sched reads):
  /usr/bin/python3 bench/peers.py --sched "$(build/bench/fanout-bench-sched --print-workloads)"
runs each workload (tasks that sleep, given as durations) on multiprocessing.Pool(2) with
imap_unordered(chunksize=1) and on ProcessPoolExecutor(2) with submit + as_completed, and prints per
system one JSON object of raw timings: when each task started and ended (inside the task) and when
its result reached this process, in ms from before the batch was submitted, all of CLOCK_MONOTONIC.
fanout-bench-sched turns them into figures, as it does for its own rows.
"""

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import time


def twice(i):
    return i * 2


def percentile(samples, fraction):
    """Nearest rank, the same definition fanout-bench uses."""
    ordered = sorted(samples)
    rank = math.ceil(fraction * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def fork_task(i):
    """Forks a child that writes twice(i) to a fresh pipe; returns (pid, read end)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.write(write_end, str(twice(i)).encode())
        os._exit(0)
    os.close(write_end)
    return pid, read_end


def read_all(fd):
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def fork_w1_batch():
    children = [fork_task(i) for i in range(3)]
    results = []
    for pid, read_end in children:
        results.append(int(read_all(read_end)))
        os.waitpid(pid, 0)
    return results


def fork_w6(tasks):
    """A child per task, at most 2 alive; returns the results in task order."""
    results = [None] * tasks
    running = {}  # pid -> (task index, read end)
    next_task = 0
    while next_task < tasks or running:
        while len(running) < 2 and next_task < tasks:
            pid, read_end = fork_task(next_task)
            running[pid] = (next_task, read_end)
            next_task += 1
        # The result is a few bytes, below PIPE_BUF, so a child never blocks on its pipe and
        # waiting for any exit first is safe.
        pid, _ = os.wait()
        index, read_end = running.pop(pid)
        results[index] = int(read_all(read_end))
    return results


def time_batches(one_batch, warmup, batches):
    for _ in range(warmup):
        one_batch()
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        one_batch()
        samples.append((time.perf_counter() - start) * 1e6)
    return percentile(samples, 0.50), percentile(samples, 0.99)


def checked(expected, batch):
    def run():
        got = batch()
        if got != expected:
            raise SystemExit(f"peers.py: wrong result {got}, expected {expected}")

    return run


def measure_fork(args):
    p50, p99 = time_batches(checked([0, 2, 4], fork_w1_batch), args.warmup, args.batches)
    start = time.perf_counter()
    results = fork_w6(args.tasks)
    per_task = (time.perf_counter() - start) * 1e6 / args.tasks
    if results != [twice(i) for i in range(args.tasks)]:
        raise SystemExit("peers.py: wrong W6 results from os.fork + pipe")
    return {"system": "Python os.fork + pipe", "w1_p50_us": p50, "w1_p99_us": p99, "w6_us_per_task": per_task}


def rss_mib():
    """(VmRSS, VmHWM) of this process in MiB."""
    figures = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                figures[line[:5]] = int(line.split()[1]) / 1024
    return figures["VmRSS"], figures["VmHWM"]


def reset_peak():
    """Sets VmHWM back to the current RSS, as fanout-bench does before its large batch."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def rate(tasks, seconds):
    return tasks / seconds


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def median(values):
    return percentile(values, 0.5)


def measure_pool_like(args, make_pool, submit_one, pool_map, row):
    """The workloads every pool peer shares. make_pool() gives a started pool (a context manager);
    submit_one(pool, i) a future-like with get(); pool_map(pool, function, inputs, chunksize)."""
    # W4 first, while this interpreter is small: from creating the pool to the first result.
    cold = []
    for _ in range(args.w4_trials):
        start = time.perf_counter()
        with make_pool() as pool:
            got = submit_one(pool, 21)()
            cold.append((time.perf_counter() - start) * 1e3)
            if got != 42:
                raise SystemExit(f"peers.py: {row['system']} W4 got {got}, expected 42")
    row["w4_inside_ms"] = median(cold)

    with make_pool() as pool:
        # Both workers started and the function's path exercised before the clock runs.
        pool_map(pool, twice, range(100), 10)

        def batch():
            pending = [submit_one(pool, i) for i in range(3)]
            return [result() for result in pending]

        row["w1_p50_us"], row["w1_p99_us"] = time_batches(checked([0, 2, 4], batch), args.warmup, args.batches)

        # The arguments are made inside the timed region, as fanout's calls are: map over a range,
        # as a caller would write it.
        inputs = list(range(args.w2_tasks))
        rates = []
        for _ in range(args.w2_runs):
            results, seconds = timed(lambda: pool_map(pool, twice, range(args.w2_tasks), W2_CHUNK))
            if results != [twice(i) for i in inputs]:
                raise SystemExit(f"peers.py: wrong W2 results from {row['system']}")
            rates.append(rate(args.w2_tasks, seconds))
        row["w2_small_tps"] = median(rates)

        inputs = list(range(args.w2_large))
        reset_peak()
        row["rss_before_mib"] = rss_mib()[0]
        results, seconds = timed(lambda: pool_map(pool, twice, inputs, W2_CHUNK))
        row["rss_peak_mib"] = rss_mib()[1]
        if results != [twice(i) for i in inputs]:
            raise SystemExit(f"peers.py: wrong W2 (large) results from {row['system']}")
        row["w2_large_tps"] = rate(args.w2_large, seconds)
        del inputs, results

        # Distinct objects: pickle sends an object it has seen in the same chunk as a reference,
        # so a list of one object repeated would carry one payload per chunk.
        payloads = [bytes([i % 256]) * args.w3_bytes for i in range(args.w3_tasks)]
        pool_map(pool, len, payloads[: min(4, args.w3_tasks)], None)
        sizes, seconds = timed(lambda: pool_map(pool, len, payloads, None))
        if sizes != [args.w3_bytes] * args.w3_tasks:
            raise SystemExit(f"peers.py: wrong W3 results from {row['system']}")
        row["w3_mbps"] = args.w3_bytes * args.w3_tasks / 1e6 / seconds
    return row


# Chunks of 1,250 tasks, as in the anchors (8 chunks for 10,000 tasks).
W2_CHUNK = 1250


def measure_pool(args):
    def pool_map(pool, function, inputs, chunksize):
        return pool.map(function, inputs, chunksize) if chunksize else pool.map(function, inputs)

    return measure_pool_like(
        args,
        lambda: multiprocessing.Pool(2),
        lambda pool, i: pool.apply_async(twice, (i,)).get,
        pool_map,
        {"system": "Python multiprocessing.Pool(2)"},
    )


def measure_executor(args):
    def pool_map(pool, function, inputs, chunksize):
        return list(pool.map(function, inputs, chunksize=chunksize or 1))

    return measure_pool_like(
        args,
        lambda: concurrent.futures.ProcessPoolExecutor(2),
        lambda pool, i: pool.submit(twice, i).result,
        pool_map,
        {"system": "Python ProcessPoolExecutor(2)"},
    )


def sleep_task(item):
    """W7: sleeps for item's duration; returns (index, start, end) in ns of CLOCK_MONOTONIC."""
    index, micros = item
    start = time.monotonic_ns()
    time.sleep(micros / 1e6)
    return index, start, time.monotonic_ns()


def pool_unordered(pool, items):
    """Results as they come: one task per chunk, so a worker takes a task only when it is free."""
    return pool.imap_unordered(sleep_task, items, chunksize=1)


def executor_unordered(pool, items):
    futures = [pool.submit(sleep_task, item) for item in items]
    for future in concurrent.futures.as_completed(futures):
        yield future.result()


def measure_sched(workloads, system, make_pool, unordered):
    """Raw W7 timings of one pool, keyed as fanout-bench-sched's rows are."""
    row = {"system": system, "slots": 2}  # both pools run 2 processes, with a cap or without
    with make_pool() as pool:
        list(unordered(pool, [(0, 20000), (1, 20000)]))  # both workers up before any clock runs
        for workload in workloads:
            name = workload["name"]
            before = list(enumerate(workload.get("before_us", [])))
            if sorted(index for index, _, _ in unordered(pool, before)) != [index for index, _ in before]:
                raise SystemExit(f"peers.py: {system} lost tasks of the batch before {name}")
            items = list(enumerate(workload["durations_us"]))
            seen = {}
            start = time.monotonic_ns()
            for index, began, ended in unordered(pool, items):
                if index in seen:
                    raise SystemExit(f"peers.py: {system} returned task {index} of {name} twice")
                seen[index] = (began, ended, time.monotonic_ns())
            row[f"{name}.makespan_ms"] = (time.monotonic_ns() - start) / 1e6
            if sorted(seen) != [index for index, _ in items]:
                raise SystemExit(f"peers.py: {system} lost tasks of {name}")
            for index, (began, ended, reached) in seen.items():
                row[f"{name}.{index}.start_ms"] = (began - start) / 1e6
                row[f"{name}.{index}.end_ms"] = (ended - start) / 1e6
                row[f"{name}.{index}.reached_ms"] = (reached - start) / 1e6
    return row


def format_figure(value, decimals=False):
    if value is None:
        return "—"
    if decimals or value < 10:
        return f"{value:.1f}"
    return f"{round(value):,}"


COLUMNS = [
    ("W1 p50 (µs)", "w1_p50_us", False),
    ("W1 p99 (µs)", "w1_p99_us", False),
    ("W2 small (tasks/s)", "w2_small_tps", False),
    ("W2 large (tasks/s)", "w2_large_tps", False),
    ("W3 (MB/s)", "w3_mbps", False),
    ("W4 in process (ms)", "w4_inside_ms", True),
    ("W6 (µs/task)", "w6_us_per_task", False),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON object per system instead of a table")
    parser.add_argument("--warmup", type=int, default=30, help="W1 batches before timing (default 30)")
    parser.add_argument("--batches", type=int, default=300, help="timed W1 batches (default 300)")
    parser.add_argument("--tasks", type=int, default=2000, help="W6 tasks (default 2000)")
    parser.add_argument("--w2-tasks", type=int, default=10000, help="W2 tasks, small batch (default 10000)")
    parser.add_argument("--w2-runs", type=int, default=5, help="W2 small-batch runs; the median counts (default 5)")
    parser.add_argument("--w2-large", type=int, default=1000000, help="W2 tasks, large batch (default 1000000)")
    parser.add_argument("--w3-tasks", type=int, default=100, help="W3 tasks (default 100)")
    parser.add_argument("--w3-bytes", type=int, default=1 << 20, help="W3 argument size (default 1 MiB)")
    parser.add_argument("--w4-trials", type=int, default=5, help="W4 cold starts; the median counts (default 5)")
    parser.add_argument("--sched", metavar="JSON", help="W7: measure these workloads only (JSON lines of raw timings)")
    args = parser.parse_args()

    if args.sched:
        workloads = json.loads(args.sched)
        for row in (
            measure_sched(workloads, "Python multiprocessing.Pool(2)", lambda: multiprocessing.Pool(2), pool_unordered),
            measure_sched(
                workloads,
                "Python ProcessPoolExecutor(2)",
                lambda: concurrent.futures.ProcessPoolExecutor(2),
                executor_unordered,
            ),
        ):
            print(json.dumps(row), flush=True)
        return

    rows = [measure_fork(args), measure_pool(args), measure_executor(args)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print("| system | " + " | ".join(title for title, _, _ in COLUMNS) + " |")
    print("| --- |" + " ---: |" * len(COLUMNS))
    for row in rows:
        cells = [format_figure(row.get(key), decimals) for _, key, decimals in COLUMNS]
        print(f"| {row['system']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
