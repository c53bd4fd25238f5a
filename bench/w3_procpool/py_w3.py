"""bench/w3_procpool/py_w3.py: W3 and W3b on Python's process pools (peers).

  IMPL                          VARIANT     what
  python.multiprocessing.Pool   map         Pool(2).map(f, range(N), chunksize=c), f(x) = x*x,
                                            for each c in CHUNKSIZES (None: Pool's own
                                            choice); the best rate is reported, with its
                                            chunksize ("at its best chunksize")
  python.ProcessPoolExecutor    map         ProcessPoolExecutor(2).map(f, range(N),
                                            chunksize=c), c in CHUNKSIZES[1:], the best
  python.multiprocessing.Pool   round trip  Pool(2).apply_async(f, (x,)).get(), N times,
                                            one at a time: the median, us
  python.ProcessPoolExecutor    round trip  ProcessPoolExecutor(2).submit(f, x).result(),
                                            N times: the median, us

The pools (fork) are made and warmed up before the clock starts. Every
result is checked (exit status 1 if wrong). Command line: IMPL VARIANT N.
Prints one JSON line on stdout.
"""
import concurrent.futures
import json
import multiprocessing
import statistics
import sys
import time

CHUNKSIZES = [None, 10_000, 100_000, 1_000_000]


def f(x):
    return x * x


def check_squares(r, n):
    if len(r) != n or r[0] != 0 or r[-1] != (n - 1) * (n - 1) or r[n // 2] != (n // 2) ** 2:
        sys.exit(f"py_w3: wrong map result")


def emit(workload, impl, variant, n, value, unit, secs, **extra):
    d = {"workload": workload, "impl": impl, "variant": variant, "n": n, "value": value,
         "unit": unit, "secs": secs}
    d.update(extra)
    print(json.dumps(d), flush=True)


def best_map(mapper, n, chunksizes):
    best = None
    for cs in chunksizes:
        t0 = time.perf_counter()
        r = list(mapper(f, range(n), chunksize=cs) if cs else mapper(f, range(n)))
        t = time.perf_counter() - t0
        check_squares(r, n)
        del r
        if best is None or t < best[0]:
            best = (t, cs)
        print(f"py_w3: chunksize {cs}: {n / t / 1e6:.2f} M items/s", file=sys.stderr)
    return best


def round_trips(call, n):
    for x in range(100):
        if call(x) != x * x:
            sys.exit("py_w3: wrong result")
    samples = []
    for x in range(n):
        t0 = time.perf_counter()
        y = call(x)
        samples.append(time.perf_counter() - t0)
        if y != x * x:
            sys.exit("py_w3: wrong result")
    return statistics.median(samples), sum(samples)


def main():
    impl, variant, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = multiprocessing.get_context("fork")
    if impl == "python.multiprocessing.Pool":
        with ctx.Pool(2) as pool:
            pool.map(f, range(1000))
            if variant == "map":
                t, cs = best_map(pool.map, n, CHUNKSIZES)
                emit("W3", impl, variant, n, n / t, "items/s", t, chunksize=cs)
            elif variant == "round trip":
                med, tot = round_trips(lambda x: pool.apply_async(f, (x,)).get(), n)
                emit("W3b", impl, variant, n, med * 1e6, "us", tot)
            else:
                sys.exit(f"py_w3: unknown variant {variant}")
    elif impl == "python.ProcessPoolExecutor":
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
            list(ex.map(f, range(1000)))
            if variant == "map":
                t, cs = best_map(ex.map, n, CHUNKSIZES[1:])
                emit("W3", impl, variant, n, n / t, "items/s", t, chunksize=cs)
            elif variant == "round trip":
                med, tot = round_trips(lambda x: ex.submit(f, x).result(), n)
                emit("W3b", impl, variant, n, med * 1e6, "us", tot)
            else:
                sys.exit(f"py_w3: unknown variant {variant}")
    else:
        sys.exit(f"py_w3: unknown impl {impl}")


if __name__ == "__main__":
    main()
