"""bench/w1_pool/py_w1.py: W1 on Python's thread pools (peers).

Pools of 2 threads under Debian's /usr/bin/python3, created before the
clock; the task is a no-op that returns its argument, and every result is
checked (their sum must be 0 + 1 + ... + N-1) after the clock stops.

  IMPL                            VARIANT        what
  python.ThreadPoolExecutor       submit+future  ex.submit(task, i) for i in range(N),
                                                 then concurrent.futures.wait(all)
  python.ThreadPool.apply_async   submit+future  pool.apply_async(task, (i,)) for each,
                                                 then .wait() on each AsyncResult
  python.ThreadPool.map           batch          pool.map(task, range(N)) (Pool's own
                                                 chunksize: N / (4 x workers))

Command line: IMPL VARIANT N. Runs N/8 tasks as a warm-up (which also
starts ThreadPoolExecutor's lazily made threads), then N, and prints one
JSON line on stdout; a wrong result exits with status 1.
"""
import concurrent.futures
import json
import multiprocessing.pool
import sys
import time

WORKERS = 2


def task(i):
    return i


def run_tpe(ex, n):
    t0 = time.perf_counter()
    fs = [ex.submit(task, i) for i in range(n)]
    done, not_done = concurrent.futures.wait(fs)
    secs = time.perf_counter() - t0
    if not_done or len(done) != n:
        fail(f"{len(done)} of {n} futures done")
    return secs, sum(f.result() for f in fs)


def run_apply_async(pool, n):
    t0 = time.perf_counter()
    rs = [pool.apply_async(task, (i,)) for i in range(n)]
    for r in rs:
        r.wait()
    secs = time.perf_counter() - t0
    return secs, sum(r.get(0) for r in rs)


def run_map(pool, n):
    t0 = time.perf_counter()
    out = pool.map(task, range(n))
    secs = time.perf_counter() - t0
    if out != list(range(n)):
        fail(f"map returned {len(out)} results for {n} items, not each item in order")
    return secs, sum(out)


IMPLS = {
    ("python.ThreadPoolExecutor", "submit+future"):
        (lambda: concurrent.futures.ThreadPoolExecutor(WORKERS), run_tpe),
    ("python.ThreadPool.apply_async", "submit+future"):
        (lambda: multiprocessing.pool.ThreadPool(WORKERS), run_apply_async),
    ("python.ThreadPool.map", "batch"):
        (lambda: multiprocessing.pool.ThreadPool(WORKERS), run_map),
}


def fail(msg):
    sys.stderr.write(f"bench: {sys.argv[1]}: WRONG RESULT: {msg}\n")
    sys.exit(1)


def main():
    if len(sys.argv) != 4 or (sys.argv[1], sys.argv[2]) not in IMPLS:
        sys.stderr.write(f"usage: {sys.argv[0]} IMPL VARIANT N\n  IMPL VARIANT: "
                         + " | ".join(f"{i} {v}" for i, v in IMPLS) + "\n")
        sys.exit(2)
    impl, variant = sys.argv[1], sys.argv[2]
    try:
        n = int(sys.argv[3])
    except ValueError:
        n = 0
    if n <= 0:
        sys.stderr.write(f"bench: N must be a positive integer, got '{sys.argv[3]}'\n")
        sys.exit(1)
    make, run = IMPLS[(impl, variant)]
    pool = make()
    try:
        for k in (max(n // 8, 1), n):
            secs, total = run(pool, k)
            if total != k * (k - 1) // 2:
                fail(f"results sum to {total}, want {k * (k - 1) // 2}")
    finally:
        if isinstance(pool, concurrent.futures.Executor):
            pool.shutdown(wait=True)
        else:
            pool.close()
            pool.join()
    print(json.dumps({"workload": "W1", "impl": impl, "variant": variant, "n": n,
                      "value": n / secs, "unit": "tasks/s", "secs": round(secs, 6)},
                     separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
