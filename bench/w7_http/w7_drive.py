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
        elapsed = float(n.group(2)) / (1000.0 if n.group(3) == "ms" else 1.0)
        print(json.dumps({"workload": "W7", "impl": impl, "variant": variant,
                          "n": int(n.group(1)), "value": float(m.group(1)),
                          "unit": "req/s", "secs": elapsed}), flush=True)
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
