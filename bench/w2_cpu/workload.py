"""bench/w2_cpu/workload.py: W2, CPU-bound tasks on 1 worker vs 2.

64 calls of a naive recursive fib(n), n calibrated by each program at start
so that one call takes ~20 ms, run on a pool of 1 worker and on a pool of 2;
the figure is the speedup time(1 worker) / time(2 workers), "x", where 2.0
is the physical limit on this 2-core machine (w2.h has the rules: runs
1, 2, 2, 1 workers, sums compared, every result checked).

Variants by where the work runs: "threads" (weft's thread pool, GLib's
GThreadPool, OpenMP tasks, Python's ThreadPoolExecutor, which the GIL keeps
at ~1.0x) and "processes" (weft's process pool, Python's
multiprocessing.Pool).

The issue's goal: >= 1.95x for weft, on threads and on processes.
"""
from benchlib import Program, Run, Target

ID = "W2"
TITLE = "64 CPU-bound tasks of ~20 ms (naive fib): speedup of 2 workers over 1"
UNIT = "x"
HIGHER_IS_BETTER = True

TASKS = 64

PROGRAMS = [
    Program("weft_w2", "weft", lambda b: b.cc("weft_w2", ["w2_cpu/weft_w2.c"], weft=True)),
    Program("glib_w2", "peer",
            lambda b: b.cc("glib_w2", ["w2_cpu/glib_w2.c"], pkgconfig=["glib-2.0"]),
            apt=["libglib2.0-dev"]),
    Program("omp_w2", "peer",
            lambda b: b.cc("omp_w2", ["w2_cpu/omp_w2.c"], libs=["-fopenmp"]),
            apt=["gcc", "libgomp1"]),
    Program("py_w2", "peer", lambda b: b.python("w2_cpu/py_w2.py"), apt=["python3"]),
]

TARGETS = [
    Target("weft.threads", None, variant="threads", min_value=1.95),
    Target("weft.processes", None, variant="processes", min_value=1.95),
]


def runs(quick: bool):
    """Every measurement of one repetition, weft's and the peers'."""
    def r(program, impl, variant):
        return Run(program, impl, variant, [impl, variant, str(TASKS)], 60.0)

    return [
        r("weft_w2", "weft.threads", "threads"),
        r("glib_w2", "glib.GThreadPool", "threads"),
        r("omp_w2", "openmp.task", "threads"),
        r("py_w2", "python.ThreadPoolExecutor", "threads"),
        r("weft_w2", "weft.processes", "processes"),
        r("py_w2", "python.multiprocessing.Pool", "processes"),
    ]
