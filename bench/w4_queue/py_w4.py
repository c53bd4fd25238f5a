"""bench/w4_queue/py_w4.py: W4 on Python's queue.Queue (peer).

"python.queue.Queue": an unbounded queue.Queue, P producer threads and C
consumer threads under the GIL, each consumer stopping on a None sentinel
that the last producer puts (Python's worker pattern). Items and checks are
those of w4.h: producer p puts (seq << 4) | p for seq 1..N/P; consumers
count, sum and check per-producer order; a wrong tally exits with status 1.

Command line: python.queue.Queue PRODUCERS CONSUMERS N. Run it with Debian's
/usr/bin/python3. Runs N/8 items as a warm-up, then N, and prints one JSON
line on stdout.
"""
import json
import queue
import sys
import threading
import time

IMPL = "python.queue.Queue"
PRODUCERS_MAX = 16
SEQ_SHIFT = 4


def run_once(producers, consumers, per):
    q = queue.Queue()
    tallies = [None] * consumers
    start = threading.Barrier(producers + consumers + 1)
    left = [producers]
    left_lock = threading.Lock()

    def produce(p):
        put = q.put
        start.wait()
        for s in range(1, per + 1):
            put((s << SEQ_SHIFT) | p)
        with left_lock:
            left[0] -= 1
            last_one = left[0] == 0
        if last_one:
            for _ in range(consumers):
                put(None)

    def consume(i):
        get = q.get
        last = [0] * PRODUCERS_MAX
        count = total = disorder = 0
        start.wait()
        while True:
            v = get()
            if v is None:
                break
            p = v & (PRODUCERS_MAX - 1)
            seq = v >> SEQ_SHIFT
            if seq <= last[p]:
                disorder += 1
            last[p] = seq
            count += 1
            total += v
        tallies[i] = (count, total, disorder)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
    producer_threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads + producer_threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    for t in producer_threads:
        t.join()

    count = sum(t[0] for t in tallies)
    total = sum(t[1] for t in tallies)
    disorder = sum(t[2] for t in tallies)
    want_count = producers * per
    want_sum = sum((1 << SEQ_SHIFT) * (per * (per + 1) // 2) + p * per for p in range(producers))
    if count != want_count or total != want_sum or disorder != 0:
        sys.stderr.write(
            f"bench: {IMPL} {producers}p{consumers}c: WRONG RESULT: took {count} items "
            f"(want {want_count}), sum {total} (want {want_sum}), {disorder} out of producer order\n")
        sys.exit(1)
    return secs


def positive(s, what):
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v <= 0:
        sys.stderr.write(f"bench: {what} must be a positive integer, got '{s}'\n")
        sys.exit(1)
    return v


def main():
    if len(sys.argv) != 5 or sys.argv[1] != IMPL:
        sys.stderr.write(f"usage: {sys.argv[0]} {IMPL} PRODUCERS CONSUMERS N\n")
        sys.exit(2)
    producers = positive(sys.argv[2], "PRODUCERS")
    consumers = positive(sys.argv[3], "CONSUMERS")
    n = positive(sys.argv[4], "N")
    if producers > PRODUCERS_MAX or n < producers:
        sys.stderr.write(f"bench: at most {PRODUCERS_MAX} producers, N >= PRODUCERS\n")
        sys.exit(1)
    per = n // producers
    run_once(producers, consumers, max(per // 8, 1))
    secs = run_once(producers, consumers, per)
    total = per * producers
    print(json.dumps({"workload": "W4", "impl": IMPL, "variant": f"{producers}p{consumers}c",
                      "n": total, "value": total / secs, "unit": "items/s",
                      "secs": round(secs, 6)}, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
