"""bench/benchlib.py: what the harness and the workload modules share.

A workload is a directory bench/wN_name/ with a workload.py that declares
its programs (how to build each, which side it is on, which Debian packages
it needs) and its runs (program, impl, variant, arguments). harness.py
installs the packages, builds, runs weft and the peers interleaved, and
writes the results; this module holds the types for those declarations and
the Builder that turns sources into runnable commands under bench/.work/.

Only the standard library is used here: the harness must start on a bare
Debian 12 with nothing but /usr/bin/python3.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
PYTHON = "/usr/bin/python3"  # Debian's, never a pyenv/venv one found on PATH

# Packages every full run needs: the weft build and the charts.
APT_BUILD = ["gcc", "libc6-dev", "make", "cmake", "pkg-config"]
APT_CHARTS = ["python3-matplotlib"]


class BuildError(Exception):
    """A program could not be built; the message says why (last log lines)."""


@dataclass
class Program:
    """One benchmark executable of a workload."""
    name: str                                # unique within the workload, e.g. "weft_w4"
    side: str                                # "weft" or "peer"
    build: Callable[["Builder"], list]       # returns the argv prefix that runs it
    apt: list = field(default_factory=list)  # Debian packages to build and run it


@dataclass
class Run:
    """One measurement: a program, its arguments, and the JSON it must print."""
    program: str          # Program.name
    impl: str             # "impl" the program reports
    variant: str          # "variant" the program reports
    args: list            # arguments after the program's argv prefix
    timeout_s: float = 60.0


@dataclass
class Target:
    """A goal from the issue. Relative (peer_impl set): median(weft_impl) /
    median(peer_impl) >= min_ratio (for a lower-is-better unit: peer / weft
    >= min_ratio). Absolute (peer_impl None): median(weft_impl) >= min_value
    and/or <= max_value.

    variant None: checked in every variant of the workload, the peer in the
    same variant. variant set: checked in that variant only, the peer in
    peer_variant (default: the same), for goals that set one API of weft
    against a peer measured under another (weft with futures against a pool
    that has none)."""
    weft_impl: str
    peer_impl: Optional[str] = None
    min_ratio: Optional[float] = None
    variant: Optional[str] = None
    peer_variant: Optional[str] = None
    min_value: Optional[float] = None
    max_value: Optional[float] = None


# A program exits with this status, printing no measurement, when what it
# was asked to measure does not exist in this build (a weft backend not built
# yet): the harness reports the impl as "not measured" with the program's
# stderr, not as a failure.
EXIT_UNSUPPORTED = 3


def run_logged(argv, log: Path, cwd=None, env=None) -> None:
    """Run argv with stdout+stderr to log; BuildError with the log's tail on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write("$ " + " ".join(str(a) for a in argv) + "\n")
        f.flush()
        try:
            rc = subprocess.call([str(a) for a in argv], stdout=f, stderr=subprocess.STDOUT,
                                 cwd=cwd, env=env)
        except OSError as e:
            raise BuildError(f"{argv[0]}: {e}") from None
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise BuildError(f"`{Path(str(argv[0])).name}` failed (exit {rc}); end of {log}:\n    "
                         + "\n    ".join(tail))


