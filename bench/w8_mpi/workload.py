"""bench/w8_mpi/workload.py: W8, the MPI executor against mpi4py.futures.

Both run as an MPI job of 3 ranks under Open MPI's mpirun: rank 0 is the
client, ranks 1 and 2 the workers; the task is f(x) = x*x on an integer.
Variants:

  submit1  N tasks each submitted on its own with its own future, then all
           results checked: tasks/s (mpi4py: ex.submit(f, i) N times)
  rtt      one task's submit -> result round trip, one at a time; the
           median, in us (lower is better)
  map      map of f over N integers, results checked: items/s. weft's
           automatic chunking against mpi4py's map at chunksize 1000,
           10000 and 100000 (its best counts as the peer)
  idle     weft only: the client's CPU while an idle executor waits, in %
           of one CPU (lower is better; 0 is the goal)

The machine running the benchmark also runs the three ranks, so on a
2-core machine client, workers and submitter share 2 cores (oversubscribed,
as Open MPI says); both sides are measured alike.
"""
from pathlib import Path

import benchlib as bl
from benchlib import Program, Run, Target

ID = "W8"
TITLE = "MPI executor, mpirun -n 3 (1 client, 2 workers): f(x) = x*x"
UNIT = "tasks/s"
HIGHER_IS_BETTER = True
UNITS = {"items/s": True, "us": False, "%CPU": False}

N_SUBMIT = 300_000     # weft: ~1 M tasks/s
N_SUBMIT_PY = 10_000   # mpi4py.futures: a few thousand tasks/s
N_RTT = 5_000
N_RTT_PY = 2_000
N_MAP = 4_000_000
PY_CHUNKS = (1_000, 10_000, 100_000)

# Open MPI as root, in a container, with more ranks than cores.
MPIRUN = ["env", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
          "OMPI_MCA_btl_vader_single_copy_mechanism=none",
          "mpirun", "--oversubscribe", "-n", "3"]


def build_weft(b) -> list:
    """libweft_mpi.a from the same Release build as libweft.a, then the
    program with Open MPI's mpicc."""
    lib = b.weft_lib()
    bl.run_logged(["cmake", "--build", b.weft_build, "--target", "weft_mpi", "-j", "2"],
                  b.logs / "weft_mpi-build.log")
    mpi_libs = sorted(Path(b.weft_build).rglob("libweft_mpi.a"))
    if not mpi_libs:
        raise bl.BuildError("no libweft_mpi.a: did CMake find MPI? (apt-get install "
                            "openmpi-bin libopenmpi-dev)")
    out = b.bin / "weft_w8"
    bl.run_logged(["mpicc", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-pthread",
                   "-I", b.weft_src / "include", bl.BENCH / "w8_mpi/weft_w8.c",
                   mpi_libs[0], lib, "-o", out], b.logs / "weft_w8.log")
    return MPIRUN + [str(out)]


PROGRAMS = [
    Program("weft_w8", "weft", build_weft, apt=["openmpi-bin", "libopenmpi-dev"]),
    Program("py_w8", "peer",
            lambda b: MPIRUN + [bl.PYTHON, "-m", "mpi4py.futures"] + b.python("w8_mpi/py_w8.py")[1:],
            apt=["openmpi-bin", "python3-mpi4py"]),
]

# The goals: one-at-a-time submit >= 100 k tasks/s (mpi4py.futures:
# about 6 k); map with automatic chunking >= mpi4py.futures at its best
# chunksize.
TARGETS = [
    Target("weft", min_value=100_000, variant="submit1"),
    Target("weft", "mpi4py.futures", 1.0, variant="submit1"),
    Target("weft", "mpi4py.futures.chunk1000", 1.0, variant="map"),
    Target("weft", "mpi4py.futures.chunk10000", 1.0, variant="map"),
    Target("weft", "mpi4py.futures.chunk100000", 1.0, variant="map"),
]


def runs(quick: bool):
    out = [
        Run("weft_w8", "weft", "submit1", ["weft", "submit1", str(N_SUBMIT)]),
        Run("py_w8", "mpi4py.futures", "submit1",
            ["mpi4py.futures", "submit1", str(N_SUBMIT_PY)], timeout_s=180.0),
        Run("weft_w8", "weft", "rtt", ["weft", "rtt", str(N_RTT)]),
        Run("py_w8", "mpi4py.futures", "rtt", ["mpi4py.futures", "rtt", str(N_RTT_PY)],
            timeout_s=120.0),
        Run("weft_w8", "weft", "map", ["weft", "map", str(N_MAP)]),
    ]
    for c in PY_CHUNKS:
        impl = f"mpi4py.futures.chunk{c}"
        out.append(Run("py_w8", impl, "map", [impl, "map", str(N_MAP)], timeout_s=180.0))
    out.append(Run("weft_w8", "weft", "idle", ["weft", "idle", "10000"]))
    return out
