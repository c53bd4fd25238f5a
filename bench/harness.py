"""bench/harness.py: the benchmark driver behind bench/run.

    bench/run [WORKLOAD...] [--only weft] [--quick] [--reps K] [--list]

For each workload asked for (all registered ones by default) it installs the
Debian packages the programs need (as root; otherwise it prints the apt-get
command and exits 2), builds weft in Release into bench/.work/build and the
benchmark programs into bench/.work/bin, then runs weft's programs and the
peers' interleaved (weft, peer, weft, peer, ... with the order rotated each
repetition) for several repetitions, so that load from other work on a shared
machine falls on both sides alike. It reports the median of each
(variant, impl).

Output: every measurement as one JSON line on stdout (the program's object
plus "rep"), progress on stderr, and at the end a Markdown table on stdout
with the ratio weft / best peer. Files: bench/results/<ID>.json (all
repetitions, medians, ratios, targets), bench/results/<ID>.png and
bench/results/results.md (rebuilt from every <ID>.json present). With
--only weft only weft's side runs and the results go to
bench/results/<ID>.weft-only.json (no chart, results.md untouched).

Exit status: 0 when everything built and every run was right; 1 when a
program failed to build, crashed, timed out or reported a wrong result (the
others still run and are reported); 2 for missing packages or bad usage.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

# The registry: workload id -> directory under bench/ holding workload.py.
# A new workload is a new directory and one line here.
WORKLOADS = {
    "W1": "w1_pool",
    "W2": "w2_cpu",
    "W3": "w3_procpool",
    "W3b": "w3b_roundtrip",
    "W4": "w4_queue",
    "W5": "w5_shmq",
    "W6a": "w6a_coro",
    "W6b": "w6b_spawn",
    "W7": "w7_http",
    "W7p": "w7p_patch",
    "W8": "w8_mpi",
}

DEFAULT_REPS = 5
QUICK_REPS = 2


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def si(v: float) -> str:
    """21700000 -> '21.7 M'."""
    if v is None or not math.isfinite(v):
        return "n/a"
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def load_workload(wid: str):
    path = bl.BENCH / WORKLOADS[wid] / "workload.py"
    spec = importlib.util.spec_from_file_location(f"bench_workload_{wid}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if mod.ID != wid:
        raise SystemExit(f"bench: {path} declares ID {mod.ID}, registered as {wid}")
    return mod


# ------------------------------------------------------------------ packages

def missing_packages(pkgs) -> list:
    if not bl.have("dpkg-query"):
        log("bench: no dpkg-query (not Debian?): not checking packages " + " ".join(pkgs))
        return []
    missing = []
    for p in sorted(set(pkgs)):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                           capture_output=True, text=True)
        if r.returncode != 0 or r.stdout.split()[-1:] != ["installed"]:
            missing.append(p)
    return missing


def ensure_packages(pkgs) -> None:
    missing = missing_packages(pkgs)
    if not missing:
        return
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        log("bench: missing Debian packages: " + " ".join(missing))
        log("bench: install them as root, then run again:\n  apt-get update && " + " ".join(cmd))
        sys.exit(2)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("bench: installing " + " ".join(missing))
    if subprocess.call(cmd, env=env, stdout=sys.stderr) != 0:
        # A fresh machine may have no package lists yet.
        subprocess.call(["apt-get", "update"], env=env, stdout=sys.stderr)
        if subprocess.call(cmd, env=env, stdout=sys.stderr) != 0:
            log("bench: apt-get install failed: " + " ".join(cmd))
            sys.exit(2)
    still = missing_packages(missing)
    if still:
        log("bench: still missing after apt-get: " + " ".join(still))
        sys.exit(2)


# ------------------------------------------------------------------ machine

def cpu_busy(interval_s: float = 1.0) -> float:
    """Fraction of all CPUs' time not idle over interval_s, from /proc/stat."""
    def snap():
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return sum(v), v[3] + v[4]  # all, idle + iowait
    try:
        a = snap()
        time.sleep(interval_s)
        b = snap()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = b[0] - a[0]
    return 1.0 - (b[1] - a[1]) / total if total > 0 else 0.0


