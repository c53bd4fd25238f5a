"""W7 driver: start one HTTP server on a free loopback port pinned to CPU 0,
check that it answers two keep-alive requests on one connection with the
expected body, load it with `wrk -t1 -c64 -dDs` pinned to CPU 1, stop it,
and print the measurement as one JSON line.

    w7_drive.py SERVER_ARGV... -- IMPL VARIANT SECONDS [MORE_SERVER_ARGS...]

The server runs as SERVER_ARGV MORE_SERVER_ARGS PORT.

Exit 1 when the server does not answer right or wrk reports non-2xx answers
or connect errors; exit 3 (not measured) when the server exits 3 at once.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pin(cpu):
    if (os.cpu_count() or 1) >= 2 and subprocess.call(["sh", "-c", "command -v taskset"],
                                                      stdout=subprocess.DEVNULL) == 0:
        return ["taskset", "-c", str(cpu)]
    return []


def cpu_ticks():
    """{cpu index: (busy, total)} jiffies from /proc/stat (busy counts user,
    nice, system, irq, softirq and steal; idle and iowait are not busy)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name != "cpu":
                v = [int(x) for x in vals[:8]]
                out[int(name[3:])] = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7], sum(v))
    return out


def die(msg, code=1):
    print(f"w7_drive: {msg}", file=sys.stderr)
    sys.exit(code)


def check_answers(port):
    """Two requests on one connection; each answer must carry the body."""
    deadline = time.time() + 15
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                die("the server does not accept connections")
            time.sleep(0.05)
    try:
        for _ in range(2):
            c.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while b"Hello, World!" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    die(f"the server closed the connection; got {data!r}")
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                die(f"unexpected answer {data!r}")
    finally:
        c.close()


def main():
    argv = sys.argv[1:]
    if "--" not in argv or len(argv) - argv.index("--") < 4:
        die("usage: w7_drive.py SERVER_ARGV... -- IMPL VARIANT SECONDS [MORE_SERVER_ARGS...]", 2)
    sep = argv.index("--")
    impl, variant, secs = argv[sep + 1], argv[sep + 2], int(argv[sep + 3])
    server_argv = argv[:sep] + argv[sep + 4:]
    port = free_port()
    server = subprocess.Popen(pin(0) + server_argv + [str(port)], start_new_session=True)
    try:
        time.sleep(0.1)
        if server.poll() is not None:
            die(f"the server exited with status {server.returncode}",
                3 if server.returncode == 3 else 1)
        check_answers(port)
        before = cpu_ticks()
        wrk = subprocess.run(pin(1) + ["wrk", "-t1", "-c64", f"-d{secs}s",
                                       f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, timeout=secs + 60)
        out = wrk.stdout
        sys.stderr.write(out)
        if wrk.returncode != 0:
            die(f"wrk failed: {wrk.stderr.strip()}")
        m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
        n = re.search(r"(\d+) requests in ([0-9.]+)(m?s)", out)
        if not m or not n:
            die("cannot read wrk's output")
        if "Non-2xx" in out:
            die("the server gave non-2xx answers")
        errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if errs and int(errs.group(1)) > 0:
            die("connect errors")
        if server.poll() is not None:
            die(f"the server died during the run (status {server.returncode})")
        after = cpu_ticks()
        elapsed = float(n.group(2)) / (1000.0 if n.group(3) == "ms" else 1.0)
        requests = int(n.group(1))
        # What each core did during the run: the server's (0) and wrk's (1).
        # A core's busy time includes the kernel's TCP work done on it, so
        # the server core's time per request is what serving one costs.
        hz = os.sysconf("SC_CLK_TCK")
        busy = {}
        for cpu in (0, 1):
            if cpu in before and cpu in after:
                db = after[cpu][0] - before[cpu][0]
                dt = after[cpu][1] - before[cpu][1]
                busy[cpu] = (db, db / dt if dt > 0 else None)
        result = {"workload": "W7", "impl": impl, "variant": variant, "n": requests,
                  "value": float(m.group(1)), "unit": "req/s", "secs": elapsed}
        if 0 in busy and 1 in busy:
            result["server_core_us_per_req"] = busy[0][0] / hz * 1e6 / requests
            result["server_core_busy"] = busy[0][1]
            result["wrk_core_busy"] = busy[1][1]
            print(f"w7_drive: server core {result['server_core_us_per_req']:.2f} us/request, "
                  f"{100 * busy[0][1]:.0f} % busy; wrk's core {100 * busy[1][1]:.0f} % busy",
                  file=sys.stderr)
        if variant.endswith("server-cpu"):
            if 0 not in busy:
                die("cannot read the server core's time from /proc/stat")
            result.update(value=result["server_core_us_per_req"], unit="us/req")
        print(json.dumps(result), flush=True)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


if __name__ == "__main__":
    main()