class Builder:
    """Builds weft (Release, static) once and the programs of the workloads."""

    def __init__(self, weft_src: Path = REPO):
        self.weft_src = Path(weft_src).resolve()
        self.bin = WORK / "bin"
        self.logs = WORK / "logs"
        # A CMake build directory belongs to one source tree.
        self.weft_build = WORK / ("build" if self.weft_src == REPO else
                                  "build-" + hashlib.sha1(str(self.weft_src).encode())
                                  .hexdigest()[:10])
        self._weft_lib: Optional[Path] = None
        self._weft_error: Optional[BuildError] = None
        self.bin.mkdir(parents=True, exist_ok=True)

    def weft_lib(self) -> Path:
        """libweft.a from a Release build in bench/.work/build (cached per run)."""
        if self._weft_lib is not None:
            return self._weft_lib
        if self._weft_error is not None:
            raise self._weft_error
        try:
            run_logged(["cmake", "-S", self.weft_src, "-B", self.weft_build,
                        "-DCMAKE_BUILD_TYPE=Release", "-DWEFT_BUILD_TESTS=OFF",
                        "-DWEFT_BUILD_EXAMPLES=OFF"], self.logs / "weft-cmake.log")
            run_logged(["cmake", "--build", self.weft_build, "--target", "weft_static",
                        "-j", str(os.cpu_count() or 2)], self.logs / "weft-build.log")
            libs = sorted(self.weft_build.rglob("libweft.a"))
            if not libs:
                raise BuildError(f"no libweft.a under {self.weft_build}")
            self._weft_lib = libs[0]
            return self._weft_lib
        except BuildError as e:
            self._weft_error = BuildError(f"weft (Release) did not build: {e}")
            raise self._weft_error from None

    def cc(self, name, sources, weft=False, pkgconfig=(), libs=()) -> list:
        """gcc -O2 the sources (paths relative to bench/) into bench/.work/bin/name."""
        out = self.bin / name
        argv = ["gcc", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-pthread",
                "-I", BENCH / "common", "-I", self.weft_src / "include"]
        argv += [BENCH / s for s in sources]
        if pkgconfig:
            flags = subprocess.run(["pkg-config", "--cflags", "--libs", *pkgconfig],
                                   capture_output=True, text=True)
            if flags.returncode != 0:
                raise BuildError(f"pkg-config {' '.join(pkgconfig)}: {flags.stderr.strip()}")
            argv += flags.stdout.split()
        if weft:
            argv.append(self.weft_lib())
        argv += list(libs) + ["-o", out]
        run_logged(argv, self.logs / f"{name}.log")
        return [str(out)]

    def go(self, name, pkgdir) -> list:
        """go build the stdlib-only package in bench/pkgdir, offline, caches in .work."""
        out = self.bin / name
        env = dict(os.environ, GOCACHE=str(WORK / "go" / "cache"),
                   GOPATH=str(WORK / "go" / "path"), GOTOOLCHAIN="local", GOPROXY="off",
                   GO111MODULE="off", GOFLAGS="", CGO_ENABLED="0")
        run_logged(["go", "build", "-o", out, "."], self.logs / f"{name}.log",
                   cwd=BENCH / pkgdir, env=env)
        return [str(out)]

    def python(self, script) -> list:
        """Run bench/script with Debian's python3 (checked to exist)."""
        if not os.access(PYTHON, os.X_OK):
            raise BuildError(f"{PYTHON} is missing (Debian package python3)")
        path = BENCH / script
        if not path.is_file():
            raise BuildError(f"{path} is missing")
        return [PYTHON, str(path)]


def export_rev(rev: str):
    """Unpack the tree of git revision rev into bench/.work/src-<hash> (read-only
    git commands: nothing in the repository changes). Returns (dir, label)."""
    r = subprocess.run(["git", "--no-optional-locks", "-C", str(REPO), "rev-parse", "--verify",
                        rev + "^{commit}"], capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"--weft-rev {rev}: not a commit: {r.stderr.strip()}")
    commit = r.stdout.strip()
    dest = WORK / f"src-{commit[:12]}"
    if not (dest / "CMakeLists.txt").is_file():
        tmp = WORK / f"src-{commit[:12]}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.Popen(["git", "-C", str(REPO), "archive", commit],
                                   stdout=subprocess.PIPE)
        rc_tar = subprocess.call(["tar", "-x", "-C", str(tmp)], stdin=archive.stdout)
        archive.stdout.close()
        if archive.wait() != 0 or rc_tar != 0:
            raise BuildError(f"git archive {commit} failed")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return dest, f"commit {commit[:10]} (--weft-rev {rev})"


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None