def wait_quiet(max_wait_s: float, threshold: float = 0.25) -> float:
    """Wait up to max_wait_s for the CPUs to be at most threshold busy (other
    people's work). Returns the last busy fraction measured; warns if high."""
    busy = cpu_busy()
    if busy > threshold and max_wait_s > 0:
        log(f"bench: CPUs {busy:.0%} busy with other work; waiting up to {max_wait_s:.0f} s "
            "for them to quiet down")
        deadline = time.monotonic() + max_wait_s
        while busy > threshold and time.monotonic() < deadline:
            busy = cpu_busy(2.0)
    if busy > threshold:
        log(f"bench: WARNING: CPUs {busy:.0%} busy with other work before the run: figures "
            "will be noisy (weft and peers are interleaved, so the ratios suffer less than "
            "the absolute numbers); --wait-idle S waits for a quiet machine")
    return busy


def machine_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "loadavg_at_start": list(os.getloadavg())}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    return info


def weft_commit(src) -> str:
    if isinstance(src, str):  # already a label ("commit abc1234 (--weft-rev HEAD)")
        return src

    def git(*a):
        r = subprocess.run(["git", "--no-optional-locks", "-C", str(src), *a],
                           capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""
    if git("rev-parse", "--show-toplevel") != str(src):
        return f"source tree {src} (not a git checkout)"
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src", "include", "CMakeLists.txt")
    return head + (" + uncommitted changes in src/include" if dirty else "")


# ------------------------------------------------------------------ running

def side_of(mod, run) -> str:
    return next(p.side for p in mod.PROGRAMS if p.name == run.program)


def schedule(mod, runs, rep: int):
    """This repetition's order: per variant, weft and peer runs alternating,
    rotated by rep so no impl always goes first."""
    variants = []
    for r in runs:
        if r.variant not in variants:
            variants.append(r.variant)
    for v in variants:
        weft = [r for r in runs if r.variant == v and side_of(mod, r) == "weft"]
        peer = [r for r in runs if r.variant == v and side_of(mod, r) == "peer"]
        order = []
        for i in range(max(len(weft), len(peer))):
            order += weft[i:i + 1] + peer[i:i + 1]
        k = rep % len(order) if order else 0
        yield from order[k:] + order[:k]


def unit_higher_is_better(mod, unit) -> bool:
    """The direction of a unit: the workload's UNIT follows HIGHER_IS_BETTER;
    the extra units a workload declares in UNITS ({unit: higher_is_better})
    follow their own."""
    extra = getattr(mod, "UNITS", {})
    if unit != mod.UNIT and unit in extra:
        return bool(extra[unit])
    return getattr(mod, "HIGHER_IS_BETTER", True)


def known_units(mod) -> set:
    return {mod.UNIT, *getattr(mod, "UNITS", {})}


class Unsupported(Exception):
    """The program exited with bl.EXIT_UNSUPPORTED: nothing to measure in this build."""


def execute(mod, run, argv):
    """Run one measurement. Returns (measurement dict, None) or (None, reason).
    Raises Unsupported (with the program's stderr) when the program says that
    what it was asked to measure is not in this build."""
    cmd = list(argv) + list(run.args)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=run.timeout_s)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {run.timeout_s:.0f} s: {' '.join(cmd)}"
    except OSError as e:
        return None, f"could not start {cmd[0]}: {e}"
    err_tail = " | ".join(p.stderr.strip().splitlines()[-4:])
    if p.returncode == bl.EXIT_UNSUPPORTED and not any(
            line.startswith("{") for line in p.stdout.splitlines()):
        last = p.stderr.strip().splitlines()[-1:]
        raise Unsupported(last[0] if last else "(no stderr)")
    if p.returncode != 0:
        return None, f"exit {p.returncode}: {err_tail or '(no stderr)'}"
    found = []
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                return None, f"bad JSON line: {line!r}"
    if len(found) != 1:
        return None, f"printed {len(found)} measurements, expected 1"
    m = found[0]
    for key in ("workload", "impl", "variant", "n", "value", "unit"):
        if key not in m:
            return None, f"measurement lacks '{key}': {m}"
    if (m["workload"], m["impl"], m["variant"]) != (mod.ID, run.impl, run.variant):
        return None, f"measured {m['workload']}/{m['impl']}/{m['variant']}, expected " \
                     f"{mod.ID}/{run.impl}/{run.variant}"
    if m["unit"] not in known_units(mod):
        return None, f"unit {m['unit']!r} is not one the workload declares " \
                     f"({', '.join(sorted(known_units(mod)))})"
    # 0 is a real figure for a lower-is-better unit (idle CPU), never for a rate.
    floor_ok = (lambda v: v >= 0) if not unit_higher_is_better(mod, m["unit"]) else (lambda v: v > 0)
    if not (isinstance(m["value"], (int, float)) and not isinstance(m["value"], bool)
            and math.isfinite(m["value"]) and floor_ok(m["value"])):
        return None, f"bad value {m['value']!r}"
    return m, None


