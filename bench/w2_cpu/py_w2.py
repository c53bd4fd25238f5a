"""bench/w2_cpu/py_w2.py: W2 on Python's pools (peers).

TASKS calls of a naive recursive fib(n) in pure Python, on a pool of 1
worker and on a pool of 2; the figure is the speedup time(1) / time(2).
n is calibrated here, once at start, so that one call takes about 20 ms in
this Python (the same rule as w2.h: the smallest n reaching 20 ms, best of
3, or n - 1 if nearer). Runs go 1, 2, 2, 1 workers and the sums are
compared; each pool is made and warmed up before its clock starts; every
result is checked against an iterative fib (exit status 1 if wrong).

  IMPL                            VARIANT    pool
  python.ThreadPoolExecutor       threads    concurrent.futures.ThreadPoolExecutor(w),
                                             submit each call, wait for all (the GIL:
                                             ~1.0x is the expected answer)
  python.multiprocessing.Pool     processes  multiprocessing.Pool(w) (fork),
                                             map(fib, [n] * TASKS, chunksize=1)

Command line: IMPL VARIANT TASKS. Prints one JSON line on stdout.
"""
import concurrent.futures
import json
import multiprocessing
import sys
import time

TASK_MS = 20.0


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def fib_iter(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def time_one(n):
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        fib(n)
        best = min(best, time.perf_counter() - t0)
    return best


def calibrate():
    target = TASK_MS / 1e3
    n = 10
    t = prev = time_one(n)
    while t < target and n < 60:
        prev = t
        n += 1
        t = time_one(n)
    if n > 10 and target / prev < t / target:
        n, t = n - 1, prev
    return n, t * 1e3


class TPE:
    def __init__(self, workers):
        self.ex = concurrent.futures.ThreadPoolExecutor(workers)

    def run(self, n, tasks):
        fs = [self.ex.submit(fib, n) for _ in range(tasks)]
        concurrent.futures.wait(fs)
        return [f.result() for f in fs]

    def close(self):
        self.ex.shutdown(wait=True)


class MPPool:
    def __init__(self, workers):
        self.pool = multiprocessing.Pool(workers)

    def run(self, n, tasks):
        return self.pool.map(fib, [n] * tasks, chunksize=1)

    def close(self):
        self.pool.close()
        self.pool.join()


IMPLS = {
    ("python.ThreadPoolExecutor", "threads"): TPE,
    ("python.multiprocessing.Pool", "processes"): MPPool,
}


def fail(msg):
    sys.stderr.write(f"bench: {sys.argv[1]}: WRONG RESULT: {msg}\n")
    sys.exit(1)


def time_pool(make, workers, n, tasks):
    pool = make(workers)
    try:
        warm = pool.run(15, 2 * workers)  # threads / processes started
        if warm != [fib_iter(15)] * (2 * workers):
            fail(f"warm-up results {warm}")
        t0 = time.perf_counter()
        out = pool.run(n, tasks)
        secs = time.perf_counter() - t0
    finally:
        pool.close()
    want = fib_iter(n)
    if out != [want] * tasks:
        fail(f"got {len(out)} results, not all fib({n}) = {want}")
    return secs


def main():
    if len(sys.argv) != 4 or (sys.argv[1], sys.argv[2]) not in IMPLS:
        sys.stderr.write(f"usage: {sys.argv[0]} IMPL VARIANT TASKS\n  IMPL VARIANT: "
                         + " | ".join(f"{i} {v}" for i, v in IMPLS) + "\n")
        sys.exit(2)
    impl, variant = sys.argv[1], sys.argv[2]
    try:
        tasks = int(sys.argv[3])
    except ValueError:
        tasks = 0
    if tasks <= 0:
        sys.stderr.write(f"bench: TASKS must be a positive integer, got '{sys.argv[3]}'\n")
        sys.exit(1)
    make = IMPLS[(impl, variant)]
    n, call_ms = calibrate()
    sys.stderr.write(f"w2: {impl}: fib({n}) takes {call_ms:.1f} ms here (target {TASK_MS:.0f} ms)\n")
    t1 = time_pool(make, 1, n, tasks)
    t2 = time_pool(make, 2, n, tasks)
    t2 += time_pool(make, 2, n, tasks)
    t1 += time_pool(make, 1, n, tasks)
    sys.stderr.write(f"w2: {impl}: {tasks} tasks: 1 worker {t1:.3f} s, 2 workers {t2:.3f} s "
                     f"(sums of two runs each): {t1 / t2:.3f}x\n")
    print(json.dumps({"workload": "W2", "impl": impl, "variant": variant, "n": tasks,
                      "value": t1 / t2, "unit": "x", "secs": round(t1 + t2, 6), "fib_n": n,
                      "task_ms": round(call_ms, 3), "secs_1_worker": round(t1 / 2, 6),
                      "secs_2_workers": round(t2 / 2, 6)}, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
