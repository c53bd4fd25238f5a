"""bench/w6b_spawn/workload.py: W6b, spawn and join many coroutines.

Spawn N coroutines that each yield once, then wait for all of them; the
figure is coroutines/s from the first spawn to the end of the wait, and
(variant "mem") the growth of the process's peak RSS over the run (the
kernel's KiB figure, rounded up to the next KiB so that a growth under 1 KiB
is an upper bound rather than 0) divided by N, in bytes per coroutine (lower
is better).

weft: weft_coro_spawn into a group, weft_coro_group_join, one thread. A
weft spawn runs the child at once (as libdill does) and the spawner waits at
the back of the ready queue, so a loop of short spawns keeps only a few
coroutines alive at a time: that is what its memory figure shows. The
variant "mem.allalive" shows the other extreme, for weft and Go alike: every
coroutine blocks (on an event, on a channel) until all N exist, so N stacks
are alive at once (weft: one touched page each, plus a guard page mapping;
Go: its smallest, 2 KiB, stack); N is kept at 30 k there because each
guarded weft stack is two kernel mappings and vm.max_map_count is 65530.
Go: N goroutines, runtime.Gosched once, a WaitGroup; "go" with the default
GOMAXPROCS (all cores), "go.1proc" with one. gevent: gevent.spawn(
gevent.sleep, 0) N times, gevent.joinall.
"""
from benchlib import Program, Run, Target

ID = "W6b"
TITLE = "spawn N coroutines that each yield once, join all"
UNIT = "coros/s"
HIGHER_IS_BETTER = True
UNITS = {"B/coro": False}  # the memory rows: lower is better

N_NATIVE = 1_000_000
N_ALLALIVE = 30_000
N_GEVENT = 100_000

PROGRAMS = [
    Program("weft_w6", "weft", lambda b: b.cc("weft_w6", ["w6a_coro/weft_w6.c"], weft=True)),
    Program("go_w6", "peer", lambda b: b.go("go_w6", "w6a_coro/go_w6"), apt=["golang-go"]),
    Program("py_w6", "peer", lambda b: b.python("w6a_coro/py_w6.py"),
            apt=["python3", "python3-gevent", "python3-greenlet"]),
]

# The goals: >= 2x Go's spawn-and-join rate, at no more memory per
# coroutine than Go.
TARGETS = [
    Target("weft", "go", 2.0, variant="spawn"),
    Target("weft", "go", 1.0, variant="mem"),
]


def runs(quick: bool):
    """Every measurement of one repetition, weft's and the peers'."""
    def r(program, impl, variant, n, timeout_s=60.0):
        return Run(program, impl, variant, [impl, variant, str(n)], timeout_s)

    return [
        r("weft_w6", "weft", "spawn", N_NATIVE),
        r("go_w6", "go", "spawn", N_NATIVE),
        r("go_w6", "go.1proc", "spawn", N_NATIVE),
        r("py_w6", "gevent", "spawn", N_GEVENT, 180.0),
        r("weft_w6", "weft", "mem", N_NATIVE),
        r("weft_w6", "weft", "mem.allalive", N_ALLALIVE),
        r("go_w6", "go", "mem.allalive", N_ALLALIVE),
        r("go_w6", "go", "mem", N_NATIVE),
        r("go_w6", "go.1proc", "mem", N_NATIVE),
        r("py_w6", "gevent", "mem", N_GEVENT, 180.0),
    ]
