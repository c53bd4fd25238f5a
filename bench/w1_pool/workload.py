"""bench/w1_pool/workload.py: W1, a pool of 2 workers running N no-op tasks.

The figure is tasks/s = N / wall time from just before the first submit
until the submitter knows all N have run (w1.h). Variants by API:

  submit+future    one submit per task, each with its own completion handle
                   delivered to the submitter: weft's future, Python's
                   Future / AsyncResult, libuv's uv_work_t whose after_work_cb
                   runs on the submitting loop thread
  fire-and-forget  one submit per task, no handle: the last task signals
                   (weft with out == NULL, GLib's GThreadPool, a Go pool of 2
                   goroutines on a channel, OpenMP tasks + taskwait)
  batch            many tasks per call: weft_executor_submit_many (with
                   futures) and weft_executor_map; Python's ThreadPool.map

and two figures of a parked pool with no peer required (GLib's measured
beside weft's): "wake-up latency" in us (lower is better) and "idle CPU" in
% of one CPU (lower is better; 0 is the goal).

The issue's goals compare weft's future-per-task submit with GLib and libuv
(>= 2x) and weft's batched submit and map with them (>= 4x), whatever
variant the peer is listed under; and the idle CPU of a parked pool (~0 %).
"""
from benchlib import Program, Run, Target

ID = "W1"
TITLE = "pool of 2 workers: N no-op tasks, submit and wait for all"
UNIT = "tasks/s"
HIGHER_IS_BETTER = True
UNITS = {"us": False, "%CPU": False}  # the parked-pool rows: lower is better

N_NATIVE = 2_000_000      # C and Go: 2-20 M tasks/s, so 0.1-1 s per run
N_PYTHON = 50_000         # ThreadPoolExecutor.submit does ~80 k tasks/s
N_PYTHON_MAP = 2_000_000  # ThreadPool.map sends chunks: ~18 M tasks/s
WAKE_SAMPLES = 101        # each after >= 10 ms of idle: ~1.5 s
IDLE_MS = 1000            # the idle CPU window

PROGRAMS = [
    Program("weft_w1", "weft", lambda b: b.cc("weft_w1", ["w1_pool/weft_w1.c"], weft=True)),
    Program("glib_w1", "peer",
            lambda b: b.cc("glib_w1", ["w1_pool/glib_w1.c"], pkgconfig=["glib-2.0"]),
            apt=["libglib2.0-dev"]),
    # libuv sizes its one pool from the environment: the run's argv sets it.
    Program("uv_w1", "peer",
            lambda b: ["env", "UV_THREADPOOL_SIZE=2"]
            + b.cc("uv_w1", ["w1_pool/uv_w1.c"], pkgconfig=["libuv"]),
            apt=["libuv1-dev"]),
    Program("go_w1", "peer", lambda b: b.go("go_w1", "w1_pool/go_w1"), apt=["golang-go"]),
    Program("py_w1", "peer", lambda b: b.python("w1_pool/py_w1.py"), apt=["python3"]),
    # libgomp comes with gcc (gcc -> libgcc-12-dev -> libgomp1).
    Program("omp_w1", "peer",
            lambda b: b.cc("omp_w1", ["w1_pool/omp_w1.c"], libs=["-fopenmp"]),
            apt=["gcc", "libgomp1"]),
]

TARGETS = [
    Target("weft.threads", "glib.GThreadPool", 2.0,
           variant="submit+future", peer_variant="fire-and-forget"),
    Target("weft.threads", "libuv.uv_queue_work", 2.0, variant="submit+future"),
    Target("weft.submit_many", "glib.GThreadPool", 4.0,
           variant="batch", peer_variant="fire-and-forget"),
    Target("weft.submit_many", "libuv.uv_queue_work", 4.0,
           variant="batch", peer_variant="submit+future"),
    Target("weft.map", "glib.GThreadPool", 4.0, variant="batch", peer_variant="fire-and-forget"),
    Target("weft.map", "libuv.uv_queue_work", 4.0, variant="batch", peer_variant="submit+future"),
    Target("weft.threads", None, variant="idle CPU", max_value=0.01),
]


def runs(quick: bool):
    """Every measurement of one repetition, weft's and the peers'."""
    n = str(N_NATIVE)

    def r(program, impl, variant, arg, timeout_s=60.0):
        return Run(program, impl, variant, [impl, variant, str(arg)], timeout_s)

    return [
        r("weft_w1", "weft.threads", "submit+future", n),
        r("uv_w1", "libuv.uv_queue_work", "submit+future", n),
        r("py_w1", "python.ThreadPoolExecutor", "submit+future", N_PYTHON, 120.0),
        r("py_w1", "python.ThreadPool.apply_async", "submit+future", N_PYTHON, 120.0),

        r("weft_w1", "weft.threads", "fire-and-forget", n),
        r("glib_w1", "glib.GThreadPool", "fire-and-forget", n),
        r("go_w1", "go.pool2", "fire-and-forget", n),
        r("omp_w1", "openmp.task", "fire-and-forget", n),

        r("weft_w1", "weft.submit_many", "batch", n),
        r("weft_w1", "weft.map", "batch", n),
        r("py_w1", "python.ThreadPool.map", "batch", N_PYTHON_MAP, 120.0),

        r("weft_w1", "weft.threads", "wake-up latency", WAKE_SAMPLES),
        r("glib_w1", "glib.GThreadPool", "wake-up latency", WAKE_SAMPLES),
        r("weft_w1", "weft.threads", "idle CPU", IDLE_MS),
        r("glib_w1", "glib.GThreadPool", "idle CPU", IDLE_MS),
    ]
