"""bench/w3b_roundtrip/workload.py: W3b, one small task through a process pool.

  round trip             submit one task (square an integer) and wait for its
                         result, one at a time, N times on a pool of 2: the
                         median, in us (lower is better). weft's
                         weft_executor_submit + weft_future_result against
                         ProcessPoolExecutor.submit().result() and
                         Pool.apply_async().get()
  crash to replacement   a pool of 1 worker: SIGKILL the worker, then time
                         until a task submitted at once has run on its
                         replacement; the median of N rounds, ms. weft only:
                         multiprocessing.Pool never replaces a killed worker's
                         task (it waits forever) and ProcessPoolExecutor
                         breaks for good
  ctrl-c to all stopped  a process runs a long map on a pool of 2 and gets
                         SIGINT (what Ctrl-C sends), with its default action;
                         time until both workers have ended (pidfds); the
                         median of N rounds, ms. weft only

Programs: bench/w3_procpool/weft_w3.c and py_w3.py. The issue's goals:
round trip <= 20 us; crash to replacement <= 10 ms; Ctrl-C to all workers
gone <= 100 ms.
"""
from benchlib import Program, Run, Target

ID = "W3b"
TITLE = "process pool: one task's round trip; crash to replacement; Ctrl-C to all stopped"
UNIT = "us"
HIGHER_IS_BETTER = False
UNITS = {"ms": False}

N_TRIPS = 5000
N_TRIPS_PY = 2000
N_CRASH = 50
N_CTRL_C = 10

PROGRAMS = [
    Program("weft_w3", "weft", lambda b: b.cc("weft_w3", ["w3_procpool/weft_w3.c"], weft=True)),
    Program("py_w3", "peer", lambda b: b.python("w3_procpool/py_w3.py"), apt=["python3"]),
]

TARGETS = [
    Target("weft.processes", None, variant="round trip", max_value=20.0),
    Target("weft.processes", None, variant="crash to replacement", max_value=10.0),
    Target("weft.processes", None, variant="ctrl-c to all stopped", max_value=100.0),
]


def runs(quick: bool):
    def r(program, impl, variant, n, timeout_s=120.0):
        return Run(program, impl, variant, [impl, variant, str(n)], timeout_s)

    return [
        r("weft_w3", "weft.processes", "round trip", N_TRIPS),
        r("py_w3", "python.ProcessPoolExecutor", "round trip", N_TRIPS_PY),
        r("py_w3", "python.multiprocessing.Pool", "round trip", N_TRIPS_PY),
        r("weft_w3", "weft.processes", "crash to replacement", N_CRASH),
        r("weft_w3", "weft.processes", "ctrl-c to all stopped", N_CTRL_C),
    ]
