"""bench/w6a_coro/py_w6.py: greenlet's and gevent's side of W6a and W6b.

    py_w6.py IMPL VARIANT N

    W6a pingpong  greenlet: raw greenlet.switch, main <-> one greenlet, N
                  round trips; gevent: two greenlets on two gevent Events
    W6a switch    greenlet: ns per raw switch
    W6b spawn     gevent: N gevent.spawn(gevent.sleep, 0), gevent.joinall
    W6b mem       the same run: (peak RSS after - before) / N, bytes each
"""
import json
import resource
import sys
import time


def emit(workload, impl, variant, n, value, unit, secs):
    print(json.dumps({"workload": workload, "impl": impl, "variant": variant, "n": n,
                      "value": value, "unit": unit, "secs": secs}), flush=True)


def maxrss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def greenlet_pingpong(impl, variant, n):
    from greenlet import greenlet, getcurrent
    main = getcurrent()

    def pong(v):
        while True:
            v = main.switch(v + 1)

    g = greenlet(pong)
    t0 = time.perf_counter()
    v = 0
    for _ in range(n):
        w = g.switch(v)
        if w != v + 1:
            sys.exit("wrong value")
        v = w
    secs = time.perf_counter() - t0
    if variant == "switch":
        emit("W6a", impl, variant, n, secs * 1e9 / (2 * n), "ns", secs)
    else:
        emit("W6a", impl, variant, n, n / secs, "roundtrips/s", secs)


def gevent_pingpong(impl, variant, n):
    import gevent
    from gevent.event import Event
    e1, e2 = Event(), Event()
    box = [0]

    def pong():
        for _ in range(n):
            e1.wait()
            e1.clear()
            box[0] += 1
            e2.set()

    t0 = time.perf_counter()
    g = gevent.spawn(pong)
    for i in range(n):
        e1.set()
        e2.wait()
        e2.clear()
        if box[0] != i + 1:
            sys.exit("wrong value")
    g.join()
    secs = time.perf_counter() - t0
    emit("W6a", impl, variant, n, n / secs, "roundtrips/s", secs)


def gevent_spawn(impl, variant, n):
    import gevent
    rss0 = maxrss_kib()
    t0 = time.perf_counter()
    gs = [gevent.spawn(gevent.sleep, 0) for _ in range(n)]
    gevent.joinall(gs)
    secs = time.perf_counter() - t0
    rss1 = maxrss_kib()
    if not all(g.successful() for g in gs):
        sys.exit("not all finished")
    if variant == "mem":
        # KiB growth rounded up to the next KiB, as in every W6b program.
        emit("W6b", impl, variant, n, (rss1 - rss0 + 1) * 1024 / n, "B/coro", secs)
    else:
        emit("W6b", impl, variant, n, n / secs, "coros/s", secs)


def main():
    impl, variant, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if impl == "greenlet" and variant in ("pingpong", "switch"):
        greenlet_pingpong(impl, variant, n)
    elif impl == "gevent" and variant == "pingpong":
        gevent_pingpong(impl, variant, n)
    elif impl == "gevent" and variant in ("spawn", "mem"):
        gevent_spawn(impl, variant, n)
    else:
        sys.exit(f"unknown impl/variant {impl}/{variant}")


if __name__ == "__main__":
    main()
