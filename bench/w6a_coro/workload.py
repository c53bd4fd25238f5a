"""bench/w6a_coro/workload.py: W6a, coroutine ping-pong on one thread.

Two coroutines on one thread pass an integer back and forth, N round trips;
the figure is round trips/s. weft: two unbuffered weft_chan (weft_w6.c);
Go: two unbuffered channels under GOMAXPROCS(1); greenlet: raw
greenlet.switch between the main greenlet and one other; gevent: two
greenlets handing over through two gevent.event.Event.

Also "switch": the time of one switch between two coroutines that only
yield to each other (ns, lower is better): weft_coro_yield, Go's
runtime.Gosched under GOMAXPROCS(1), a raw greenlet.switch.

The programs live here; W6b (bench/w6b_spawn) runs the same ones.
"""
from benchlib import Program, Run, Target

ID = "W6a"
TITLE = "coroutine ping-pong: N round trips between two coroutines on one thread"
UNIT = "roundtrips/s"
HIGHER_IS_BETTER = True
UNITS = {"ns": False}  # the switch rows: lower is better

N_NATIVE = 10_000_000  # weft and Go: 3-20 M round trips/s, so 0.5-3 s per run
N_GREENLET = 1_000_000
N_GEVENT = 200_000     # gevent Events: ~0.2-0.3 M/s

PROGRAMS = [
    Program("weft_w6", "weft", lambda b: b.cc("weft_w6", ["w6a_coro/weft_w6.c"], weft=True)),
    Program("go_w6", "peer", lambda b: b.go("go_w6", "w6a_coro/go_w6"), apt=["golang-go"]),
    Program("py_w6", "peer", lambda b: b.python("w6a_coro/py_w6.py"),
            apt=["python3", "python3-gevent", "python3-greenlet"]),
]

# The goal: >= 4x Go's round trips per second on one thread.
TARGETS = [
    Target("weft", "go", 4.0, variant="pingpong"),
]


def runs(quick: bool):
    """Every measurement of one repetition, weft's and the peers'."""
    def r(program, impl, variant, n, timeout_s=60.0):
        return Run(program, impl, variant, [impl, variant, str(n)], timeout_s)

    return [
        r("weft_w6", "weft", "pingpong", N_NATIVE),
        r("go_w6", "go", "pingpong", N_NATIVE),
        r("py_w6", "greenlet", "pingpong", N_GREENLET),
        r("py_w6", "gevent", "pingpong", N_GEVENT, 120.0),
        r("weft_w6", "weft", "switch", N_NATIVE),
        r("go_w6", "go", "switch", N_NATIVE),
        r("py_w6", "greenlet", "switch", N_GREENLET),
    ]