# ------------------------------------------------------------------ results

def better_ratio(higher_is_better: bool, weft_value, peer_value):
    """> 1 when weft is better, whatever the unit's direction; None when the
    divisor is 0 (an idle CPU of 0 %: no ratio to speak of)."""
    if higher_is_better:
        return weft_value / peer_value if peer_value > 0 else None
    return peer_value / weft_value if weft_value > 0 else None


def summarize(mod, runs, measurements, failures, reps, quick, only, started, machine,
              weft_src, skipped=()) -> dict:
    sides = {r.impl: side_of(mod, r) for r in runs}
    order = []
    for r in runs:
        if (r.variant, r.impl) not in order:
            order.append((r.variant, r.impl))
    # weft's impls before the peers within each variant, run order otherwise
    variants = []
    for v, _ in order:
        if v not in variants:
            variants.append(v)
    order = [(v, i) for v in variants for s in ("weft", "peer")
             for (vv, i) in order if vv == v and sides[i] == s]

    medians = []
    for v, impl in order:
        vals = [m["value"] for m in measurements if m["variant"] == v and m["impl"] == impl]
        failed = [f["reason"] for f in failures if f.get("variant") == v and f.get("impl") == impl]
        units = [m["unit"] for m in measurements if m["variant"] == v and m["impl"] == impl]
        unit = units[0] if units else mod.UNIT
        row = {"variant": v, "impl": impl, "side": sides[impl], "unit": unit,
               "higher_is_better": unit_higher_is_better(mod, unit), "reps": len(vals)}
        if vals:
            ns = {m["n"] for m in measurements if m["variant"] == v and m["impl"] == impl}
            row.update(median=statistics.median(vals), min=min(vals), max=max(vals),
                       n=sorted(ns)[0] if len(ns) == 1 else sorted(ns))
        if failed:
            row["failure"] = failed[0]
        unsupported = [s["reason"] for s in skipped if s["variant"] == v and s["impl"] == impl]
        if unsupported and not vals:
            row["not_measured"] = unsupported[0]
        medians.append(row)

    def row_of(v, impl):
        return next((r for r in medians if r["variant"] == v and r["impl"] == impl), None)

    def med(v, impl):
        r = row_of(v, impl)
        return r.get("median") if r else None

    ratios = []
    for v in variants:
        for unit in dict.fromkeys(r["unit"] for r in medians if r["variant"] == v):
            peers = [r for r in medians if r["variant"] == v and r["unit"] == unit
                     and r["side"] == "peer" and "median" in r]
            if not peers:
                continue
            hib = unit_higher_is_better(mod, unit)
            best = (max if hib else min)(peers, key=lambda r: r["median"])
            for r in medians:
                if r["variant"] == v and r["unit"] == unit and r["side"] == "weft" \
                        and "median" in r:
                    ratio = better_ratio(hib, r["median"], best["median"])
                    if ratio is not None:
                        ratios.append({"variant": v, "impl": r["impl"],
                                       "best_peer": best["impl"], "ratio": ratio})
    targets = []
    for t in getattr(mod, "TARGETS", []):
        for v in ([t.variant] if t.variant else variants):
            pv = t.peer_variant or v
            w_row = row_of(v, t.weft_impl)
            unit = w_row["unit"] if w_row else mod.UNIT
            entry = {"variant": v, "impl": t.weft_impl, "unit": unit, "met": None}
            w = med(v, t.weft_impl)
            if t.peer_impl is not None:
                entry.update(peer=t.peer_impl, min_ratio=t.min_ratio, ratio=None)
                if pv != v:
                    entry["peer_variant"] = pv
                p = med(pv, t.peer_impl)
                if w is not None and p is not None:
                    entry["ratio"] = better_ratio(unit_higher_is_better(mod, unit), w, p)
                    if entry["ratio"] is not None:
                        entry["met"] = entry["ratio"] >= t.min_ratio
            else:
                entry.update(min_value=t.min_value, max_value=t.max_value, value=w)
                if w is not None:
                    entry["met"] = ((t.min_value is None or w >= t.min_value)
                                    and (t.max_value is None or w <= t.max_value))
            targets.append(entry)

    return {
        "workload": mod.ID, "title": mod.TITLE, "unit": mod.UNIT,
        "higher_is_better": getattr(mod, "HIGHER_IS_BETTER", True),
        "generated": started.isoformat(timespec="seconds"),
        "reps": reps, "quick": quick, "only": only,
        "machine": machine, "weft_commit": weft_commit(weft_src),
        "medians": medians, "ratios": ratios, "targets": targets,
        "failures": failures, "not_measured": list(skipped), "runs": measurements,
    }


