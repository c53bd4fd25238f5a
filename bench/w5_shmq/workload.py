"""bench/w5_shmq/workload.py: W5, the cross-process queue.

A producer process sends N messages to a consumer process (a fork()ed
child) through one transport; the figure is msgs/s for 64-byte messages and
GB/s for 1 MiB messages, from the first send of the timed run to the last
receive. See w5.h for the messages, the checks and the timing.

weft's side: "weft" (weft_shmq_put / get, one message per call) and
"weft.batch" (put_many / get_many of 64; 64-byte messages only). Peers: a
C pipe (default size, and grown to 1 MiB), POSIX message queues (64 B only:
the machine caps messages at 8 KiB), Python's multiprocessing.Queue, and
memcpy in one process (1 MiB, in cache; and 64 MiB, out of cache), the
ceiling for the 1 MiB figure.
"""
from benchlib import Program, Run, Target

ID = "W5"
TITLE = "cross-process queue: N messages, producer process -> consumer process"
UNIT = "msgs/s"
HIGHER_IS_BETTER = True
UNITS = {"GB/s": True}

N_64 = 10_000_000     # weft: ~0.5 s
N_64_PEER = 2_000_000  # pipe, mq: ~1 s
N_64_PY = 200_000
N_1M = 2000           # 2 GiB: ~0.3 s for weft
N_1M_PY = 300


def _cc(name, src, libs=()):
    return lambda b: b.cc(name, [f"w5_shmq/{src}"], weft=name == "weft_w5", libs=list(libs))


PROGRAMS = [
    Program("weft_w5", "weft", _cc("weft_w5", "weft_w5.c")),
    Program("pipe_w5", "peer", _cc("pipe_w5", "pipe_w5.c")),
    Program("mq_w5", "peer", _cc("mq_w5", "mq_w5.c", ["-lrt"])),
    Program("memcpy_w5", "peer", _cc("memcpy_w5", "memcpy_w5.c")),
    Program("py_w5", "peer", lambda b: b.python("w5_shmq/py_w5.py"), apt=["python3"]),
]

# The goals: 64-byte messages >= 20 M msgs/s and >= 9x a pipe (one
# message per call, like the pipe's one write per message); 1 MiB messages
# >= 50 % of memcpy's bandwidth (the in-cache 1 MiB copy, the stricter of
# the two memcpy figures).
TARGETS = [
    Target("weft", None, variant="64B", min_value=20e6),
    Target("weft", "c.pipe", 9.0, variant="64B"),
    Target("weft.batch", None, variant="64B", min_value=20e6),
    Target("weft", "c.memcpy", 0.5, variant="1MiB"),
]


def runs(quick: bool):
    """Every measurement of one repetition, weft's and the peers'."""
    out = [
        Run("weft_w5", "weft", "64B", ["weft", "64B", str(N_64)]),
        Run("weft_w5", "weft.batch", "64B", ["weft.batch", "64B", str(N_64)]),
        Run("pipe_w5", "c.pipe", "64B", ["c.pipe", "64B", str(N_64_PEER)]),
        Run("mq_w5", "posix.mq", "64B", ["posix.mq", "64B", str(N_64_PEER // 4)]),
        Run("py_w5", "python.multiprocessing.Queue", "64B",
            ["python.multiprocessing.Queue", "64B", str(N_64_PY)], timeout_s=180.0),
        Run("weft_w5", "weft", "1MiB", ["weft", "1MiB", str(N_1M)]),
        Run("pipe_w5", "c.pipe", "1MiB", ["c.pipe", "1MiB", str(N_1M)]),
        Run("pipe_w5", "c.pipe.1MiB", "1MiB", ["c.pipe.1MiB", "1MiB", str(N_1M)]),
        Run("memcpy_w5", "c.memcpy", "1MiB", ["c.memcpy", "1MiB", str(N_1M * 4)]),
        Run("memcpy_w5", "c.memcpy.64MiB", "1MiB", ["c.memcpy.64MiB", "1MiB", str(N_1M * 4)]),
        Run("py_w5", "python.multiprocessing.Queue", "1MiB",
            ["python.multiprocessing.Queue", "1MiB", str(N_1M_PY)], timeout_s=180.0),
    ]
    return out
