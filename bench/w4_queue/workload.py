"""bench/w4_queue/workload.py: W4, the in-process queue.

N pointer-sized items go from P producer threads to C consumer threads
through one queue, 1P/1C and 2P/2C; the figure is items/s = N / wall time
from the start of all threads to the last item taken. See w4.h for the
items, the end marks and the checks every program makes.

weft's side reports three impls: "weft" (unbounded FIFO, put/get),
"weft.bounded1024" (maxsize 1024, the match for Go's channel) and
"weft.batch" (put_many/get_many of 64: another API, shown on its own line).
Peers: GLib's GAsyncQueue, Go's buffered channel of capacity 1024, and
Python's queue.Queue under Debian's /usr/bin/python3.
"""
from benchlib import Program, Run, Target

ID = "W4"
TITLE = "in-process queue: N pointer-sized items, P producers -> C consumers"
UNIT = "items/s"
HIGHER_IS_BETTER = True
VARIANTS = [("1p1c", 1, 1), ("2p2c", 2, 2)]

N_NATIVE = 4_000_000  # C and Go: 10-30 M items/s, so ~0.1-0.5 s per run
N_PYTHON = 200_000    # queue.Queue does well under 1 M items/s

PROGRAMS = [
    Program("weft_w4", "weft", lambda b: b.cc("weft_w4", ["w4_queue/weft_w4.c"], weft=True)),
    Program("glib_w4", "peer",
            lambda b: b.cc("glib_w4", ["w4_queue/glib_w4.c"], pkgconfig=["glib-2.0"]),
            apt=["libglib2.0-dev"]),
    Program("go_w4", "peer", lambda b: b.go("go_w4", "w4_queue/go_w4"), apt=["golang-go"]),
    Program("py_w4", "peer", lambda b: b.python("w4_queue/py_w4.py"), apt=["python3"]),
]

# The goals: >= 3x GAsyncQueue and >= Go's channel, for both the
# plain queue and the bounded one (the closer match for the channel).
TARGETS = [
    Target("weft", "glib.GAsyncQueue", 3.0),
    Target("weft", "go.chan1024", 1.0),
    Target("weft.bounded1024", "glib.GAsyncQueue", 3.0),
    Target("weft.bounded1024", "go.chan1024", 1.0),
]


def runs(quick: bool):
    """Every measurement of one repetition, weft's and the peers'."""
    out = []
    for variant, p, c in VARIANTS:
        pc = [str(p), str(c)]
        for impl in ("weft", "weft.bounded1024", "weft.batch"):
            out.append(Run("weft_w4", impl, variant, [impl, *pc, str(N_NATIVE)]))
        out.append(Run("glib_w4", "glib.GAsyncQueue", variant,
                       ["glib.GAsyncQueue", *pc, str(N_NATIVE)]))
        out.append(Run("go_w4", "go.chan1024", variant, ["go.chan1024", *pc, str(N_NATIVE)]))
        out.append(Run("py_w4", "python.queue.Queue", variant,
                       ["python.queue.Queue", *pc, str(N_PYTHON)], timeout_s=180.0))
    return out