def write_atomic(path: Path, data, binary=False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if binary:
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    os.replace(tmp, path)


def ratio_cell(doc, row) -> str:
    if row["side"] != "weft" or "median" not in row:
        return ""
    r = next((x for x in doc["ratios"]
              if x["variant"] == row["variant"] and x["impl"] == row["impl"]), None)
    if r is None:
        if doc.get("only") is not None:
            return ""
        unit = row.get("unit", doc["unit"])
        if any(p["variant"] == row["variant"] and p.get("unit", doc["unit"]) == unit
               and p["side"] == "peer" and "median" in p for p in doc["medians"]):
            return "n/a (a median is 0)"
        return "n/a (no peer measured)"
    return f"**{r['ratio']:.2f}×** vs {r['best_peer']}"


def table(doc) -> list:
    lines = ["| workload | variant | impl | median | unit | weft / best peer | min – max (reps) |",
             "|---|---|---|---:|---|---|---|"]
    for row in doc["medians"]:
        if "median" in row:
            med = si(row["median"])
            spread = f"{si(row['min'])} – {si(row['max'])} ({row['reps']})"
        elif "not_measured" in row and "failure" not in row:
            med, spread = "not measured", "(0)"
        else:
            med, spread = "FAILED", "(0)"
        cell = ratio_cell(doc, row)
        if "not_measured" in row and "median" not in row:
            reason = row["not_measured"].replace("|", "/").replace("\n", " ")[:160]
            cell = (cell + "; " if cell else "") + f"not in this build: {reason}"
        if "failure" in row:
            reason = row["failure"].replace("|", "/").replace("\n", " ")[:160]
            cell = (cell + "; " if cell else "") + f"failed: {reason}"
        lines.append(f"| {doc['workload']} | {row['variant']} | {row['impl']} | {med} | "
                     f"{row['unit']} | {cell} | {spread} |")
    return lines


def target_lines(doc) -> list:
    out = []
    for t in doc["targets"]:
        verdict = "met" if t.get("met") else "**NOT met**"
        if t.get("peer") is not None:
            peer = t["peer"] + (f" ({t['peer_variant']})" if t.get("peer_variant") else "")
            goal = f"{t['impl']} / {peer} ≥ {t['min_ratio']:g}×"
            if t.get("ratio") is None:
                out.append(f"- {t['variant']}: {goal}: not measured")
            else:
                out.append(f"- {t['variant']}: {goal}: {t['ratio']:.2f}× — {verdict}")
        else:
            unit = t.get("unit", doc["unit"])
            bounds = []
            if t.get("min_value") is not None:
                bounds.append(f"≥ {t['min_value']:g} {unit}")
            if t.get("max_value") is not None:
                bounds.append(f"≤ {t['max_value']:g} {unit}")
            goal = f"{t['impl']} " + " and ".join(bounds)
            if t.get("value") is None:
                out.append(f"- {t['variant']}: {goal}: not measured")
            else:
                out.append(f"- {t['variant']}: {goal}: {t['value']:.3g} {unit} — {verdict}")
    return out


def workload_section(doc) -> list:
    m = doc["machine"]
    head = [f"## {doc['workload']}: {doc['title']}", "",
            f"{doc['generated']}, weft {doc['weft_commit']}, {m.get('cpus')} CPUs "
            f"({m.get('cpu_model') or 'unknown CPU'}), load average at start "
            f"{m['loadavg_at_start'][0]:.2f}"
            + (f", CPUs {m['cpu_busy_before']:.0%} busy with other work just before"
               if "cpu_busy_before" in m else "")
            + f"; median of {doc['reps']} interleaved repetitions"
            + (" (--quick)" if doc["quick"] else "") + "; "
            + ("higher" if doc["higher_is_better"] else "lower") + " is better"
            + "".join(f"; {u}: {'higher' if h else 'lower'} is better"
                      for u, h in dict((r.get("unit", doc["unit"]),
                                        r.get("higher_is_better", doc["higher_is_better"]))
                                       for r in doc["medians"]).items()
                      if u != doc["unit"])
            + ".", ""]
    out = head + table(doc)
    if doc["targets"] and not doc.get("only"):
        out += ["", "Targets:", ""] + target_lines(doc)
    if doc.get("not_measured"):
        out += ["", "Not measured (not in this build):", ""]
        for f in doc["not_measured"]:
            out.append(f"- {f['program']}/{f['impl']}/{f['variant']}: "
                       + f["reason"].replace("\n", " ")[:400])
    if doc["failures"]:
        out += ["", "Failures:", ""]
        for f in doc["failures"]:
            what = "/".join(str(f[k]) for k in ("program", "impl", "variant") if f.get(k))
            out.append(f"- {what}"
                       + (f" (rep {f['rep'] + 1})" if f.get("rep") is not None else "")
                       + ": " + f["reason"].replace("\n", " ")[:400])
    return out


def write_results_md() -> None:
    order = list(WORKLOADS)
    docs = []
    for path in sorted(bl.RESULTS.glob("*.json")):
        if path.name.endswith(".weft-only.json"):
            continue
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            log(f"bench: skipping {path}: {e}")
    docs.sort(key=lambda d: (order.index(d["workload"]) if d["workload"] in order else 99,
                             d["workload"]))
    lines = ["# weft benchmark results", "",
             "Written by `bench/run` (see bench/README.md); each section comes from "
             "bench/results/<workload>.json and its chart is bench/results/<workload>.png. "
             "Ratios are weft's median over the best peer's median in the same run "
             "(> 1: weft is better).", ""]
    for d in docs:
        lines += workload_section(d) + ["", f"![{d['workload']}]({d['workload']}.png)", ""]
    write_atomic(bl.RESULTS / "results.md", "\n".join(lines))


def chart(doc, path: Path) -> None:
    """One bar per measured (variant, impl): the median with a min-max bar.
    Bars are grouped by variant; each unit of the workload gets its own panel
    (log scale when its figures span more than 20x, else linear from 0)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["medians"] if "median" in r]
    if not rows:
        return
    impls = list(dict.fromkeys(r["impl"] for r in doc["medians"]))
    sides = {r["impl"]: r["side"] for r in doc["medians"]}
    weft_colors = iter(["#08306b", "#2171b5", "#6baed6", "#9ecae1", "#c6dbef"])
    peer_colors = iter(["#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d",
                        "#e6ab02", "#666666"])
    colors = {i: next(weft_colors if sides[i] == "weft" else peer_colors, "#999999")
              for i in impls}
    units = list(dict.fromkeys(r.get("unit", doc["unit"]) for r in rows))
    panels = []  # (unit, [(variant, [rows])])
    for u in units:
        urows = [r for r in rows if r.get("unit", doc["unit"]) == u]
        vs = list(dict.fromkeys(r["variant"] for r in urows))
        panels.append((u, [(v, [r for r in urows if r["variant"] == v]) for v in vs]))
    slots = [sum(len(g) + 1 for _, g in groups) for _, groups in panels]
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(max(7.0, 0.45 * sum(slots) + 2.0 * len(panels)), 5.0),
                             gridspec_kw={"width_ratios": slots})
    legend = {}
    for ax, (unit, groups) in zip(axes[0], panels):
        x, ticks, labels, top = 0.0, [], [], 0.0
        lows = [r["min"] for _, g in groups for r in g]
        positive = min(lows) > 0 and max(r["max"] for _, g in groups for r in g) > 20 * min(lows)
        hib = groups[0][1][0].get("higher_is_better", doc["higher_is_better"])
        for v, g in groups:
            start = x
            for r in g:
                bar = ax.bar([x], [r["median"]], 0.9, color=colors[r["impl"]],
                             yerr=[[r["median"] - r["min"]], [r["max"] - r["median"]]],
                             capsize=2, ecolor="#555555",
                             edgecolor="black" if r["side"] == "weft" else "none",
                             linewidth=0.6)
                legend.setdefault(r["impl"], bar)
                ax.annotate(si(r["median"]), (x, r["max"]), textcoords="offset points",
                            xytext=(0, 3), ha="center", va="bottom", fontsize=7, rotation=90)
                top = max(top, r["max"])
                x += 1.0
            ticks.append((start + x - 1.0) / 2)
            labels.append(v)
            x += 1.0
        if positive:
            ax.set_yscale("log")
            if top > 0:
                ax.set_ylim(top=top * 12)
        else:
            ax.set_ylim(bottom=0, top=(top * 1.3) if top > 0 else 1.0)
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel(f"{unit} (" + ("log scale; " if positive else "")
                      + ("higher" if hib else "lower") + " is better)")
        ax.grid(axis="y", which="both", alpha=0.25)
    m = doc["machine"]
    fig.suptitle(f"{doc['workload']}: {doc['title']}\nmedian of {doc['reps']} interleaved reps "
                 f"(bars: min–max), {m.get('cpus')} CPUs, {doc['generated'][:10]}", fontsize=9)
    fig.legend(list(legend.values()), list(legend.keys()), fontsize=7, ncol=min(4, len(legend)),
               loc="lower center")
    fig.tight_layout(rect=(0, 0.04 + 0.035 * ((len(legend) + 3) // 4), 1, 1))
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)


# ------------------------------------------------------------------ main

def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description="Run weft's benchmarks against "
                                 "their peers; see bench/README.md.")
    ap.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                    help="workload ids (default: all): " + " ".join(WORKLOADS))
    ap.add_argument("--only", choices=["weft"], help="run weft's side alone")
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK_REPS} repetitions instead of {DEFAULT_REPS}")
    ap.add_argument("--reps", type=int, help="number of repetitions (overrides --quick)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S",
                    help="before each workload, wait up to S seconds for other work on the "
                    "machine to stop (CPUs at most 25%% busy)")
    ap.add_argument("--weft-rev", metavar="REV",
                    help="build weft as committed at git revision REV (e.g. HEAD) instead of "
                    "the working tree, which others may be editing")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    args = ap.parse_args()

    if args.list:
        for wid in WORKLOADS:
            print(f"{wid}\t{load_workload(wid).TITLE}")
        return 0
    wanted = []
    for w in args.workloads or list(WORKLOADS):
        key = next((k for k in WORKLOADS if k.lower() == w.lower()), None)
        if key is None:
            log(f"bench: unknown workload '{w}' (known: {' '.join(WORKLOADS)})")
            return 2
        if key not in wanted:
            wanted.append(key)
    reps = args.reps if args.reps is not None else (QUICK_REPS if args.quick else DEFAULT_REPS)
    if reps < 1:
        log("bench: --reps must be at least 1")
        return 2
    sides = {"weft"} if args.only == "weft" else {"weft", "peer"}

    mods = [load_workload(w) for w in wanted]
    pkgs = list(bl.APT_BUILD) + ([] if args.only else list(bl.APT_CHARTS))
    for mod in mods:
        for prog in mod.PROGRAMS:
            if prog.side in sides:
                pkgs += prog.apt
    ensure_packages(pkgs)

    t0 = time.monotonic()
    weft_src, weft_label = bl.REPO, None
    if args.weft_rev:
        try:
            weft_src, weft_label = bl.export_rev(args.weft_rev)
        except bl.BuildError as e:
            log(f"bench: {e}")
            return 2
    builder = bl.Builder(weft_src)
    bl.RESULTS.mkdir(parents=True, exist_ok=True)
    any_failure = False
    docs = []
    for mod in mods:
        busy = wait_quiet(args.wait_idle)
        started = datetime.datetime.now().astimezone()
        machine = dict(machine_info(), cpu_busy_before=round(busy, 3))
        failures, measurements = [], []
        argv_of = {}
        for prog in mod.PROGRAMS:
            if prog.side not in sides:
                continue
            log(f"bench: {mod.ID}: building {prog.name}")
            try:
                argv_of[prog.name] = prog.build(builder)
            except bl.BuildError as e:
                log(f"bench: {mod.ID}: {prog.name} NOT BUILT: {e}")
                failures.append({"program": prog.name, "rep": None,
                                 "reason": f"not built: {str(e).splitlines()[0]}"})
        runs = [r for r in mod.runs(args.quick) if side_of(mod, r) in sides]
        for r in runs:
            if r.program not in argv_of:
                f = next(f for f in failures if f.get("program") == r.program)
                failures.append({"program": r.program, "impl": r.impl, "variant": r.variant,
                                 "rep": None, "reason": f["reason"]})
        runnable = [r for r in runs if r.program in argv_of]
        broken = set()
        skipped = []
        for rep in range(reps):
            for run in schedule(mod, runnable, rep):
                key = (run.impl, run.variant)
                if key in broken:
                    continue
                tag = f"[{mod.ID} rep {rep + 1}/{reps} {time.monotonic() - t0:5.0f}s]"
                try:
                    m, reason = execute(mod, run, argv_of[run.program])
                except Unsupported as e:
                    broken.add(key)
                    skipped.append({"program": run.program, "impl": run.impl,
                                    "variant": run.variant, "reason": str(e)})
                    log(f"{tag} {run.variant:6} {run.impl:20} NOT MEASURED (not in this "
                        f"build): {e}")
                    continue
                if m is None:
                    broken.add(key)
                    failures.append({"program": run.program, "impl": run.impl,
                                     "variant": run.variant, "rep": rep, "reason": reason})
                    log(f"{tag} {run.variant:6} {run.impl:20} FAILED: {reason}")
                    continue
                m["rep"] = rep
                measurements.append(m)
                print(json.dumps(m, separators=(",", ":")), flush=True)
                log(f"{tag} {run.variant:6} {run.impl:20} {si(m['value']):>8} {m['unit']}"
                    + (f"  ({m['secs']:.2f} s)" if "secs" in m else ""))
        any_failure |= bool(failures)
        machine["loadavg_at_end"] = list(os.getloadavg())
        doc = summarize(mod, runs, measurements, failures, reps, args.quick, args.only, started,
                        machine, weft_label or builder.weft_src, skipped)
        docs.append(doc)
        if args.only:
            write_atomic(bl.RESULTS / f"{mod.ID}.weft-only.json", json.dumps(doc, indent=1) + "\n")
        else:
            write_atomic(bl.RESULTS / f"{mod.ID}.json", json.dumps(doc, indent=1) + "\n")
            try:
                chart(doc, bl.RESULTS / f"{mod.ID}.png")
            except Exception as e:  # a chart must not lose the numbers
                log(f"bench: {mod.ID}: chart failed: {e}")
                any_failure = True
    if not args.only:
        write_results_md()

    print()
    for doc in docs:
        print("\n".join(workload_section(doc)))
        print()
    log(f"bench: done in {time.monotonic() - t0:.0f} s; results in {bl.RESULTS}"
        + ("" if not any_failure else "; SOME PROGRAMS FAILED (see above)"))
    return 1 if any_failure else 0


if __name__ == "__main__":
    sys.exit(main())
