"""bench/w7_http/workload.py: W7, an HTTP/1.1 keep-alive "Hello, World!"
server on one core.

Each server runs pinned to CPU 0 (one thread, or GOMAXPROCS=1) and is loaded
by `wrk -t1 -c64 -d5s` pinned to CPU 1 on loopback; the figure is wrk's
requests/s. w7_drive.py starts the server on a free port, checks two
keep-alive answers on one connection, runs wrk, rejects non-2xx answers and
connect errors, and stops the server.

weft: "weft.hub", one coroutine per connection on weft's hub
(weft_coro_accept/read/write_all); "weft.patched", the same server written
with plain blocking accept4/read/write and made cooperative by
weft_patch_all() (linked with libweft_patch): the cost of patching in a
real server. Peers: a libuv server (uv_read_start, uv_try_write then
uv_write), Go's net/http under GOMAXPROCS=1, gevent's StreamServer with
TCP_NODELAY (pywsgi without it waits on delayed ACKs). The C servers share
w7.h: the same response bytes and the same request counting; Go's net/http
sends its usual headers (Date) as well.

"server-cpu" runs the same load against weft's hub and libuv and reports
the busy time of the server's core per request (user, system and the
kernel's TCP work on that core, from /proc/stat), lower is better. Every
run also records the server core's and wrk's core's busy fraction: on a
2-core machine a single wrk thread saturates its core (~99 %) at about
230 k req/s, so a server faster than that cannot show it in req/s, and
the CPU a request costs the server is the figure that still separates them.
"""
from benchlib import BENCH, PYTHON, Program, Run, Target, run_logged

ID = "W7"
TITLE = "HTTP/1.1 keep-alive hello-world server on one core, wrk -t1 -c64 -d5s"
UNIT = "req/s"
HIGHER_IS_BETTER = True
UNITS = {"us/req": False}  # the server-cpu rows: lower is better

SECONDS = 5
DRIVE = str(BENCH / "w7_http" / "w7_drive.py")


def driven(server_argv):
    return [PYTHON, DRIVE, *server_argv, "--"]


def build_patched(b):
    """libweft_patch.so from this checkout, and the server linked with it."""
    so = b.bin / "libweft_patch.so"
    run_logged(["gcc", "-O2", "-std=gnu11", "-shared", "-fPIC", "-I", b.weft_src / "src",
                b.weft_src / "src" / "patch" / "patch.c", "-o", so, "-ldl"],
               b.logs / "libweft_patch.log")
    return driven(b.cc("weft_w7p", ["w7_http/weft_w7.c"], weft=True,
                       libs=["-Wl,--no-as-needed", str(so), f"-Wl,-rpath,{b.bin}", "-ldl"]))


PROGRAMS = [
    Program("weft_w7", "weft",
            lambda b: driven(b.cc("weft_w7", ["w7_http/weft_w7.c"], weft=True, libs=["-ldl"])),
            apt=["wrk", "util-linux"]),
    Program("weft_w7p", "weft", build_patched, apt=["wrk", "util-linux"]),
    Program("uv_w7", "peer",
            lambda b: driven(b.cc("uv_w7", ["w7_http/uv_w7.c"], pkgconfig=["libuv"])),
            apt=["wrk", "libuv1-dev", "util-linux"]),
    Program("go_w7", "peer", lambda b: driven(b.go("go_w7", "w7_http/go_w7")),
            apt=["wrk", "golang-go", "util-linux"]),
    Program("py_w7", "peer", lambda b: driven(b.python("w7_http/py_w7.py")),
            apt=["wrk", "python3", "python3-gevent", "util-linux"]),
]

# The goals: >= 1.1x the libuv server and >= 2x gevent's StreamServer.
TARGETS = [
    Target("weft.hub", "libuv", 1.1, variant="hello"),
    Target("weft.hub", "gevent.StreamServer", 2.0, variant="hello"),
]


def runs(quick: bool):
    """Every measurement of one repetition, weft's and the peers'."""
    t = SECONDS * 3 + 60

    def r(program, impl, *extra):
        return Run(program, impl, "hello", [impl, "hello", str(SECONDS), *extra], t)

    def cpu(program, impl, *extra):
        return Run(program, impl, "server-cpu", [impl, "server-cpu", str(SECONDS), *extra], t)

    return [
        r("weft_w7", "weft.hub", "hub"),
        r("uv_w7", "libuv"),
        r("weft_w7p", "weft.patched", "patched"),
        r("go_w7", "go.net/http"),
        r("py_w7", "gevent.StreamServer"),
        cpu("weft_w7", "weft.hub", "hub"),
        cpu("uv_w7", "libuv"),
    ]
