"""bench/w3_procpool/workload.py: W3, a process pool squaring N = 10 M integers.

weft_executor_map on WEFT_EXECUTOR_PROCESSES with 2 workers and weft's own
chunking (no chunksize given), over an int64 array into an int64 array,
against Python's multiprocessing.Pool(2).map and ProcessPoolExecutor(2).map
over range(N), each at its best chunksize (py_w3.py tries several and
reports the best, with the chunksize it used). items/s, higher is better.

The issue's goal: >= 20x multiprocessing.Pool(2).map at its best chunksize.
W3b (the round trip of one task, crash-to-replacement and Ctrl-C times)
shares these programs: see bench/w3b_roundtrip/.
"""
from benchlib import Program, Run, Target

ID = "W3"
TITLE = "process pool of 2: square of each of N = 10 M integers (map)"
UNIT = "items/s"
HIGHER_IS_BETTER = True

N = 10_000_000

PROGRAMS = [
    Program("weft_w3", "weft", lambda b: b.cc("weft_w3", ["w3_procpool/weft_w3.c"], weft=True)),
    Program("py_w3", "peer", lambda b: b.python("w3_procpool/py_w3.py"), apt=["python3"]),
]

TARGETS = [
    Target("weft.processes", "python.multiprocessing.Pool", 20.0, variant="map"),
]


def runs(quick: bool):
    def r(program, impl, timeout_s):
        return Run(program, impl, "map", [impl, "map", str(N)], timeout_s)

    return [
        r("weft_w3", "weft.processes", 60.0),
        r("py_w3", "python.multiprocessing.Pool", 300.0),
        r("py_w3", "python.ProcessPoolExecutor", 300.0),
    ]
