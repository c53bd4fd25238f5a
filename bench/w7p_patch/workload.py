"""bench/w7p_patch/workload.py: W7p, what a call patched by weft_patch_all
costs against the native one (ns per iteration, lower is better).

One source (patchcost.c) built twice: without libweft_patch ("libc", or
"weft.hub" for the ping-pong, where blocking libc calls would deadlock two
coroutines on one thread and the hub's own weft_coro_read/write are the
native way) and with it ("weft.patched", weft_patch_all() called first).
See patchcost.c for the variants.
"""
from benchlib import Program, Run, Target, run_logged

ID = "W7p"
TITLE = "patched blocking calls against native ones (ns per iteration)"
UNIT = "ns"
HIGHER_IS_BETTER = False

N = 200_000


def build_patched(b):
    so = b.bin / "libweft_patch.so"
    run_logged(["gcc", "-O2", "-std=gnu11", "-shared", "-fPIC", "-I", b.weft_src / "src",
                b.weft_src / "src" / "patch" / "patch.c", "-o", so, "-ldl"],
               b.logs / "libweft_patch.log")
    return b.cc("patchcost_patched", ["w7p_patch/patchcost.c"], weft=True,
                libs=["-DPATCHED=1", "-Wl,--no-as-needed", str(so), f"-Wl,-rpath,{b.bin}", "-ldl"])


PROGRAMS = [
    Program("patchcost_patched", "weft", build_patched),
    Program("patchcost_native", "peer",
            lambda b: b.cc("patchcost_native", ["w7p_patch/patchcost.c"], weft=True, libs=["-ldl"])),
]

VARIANTS = ["socket, no hub", "socket, coroutine", "pipe, coroutine", "pingpong",
            "usleep(1), coroutine"]

# No goal from the issue: the figures say what patching costs.
TARGETS = []


def runs(quick: bool):
    out = []
    for v in VARIANTS:
        native = "weft.hub" if v == "pingpong" else "libc"
        out.append(Run("patchcost_patched", "weft.patched", v, ["weft.patched", v, str(N)]))
        out.append(Run("patchcost_native", native, v, [native, v, str(N)]))
    return out
