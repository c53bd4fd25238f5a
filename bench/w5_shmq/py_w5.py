"""bench/w5_shmq/py_w5.py: W5 on multiprocessing.Queue (peer).

"python.multiprocessing.Queue": the producer (this process) puts bytes
objects of 64 B or 1 MiB into a multiprocessing.Queue; a child started with
the fork method gets them. As in w5.h, the first 8 bytes carry the message
number and the child checks each; a 1 MiB message also carries a tail
word. Runs N/8 messages as a warm-up, then N, timed from the first put of
the timed run to the child's last get. One JSON line on stdout.

Command line: python.multiprocessing.Queue VARIANT N. Run it with Debian's
/usr/bin/python3.
"""
import json
import multiprocessing as mp
import struct
import sys
import time

IMPL = "python.multiprocessing.Queue"
TAIL = struct.pack("<Q", 0x5757575757575757)


def consumer(q, warm, total, size, warm_done, end_ns, bad):
    for i in range(total):
        m = q.get()
        if struct.unpack_from("<Q", m)[0] != i or len(m) != size or \
                (size >= 64 and m[-8:] != TAIL):
            bad.value = 1
            return
        if i + 1 == warm:
            warm_done.set()
    end_ns.value = time.monotonic_ns()


def main():
    if len(sys.argv) != 4 or sys.argv[1] != IMPL:
        sys.exit(f"usage: py_w5.py {IMPL} 64B|1MiB N")
    variant = sys.argv[2]
    size = {"64B": 64, "1MiB": 1 << 20}[variant]
    n = int(sys.argv[3])
    warm = max(n // 8, 1)
    total = warm + n
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    warm_done = ctx.Event()
    end_ns = ctx.Value("q", 0)
    bad = ctx.Value("i", 0)
    p = ctx.Process(target=consumer, args=(q, warm, total, size, warm_done, end_ns, bad))
    p.start()
    body = bytearray(b"\xab" * size)
    if size >= 64:
        body[-8:] = TAIL

    def msg(i):
        struct.pack_into("<Q", body, 0, i)
        return bytes(body)

    for i in range(warm):
        q.put(msg(i))
    warm_done.wait()
    t0 = time.monotonic_ns()
    for i in range(warm, total):
        q.put(msg(i))
    p.join()
    if p.exitcode != 0 or bad.value:
        sys.exit("bench: consumer failed or saw a message out of place")
    secs = (end_ns.value - t0) / 1e9
    if size == 64:
        value, unit = n / secs, "msgs/s"
    else:
        value, unit = n * size / secs / 1e9, "GB/s"
    print(json.dumps({"workload": "W5", "impl": IMPL, "variant": variant, "n": n,
                      "value": value, "unit": unit, "secs": secs}), flush=True)


if __name__ == "__main__":
    main()
