#!/usr/bin/python3
"""The Python peers of fanout-bench, measured the same way (see bench/README.md).

Run with Debian's /usr/bin/python3 so the figures compare with /work/shared/anchors.md:
  /usr/bin/python3 bench/peers.py            # a markdown table
  /usr/bin/python3 bench/peers.py --json     # one JSON object per system (what fanout-bench --peers reads)

Systems and workloads:
  Python os.fork + pipe           W1: 3 children, each sends i*2 back through its own pipe; W6: a child
                                  per task, 2 at a time
  Python multiprocessing.Pool(2)  W1: apply_async x3 on a warm pool (it has no child per task: no W6)
"""

import argparse
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


def measure_pool(args):
    with multiprocessing.Pool(2) as pool:
        # Both workers started and the function's path exercised before the clock runs.
        pool.map(twice, range(100))

        def batch():
            pending = [pool.apply_async(twice, (i,)) for i in range(3)]
            return [result.get() for result in pending]

        p50, p99 = time_batches(checked([0, 2, 4], batch), args.warmup, args.batches)
    return {"system": "Python multiprocessing.Pool(2)", "w1_p50_us": p50, "w1_p99_us": p99, "w6_us_per_task": None}


def format_us(value):
    if value is None:
        return "—"
    return f"{value:.1f}" if value < 10 else f"{round(value):,}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON object per system instead of a table")
    parser.add_argument("--warmup", type=int, default=30, help="W1 batches before timing (default 30)")
    parser.add_argument("--batches", type=int, default=300, help="timed W1 batches (default 300)")
    parser.add_argument("--tasks", type=int, default=2000, help="W6 tasks (default 2000)")
    args = parser.parse_args()

    rows = [measure_fork(args), measure_pool(args)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print("| system | W1 p50 (µs) | W1 p99 (µs) | W6 (µs/task) |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['system']} | {format_us(row['w1_p50_us'])} | {format_us(row['w1_p99_us'])} "
              f"| {format_us(row['w6_us_per_task'])} |")


if __name__ == "__main__":
    main()
