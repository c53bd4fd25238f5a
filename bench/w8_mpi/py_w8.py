"""W8's peer: mpi4py.futures under `mpirun -n 3 python3 -m mpi4py.futures`
(1 client, 2 workers). The same variants as weft_w8.c:

    mpirun -n 3 /usr/bin/python3 -m mpi4py.futures py_w8.py IMPL VARIANT N

IMPL "mpi4py.futures" for submit1 and rtt; "mpi4py.futures.chunkC" for map
with chunksize C. One JSON line on stdout; exit 1 on a wrong result.
"""
import json
import statistics
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def sq(x):
    return x * x


def main():
    impl, variant, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    from mpi4py import MPI
    workers = MPI.COMM_WORLD.Get_size() - 1
    with MPIPoolExecutor() as ex:
        assert list(ex.map(sq, range(1000), chunksize=100)) == [i * i for i in range(1000)]
        unit = "tasks/s"
        if variant == "submit1":
            t0 = time.perf_counter()
            fs = [ex.submit(sq, i) for i in range(n)]
            bad = sum(f.result() != i * i for i, f in enumerate(fs))
            secs = time.perf_counter() - t0
            value = n / secs
        elif variant == "rtt":
            ts = []
            bad = 0
            t0 = time.perf_counter()
            for i in range(n):
                a = time.perf_counter()
                bad += ex.submit(sq, i).result() != i * i
                ts.append(time.perf_counter() - a)
            secs = time.perf_counter() - t0
            value = statistics.median(ts) * 1e6
            unit = "us"
        elif variant == "map":
            chunk = int(impl.rsplit("chunk", 1)[1])
            t0 = time.perf_counter()
            out = list(ex.map(sq, range(n), chunksize=chunk))
            secs = time.perf_counter() - t0
            bad = sum(v != i * i for i, v in enumerate(out))
            value = n / secs
            unit = "items/s"
        else:
            print(f"py_w8: unknown variant {variant}", file=sys.stderr)
            sys.exit(2)
    if bad:
        print(f"py_w8: {bad} wrong results", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"workload": "W8", "impl": impl, "variant": variant, "n": n,
                      "value": value, "unit": unit, "secs": round(secs, 4),
                      "workers": workers}), flush=True)


if __name__ == "__main__":
    main()
