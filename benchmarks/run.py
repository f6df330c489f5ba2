#!/usr/bin/env python3
"""The aq benchmark: every figure of SPEC §10, each beside a floor measured in the same run.

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME[,NAME]] [--json FILE] [--keep]

It builds all its data in a temporary directory (removed at the end unless ``--keep``), runs the real
``aq`` console script next to the interpreter (``.venv/bin/aq``, what users run), and prints one table:
the figure, the value (the median of several runs), the target, whether it is met, the floor it is
compared with and the ratio value/floor. Absolute times on a shared machine are noisy: the ratio to a
floor measured in the same run is the steadier number.

Groups (``--only``): startup, status, insights, pickup, throughput, memory, parse. ``--quick`` runs every
figure at small sizes (a smoke run of seconds, for the test suite); its numbers mean nothing.
Exit status: 0 when every figure was measured (met or not), 1 when a group failed to run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_logs  # noqa: E402
import queue_data  # noqa: E402

GROUPS = ("startup", "status", "insights", "rebuild", "budget", "pg", "pickup", "throughput", "memory", "parse")
PY = sys.executable


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    figure: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    floor: float | None = None
    floor_unit: str = ""
    floor_what: str = ""
    ratio: float | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)
    goal: str = ""  # issue 15's goal for this figure (closer to the floor than SPEC §10 asks)
    goal_met: bool | None = None


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "MB/s":
        return f"{value:,.0f} MB/s"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.1f} {unit}"


def render(rows: list[Row]) -> str:
    from tabulate import tabulate

    table = []
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        floor = f"{fmt(r.floor, r.floor_unit or r.unit)} {r.floor_what}".strip() if r.floor is not None else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        goal = f"{r.goal}: {'yes' if r.goal_met else 'NO' if r.goal_met is False else '?'}" if r.goal else ""
        table.append([r.key, r.figure, fmt(r.value, r.unit), r.target or "(info)", met, floor, ratio, goal])
    text = tabulate(
        table,
        headers=["KEY", "FIGURE", "VALUE", "TARGET", "MET", "FLOOR", "RATIO", "GOAL (#15)"],
        disable_numparse=True,
    )
    notes = [f"  {r.key}: {r.note}" for r in rows if r.note]
    used = {r.floor_what for r in rows if r.floor is not None}
    floors = [f"  {what} {desc}" for what, desc in FLOORS.items() if what in used]
    return (
        text
        + ("\n\nnotes:\n" + "\n".join(notes) if notes else "")
        + ("\n\nfloors (measured in this run):\n" + "\n".join(floors) if floors else "")
    )


FLOORS = {
    "(python -c pass)": "the same interpreter starting and doing nothing (site, .pth files included)",
    "(list + read every meta)": "a python process that scandirs the four state folders, stats each job file "
    "and reads its whole meta file: the I/O status/insights cannot avoid without a cache",
    "(renames, appends, spawn true)": "in-process, 4 threads, per job: claim rename + dir fsync, 3 fsync'd meta "
    "appends, spawn `true` in its own session (prompt on stdin, output to a log), final rename + dir fsync",
    "(bare python)": "RSS of the same interpreter doing nothing",
    "(list the jobs)": "store.list() in the same process: the listing every budget check makes",
    "(filesystem store)": "the same figure on the filesystem store in the same run",
    "(read every meta, fs)": "the filesystem floor at the same size (list + read every meta), for scale",
    "(at the job's start)": "the runner's RSS in the first sample after the agent started",
    "(read, 1 MiB chunks)": "the parsing child reading the same file in 1 MiB chunks (page cache warm for both)",
    "(before parsing)": "the parsing child's peak RSS (VmHWM) after importing aq and every plugin, before parsing",
}


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the environment -------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.tmp = tmp
        self.rows: list[Row] = []
        self.errors: list[str] = []
        exe = Path(PY).parent / "aq"
        if exe.exists():
            self.aq_argv = [str(exe)]
            self.aq_how = f"console script {exe}"
        elif shutil.which("aq"):
            self.aq_argv = [shutil.which("aq") or "aq"]
            self.aq_how = f"console script {self.aq_argv[0]}"
        else:
            self.aq_argv = [PY, "-m", "aq_core"]
            self.aq_how = f"{PY} -m aq_core (no aq console script found)"
        env = dict(os.environ)
        for name in ("AGENT_QUEUE_ROOT", "AQ_LOAD_PLUGINS", "PYTHONPROFILEIMPORTTIME", "PYTHONDEVMODE"):
            env.pop(name, None)
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            # An installed aq runs from bytecode (pip compiles it at install time), as `python -c pass`
            # runs the standard library's. With PYTHONDONTWRITEBYTECODE set and no bytecode in the
            # checkout, every aq command would compile each of its modules at each start (15 ms of
            # `aq add`'s 30), which no user pays. This run's own cache, not the source tree.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        self.bytecode = "no bytecode: every module compiled at each start" if args.no_bytecode else "bytecode cached"
        self.env = env
        self._python_floor: float | None = None
        self.scale_floor: dict[int, float] = {}  # size -> the read-every-meta floor measured at it
        self.scale_root: tuple[Path, int] | None = None  # the status queue and its final size

    def add(self, row: Row) -> None:
        self.rows.append(row)
        log(
            f"{row.key}: {fmt(row.value, row.unit)}"
            + (f" (floor {fmt(row.floor, row.floor_unit or row.unit)})" if row.floor is not None else "")
        )

    def aq(self, root: Path, *args: str) -> list[str]:
        return [*self.aq_argv, "--root", str(root), *args]

    def run(
        self,
        argv: list[str],
        cwd: Path | None = None,
        check: bool = True,
        timeout: float = 600,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(argv, cwd=cwd, env={**self.env, **(env or {})}, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[:6])} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}"
            )
        return proc

    def timed(self, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
        """Wall time of one run of ``argv`` (stdout into a pipe that is read, as a pager or a script would)."""
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env={**self.env, **(env or {})}, capture_output=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[:6])} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}"
            )
        return elapsed

    def python_floor(self) -> float:
        """The median start-up of a bare ``python -c pass`` (measured once, shared by several figures)."""
        if self._python_floor is None:
            self._python_floor = median([self.timed([PY, "-c", "pass"]) for _ in range(3 if self.quick else 10)])
        return self._python_floor


# -- start-up --------------------------------------------------------------------------------------


def bench_startup(b: Bench) -> None:
    root = b.tmp / "empty-root"
    b.run(b.aq(root, "status"))  # creates the (empty) queue root
    reps = 3 if b.quick else 20
    cases = {
        "floor": [PY, "-c", "pass"],
        "version": [*b.aq_argv, "--version"],
        "status": b.aq(root, "status"),
        "module": [PY, "-m", "aq_core", "--version"],
    }
    work = b.tmp / "startup-work"
    work.mkdir(exist_ok=True)
    adds = [b.aq(root, "add", str(write_job(b.tmp / "startup-jobs", f"s{i:03d}", ["true"], work))) for i in range(reps)]
    times: dict[str, list[float]] = {name: [] for name in (*cases, "add")}
    warm = b.aq(root, "add", str(write_job(b.tmp / "startup-jobs", "s-warm", ["true"], work)))
    for argv in (*cases.values(), warm):
        b.run(argv)  # once untimed: the bytecode cache written (as installing aq would have), the plugin index
    for i in range(reps):  # interleaved, so a burst of noise hits every case alike
        for name, argv in cases.items():
            times[name].append(b.timed(argv))
        times["add"].append(b.timed(adds[i]))
    floor = median(times["floor"])
    b._python_floor = floor
    for key, name, label in (
        ("startup.version", "version", "aq --version"),
        ("startup.status", "status", "aq status, empty root"),
        ("startup.module", "module", "python -m aq_core --version"),
        ("startup.add", "add", "aq add, one job file"),
    ):
        value = median(times[name])
        ratio = value / floor
        is_target = name in ("version", "status")
        b.add(
            Row(
                key,
                label,
                value,
                "s",
                target="<= 3x floor" if is_target else "",
                met=ratio <= 3.0 if is_target else None,
                floor=floor,
                floor_what="(python -c pass)",
                ratio=ratio,
                note=f"median of {reps}; {b.aq_how}; {b.bytecode}"
                if name == "version"
                else "validates against installed engines, writes the job (command engine)"
                if name == "add"
                else "",
                samples=times[name],
                goal="<= 2.5x floor" if name == "add" else "",
                goal_met=ratio <= 2.5 if name == "add" else None,
            )
        )


# -- status and insights at scale ------------------------------------------------------------------


def bench_scale(b: Bench, groups: set[str]) -> None:
    full = (1000, 10_000, 100_000)
    sizes = (50, 500, 5000) if b.quick else full
    reps = {sizes[0]: 1, sizes[1]: 1, sizes[2]: 1} if b.quick else {sizes[0]: 7, sizes[1]: 5, sizes[2]: 3}
    root = b.tmp / "scale-root"
    made = 0
    status_t: dict[int, float] = {}
    insights_t: dict[int, float] = {}
    for size in sizes:
        start = time.perf_counter()
        counts = queue_data.add_finished_jobs(root, made, size)
        made = size
        log(f"built {size:,} finished jobs in {time.perf_counter() - start:.1f} s ({counts} added)")
        floor_argv = [PY, "-c", queue_data.FLOOR_SCRIPT, str(root)]
        floors, st, ins = [], [], []
        for _ in range(reps[size] if groups & {"status", "insights"} else 1):
            floors.append(b.timed(floor_argv))
            if "status" in groups:
                st.append(b.timed(b.aq(root, "status")))
            if "insights" in groups:
                ins.append(b.timed(b.aq(root, "insights", "--json")))
        if "insights" in groups:  # not timed: the answer covers every finished job
            out = b.run(b.aq(root, "insights", "--json")).stdout
            got = len(json.loads(out)["jobs"])
            if got != size:
                raise RuntimeError(f"aq insights --json listed {got} jobs, expected {size}")
        floor = median(floors)
        label = _size_label(full[sizes.index(size)])  # keys name the full run's sizes, also under --quick
        for group, samples, store, target_size, limit in (
            ("status", st, status_t, sizes[1], 0.3),
            ("insights", ins, insights_t, sizes[2], 2.0),
        ):
            if group not in groups:
                continue
            value = median(samples)
            store[size] = value
            is_target = size == target_size and not b.quick
            what = "aq status" if group == "status" else "aq insights --json"
            b.add(
                Row(
                    f"{group}.{label}",
                    f"{what}, {size:,} jobs",
                    value,
                    "s",
                    target=f"<= {limit} s" if is_target else "",
                    met=value <= limit if is_target else None,
                    floor=floor,
                    floor_what="(list + read every meta)",
                    ratio=value / floor,
                    note=f"median of {len(samples)}" + (f"; --quick: {size:,} jobs, not {label}" if b.quick else ""),
                    samples=samples,
                    goal="<= 0.8 s and < floor" if size == sizes[2] else "",
                    goal_met=value <= 0.8 and value < floor if size == sizes[2] else None,
                )
            )
        b.scale_floor[size] = floor
        for group in ("status", "insights"):
            if group in groups and size == sizes[2]:
                bench_after_change(b, root, size, label, floor, reps[size], group)
        if "rebuild" in groups and size != sizes[0]:
            bench_rebuild(b, root, size, label, floor)
        if "budget" in groups and size == sizes[2]:
            bench_budget(b, root, size, label)
        if "rebuild" in groups and size == sizes[2]:
            bench_rebuild_unkept(b, root, size, label, floor)  # last: it takes the rows out of meta
    b.scale_root = (root, sizes[2])
    for group, times in (("status", status_t), ("insights", insights_t)):
        if group not in groups:
            continue
        growth = [times[sizes[i + 1]] / times[sizes[i]] for i in range(2)]
        worst = max(growth)
        b.add(
            Row(
                f"{group}.growth",
                f"{'aq status' if group == 'status' else 'aq insights'}: time per 10x jobs",
                worst,
                "x",
                target="<= 10x (linear)",
                met=worst <= 10.0,
                goal="<= 10x",
                goal_met=worst <= 10.0,
                note=(
                    f"{_size_label(sizes[0])} {times[sizes[0]]:.3f} s -> {_size_label(sizes[1])} {times[sizes[1]]:.3f} s "
                    f"({growth[0]:.1f}x) -> {_size_label(sizes[2])} {times[sizes[2]]:.3f} s ({growth[1]:.1f}x); "
                    "value = the worse step (raw times, start-up included)"
                ),
            )
        )


BUDGET_CHILD = r"""
import json, sys, time
from aq_core import limits
from aq_core.store_fs import FsStore
store = FsStore(sys.argv[1])
now = time.time()
reads = [0]
read_meta = store.read_meta
def counted(job_id):
    reads[0] += 1
    return read_meta(job_id)
store.read_meta = counted
def timed(fn):
    reads[0] = 0
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, reads[0]
out = {}
out["list"], _ = timed(store.list)
out["full"], out["full_reads"] = timed(
    lambda: limits.spend_since((store.read_meta(e.id) for e in store.list()), limits.day_start(now)))
daily = limits.DailySpend()
out["first"], out["first_reads"] = timed(lambda: daily.totals(store, now))
steady = [timed(lambda: daily.totals(store, now)) for _ in range(3)]
out["steady"] = sorted(t for t, _ in steady)[1]
out["steady_reads"] = max(n for _, n in steady)
print(json.dumps(out))
"""


def bench_after_change(
    b: Bench, root: Path, size: int, label: str, floor: float, reps: int, group: str = "status"
) -> None:
    """`aq status` (or `aq insights --json`) after 10 jobs finished since the last read (the view patched);
    the jobs removed after."""
    argv = ["status"] if group == "status" else ["insights", "--json"]
    samples, start = [], 900_000  # ids as wide as the queue's: a wider id would re-lay the whole table
    b.run(b.aq(root, *argv))
    for rep in range(reps):
        queue_data.add_finished_jobs(root, start + 10 * rep, start + 10 * rep + 10)
        samples.append(b.timed(b.aq(root, *argv)))
    for folder, suffix in (("done", ".md"), ("failed", ".md"), ("meta", ".meta")):
        for i in range(start, start + 10 * reps):
            (root / folder / f"job-{i:06d}{suffix}").unlink(missing_ok=True)
    b.run(b.aq(root, "status"))  # the listing is the one the view was written for again
    value = median(samples)
    what = f"{'aq status' if group == 'status' else 'aq insights --json'}, {size:,} jobs, 10 jobs finished since the last read"
    note = f"median of {len(samples)}; the view patched, not rewritten"
    b.add(
        Row(
            f"{group}.{label}.after_change",
            what,
            value,
            "s",
            floor=floor,
            floor_what="(list + read every meta)",
            ratio=value / floor,
            note=note,
            samples=samples,
        )
    )


def bench_rebuild(b: Bench, root: Path, size: int, label: str, floor: float) -> None:
    """`aq status` with the rows cache deleted: every finished job's row read from its meta (the row kept
    as its last line, see `aq_core/row_line.py`)."""
    samples, cpu = map(list, zip(*(_cold_status(b, root) for _ in range(1 if b.quick else 3)), strict=True))
    value = median(samples)
    big = size >= (5000 if b.quick else 100_000)
    b.add(
        Row(
            f"rebuild.{label}",
            f"cold rebuild of the rows cache (aq status), {size:,} jobs",
            value,
            "s",
            floor=floor,
            floor_what="(list + read every meta)",
            ratio=value / floor,
            note=(
                f"median of {len(samples)}; cache/ deleted before each; {os.cpu_count()} CPUs for the parallel "
                f"rebuild; CPU (user + sys, all processes) median {median(cpu):.2f} s"
            ),
            samples=samples,
            goal="<= 4 s" if big else "",
            goal_met=value <= 4.0 if big else None,
        )
    )


def _cold_status(b: Bench, root: Path) -> tuple[float, float]:
    """`aq status` with `cache/` deleted first: (its wall time, the CPU of all its processes)."""
    import resource

    shutil.rmtree(root / "cache", ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    value = b.timed(b.aq(root, "status"))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the forked processes' CPU included
    return value, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def bench_rebuild_unkept(b: Bench, root: Path, size: int, label: str, floor: float) -> None:
    """The cold rebuild of jobs that finished before aq kept their row in meta: every row computed."""
    start = time.perf_counter()
    cut = queue_data.drop_kept_rows(root)
    log(f"took the kept row out of {cut:,} metas in {time.perf_counter() - start:.1f} s")
    value, cpu = _cold_status(b, root)
    b.add(
        Row(
            f"rebuild.{label}.unkept",
            f"the same, jobs finished before their row was kept in meta, {size:,} jobs",
            value,
            "s",
            floor=floor,
            floor_what="(list + read every meta)",
            ratio=value / floor,
            note=f"one sample; every row computed from its meta, as before; CPU (all processes) {cpu:.2f} s",
            samples=[value],
        )
    )


def bench_budget(b: Bench, root: Path, size: int, label: str) -> None:
    """The runner's daily budget check over a queue of finished jobs: running totals against a full re-read."""
    runs = [json.loads(b.run([PY, "-c", BUDGET_CHILD, str(root)]).stdout) for _ in range(1 if b.quick else 3)]
    pick = {k: median([r[k] for r in runs]) for k in runs[0]}
    b.add(
        Row(
            "budget.full_read",
            f"  daily budget check before: re-read every meta, {size:,} jobs",
            pick["full"],
            "s",
            floor=pick["list"],
            floor_what="(list the jobs)",
            ratio=pick["full"] / pick["list"],
            note=f"what every refresh (30 s) did: {int(pick['full_reads']):,} meta reads",
        )
    )
    b.add(
        Row(
            "budget.refresh",
            f"daily budget check, running totals, {size:,} jobs, nothing changed",
            pick["steady"],
            "s",
            floor=pick["list"],
            floor_what="(list the jobs)",
            ratio=pick["steady"] / pick["list"],
            note=(
                f"meta reads per refresh: {int(pick['steady_reads'])} (the first, at runner start: "
                f"{int(pick['first_reads']):,} in {pick['first']:.3f} s); a job is read again only when it changed"
            ),
            goal="constant per job (reads only changed jobs)",
            goal_met=pick["steady_reads"] == 0,
        )
    )


PG_FIGURES = (
    ("pg.run", "PostgreSQL store, 4 hosts, `true` jobs", "jobs/s"),
    ("pg.claims", "PostgreSQL raw claims, 4 processes", "claims/s"),
    ("pg.commits", "PostgreSQL durable commits, 4 processes, one row each", "commits/s"),
    ("pg.status.100k", "aq status on PostgreSQL, 100,000 jobs, warm", "s"),
    ("pg.insights.100k", "aq insights --json on PostgreSQL, 100,000 jobs, warm", "s"),
    ("pg.status.first", "aq status on PostgreSQL, 100,000 jobs, first read on a host", "s"),
    ("pg.insights.first", "aq insights --json on PostgreSQL, 100,000 jobs, first read on a host", "s"),
)
# Each figure's goal (issue 15): its text and whether a value meets it.
PG_GOALS = {
    "pg.run": (">= the filesystem store", lambda value, floor: value >= floor),
    "pg.claims": (">= 5,000/s", lambda value, floor: value >= 5000),
    "pg.commits": ("", lambda value, floor: None),
    "pg.status.100k": ("<= 0.5 s", lambda value, floor: value <= 0.5),
    "pg.insights.100k": ("<= 0.5 s", lambda value, floor: value <= 0.5),
    "pg.status.first": ("<= 1 s", lambda value, floor: value <= 1.0),
    "pg.insights.first": ("<= 1 s", lambda value, floor: value <= 1.0),
}


def pg_row(
    b: Bench, key: str, figure: str, samples: list[float], floor: float | None, floor_what: str, note: str
) -> None:
    """One ``pg.*`` figure: the median of ``samples`` beside its floor and issue 15's goal."""
    unit = next(unit for k, _, unit in PG_FIGURES if k == key)
    value = median(samples)
    goal, met = PG_GOALS[key]
    b.add(
        Row(
            key,
            figure,
            value,
            unit,
            floor=floor,
            floor_what=floor_what,
            ratio=value / floor if floor else None,
            note=note,
            samples=samples if len(samples) > 1 else [],
            goal=goal,
            goal_met=met(value, floor),
        )
    )


def bench_pg(b: Bench) -> None:
    """The shared store: throughput and claims next to the filesystem store, reads at scale (own server)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from pgserver import PgServer, available

    if not available():
        for key, label, unit in PG_FIGURES:
            b.add(Row(key, label, None, unit, note="n/a: no PostgreSQL server binaries (initdb, pg_ctl) here"))
        return
    import claims

    from aq_core.store_pg import init_schema

    server = PgServer(durable=True).start()  # durable: fsync on, as the filesystem store fsyncs
    try:

        def database() -> str:
            url = server.url(server.create_database())
            init_schema(url)
            return url

        jobs, count = (40, 200) if b.quick else (400, 2000)
        rates = {}
        for name, url in (("fs", None), ("pg", database())):
            base = b.tmp / f"pg-{name}"
            (base / "run").mkdir(parents=True)
            (base / "claim").mkdir()
            if url:
                run = claims.run_counted(base / "run", url, jobs, 4)
            else:
                run = (claims.run_throughput(base / "run", url, jobs, 4), 0.0, 0.0)
            rates[name] = (run, claims.claim_throughput(base / "claim", url, count, 4))
            if url:
                commits = claims.commit_floor(url, count, 4)
        (rate, xacts, syncs), claimed = rates["pg"]
        how = (
            "benchmarks/claims.py's measures: first claim to last finish (meta), 4 `aq run --once` processes;"
            f" a job: {xacts:.1f} transactions (round trips, about), {syncs:.1f} WAL flushes (the server's counts)"
        )
        fs = "(filesystem store)"
        pg_row(b, "pg.run", f"PostgreSQL store, 4 hosts, `true` jobs ({jobs})", [rate], rates["fs"][0][0], fs, how)
        how = "store.claim calls racing for the same ids, exactly one winning each"
        pg_row(
            b,
            "pg.claims",
            f"PostgreSQL raw claims, 4 processes ({count})",
            [claimed],
            commits,
            "(durable commits)",
            how,
        )
        how = "the claims' floor on this server: each process inserts one row per durable commit, nothing else"
        pg_row(
            b,
            "pg.commits",
            f"PostgreSQL durable commits, 4 processes, one row each ({count})",
            [commits],
            None,
            "-",
            how,
        )
        bench_pg_reads(b, database())
    finally:
        server.destroy()


def bench_pg_reads(b: Bench, url: str) -> None:
    if b.scale_root is None:  # --only pg: build the queue the status figures use
        size = 5000 if b.quick else 100_000
        queue_data.add_finished_jobs(b.tmp / "scale-root", 0, size)
        b.scale_root = (b.tmp / "scale-root", size)
    root, size = b.scale_root
    floor = b.scale_floor.get(size)
    host = b.tmp / "pg-host"
    env = {"AQ_STORE": url}
    start = time.perf_counter()
    b.run(b.aq(host, "store", "migrate", "--from", str(root), "--to", url), timeout=3600)
    migrated = time.perf_counter() - start
    log(f"migrated {size:,} jobs to PostgreSQL in {migrated:.1f} s")
    reps = 1 if b.quick else 3
    label = f"--quick: {size:,} jobs; " if b.quick else ""
    meta = "(read every meta, fs)"
    for key, args in (("pg.status.100k", ["status"]), ("pg.insights.100k", ["insights", "--json"])):
        samples = [b.timed(b.aq(host, *args), env=env) for _ in range(reps)]
        what = "aq status" if args == ["status"] else "aq insights --json"
        note = f"{label}median of {reps}; this host's rows cache filled by `aq store migrate` ({migrated:.0f} s)"
        pg_row(b, key, f"{what} on PostgreSQL, {size:,} jobs, warm", samples, floor, meta, note)
    # A host that never read this store (no local rows cache): printed from the rows the server keeps,
    # sorted and summed there; the host builds no cache (each sample is a new host).
    for key, args in (("pg.status.first", ["status"]), ("pg.insights.first", ["insights", "--json"])):
        samples = [b.timed(b.aq(b.tmp / f"pg-fresh-{key}-{i}", *args), env=env) for i in range(1 if b.quick else 3)]
        note = f"{label}median of {len(samples)}, each a new host; printed from the rows the server keeps"
        what = "aq status" if args == ["status"] else "aq insights --json"
        pg_row(b, key, f"{what} on PostgreSQL, {size:,} jobs, first read on a host", samples, floor, meta, note)


def _size_label(size: int) -> str:
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size)


# -- jobs for a live runner ------------------------------------------------------------------------


def write_job(folder: Path, job_id: str, command: list[str], cwd: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job_id}.md"
    path.write_text(f"---\nengine: command\ncommand: {json.dumps(command)}\ncwd: {cwd}\n{extra}---\nDo the task.\n")
    return path


@contextlib.contextmanager
def runner(b: Bench, root: Path, workers: int, name: str) -> Iterator[subprocess.Popen]:
    """An ``aq run`` process on ``root``; stopped with SIGTERM (to its own pid) on exit."""
    out = open(b.tmp / f"{name}.runner.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        b.aq(root, "run", "--workers", str(workers)), env=b.env, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: (root / "runners" / str(proc.pid)).exists() or proc.poll() is not None, 30, "runner start")
        if proc.poll() is not None:
            raise RuntimeError(f"aq run exited at once ({proc.returncode}); see {out.name}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()


def wait_for(condition: Callable[[], object], timeout: float, what: str, step: float = 0.002) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def read_meta(root: Path, job_id: str) -> dict[str, str]:
    last: dict[str, str] = {}
    for line in (root / "meta" / f"{job_id}.meta").read_text().splitlines():
        key, _, value = line.partition("=")
        last[key] = value
    return last


def count(folder: Path) -> int:
    try:
        return sum(1 for name in os.listdir(folder) if name.endswith(".md"))
    except FileNotFoundError:
        return 0


# -- pick-up latency -------------------------------------------------------------------------------


def bench_pickup(b: Bench) -> None:
    n = 5 if b.quick else 20
    root = b.tmp / "pickup-root"
    work = b.tmp / "pickup-work"
    marks = b.tmp / "pickup-marks"
    for d in (work, marks):
        d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    latency, own, runner_part = [], [], []
    with runner(b, root, 1, "pickup"):
        time.sleep(0.5)  # idle
        for i in range(n):
            job_id = f"pick-{i:02d}"
            mark = marks / job_id
            # The agent records its start time first thing: sh + date, ~2 ms of its own start-up.
            path = write_job(b.tmp / "pickup-jobs", job_id, ["/bin/sh", "-c", f"date +%s.%N > {mark}"], work)
            t0 = time.time()
            b.run(b.aq(root, "add", str(path)), cwd=work)
            text = wait_for(lambda m=mark: m.exists() and m.read_text().strip(), 30, f"{job_id} to start")
            started = float(str(text))
            wait_for(lambda j=job_id: (root / "done" / f"{j}.md").exists(), 30, f"{job_id} to finish")
            added = float(read_meta(root, job_id)["added"])
            latency.append(started - t0)
            own.append(added - t0)
            runner_part.append(started - added)
            time.sleep(rng.uniform(0.1, 0.3))  # not in step with the runner's poll
    floor = b.python_floor()
    med = median(latency)
    b.add(
        Row(
            "pickup.median",
            f"aq add -> agent start, idle runner ({n} jobs)",
            med,
            "s",
            target="<= 0.25 s",
            met=med <= 0.25,
            floor=floor,
            floor_what="(python -c pass)",
            ratio=med / floor,
            note="t0 = just before `aq add` is spawned; the agent (`sh -c 'date +%s.%N > mark'`) writes its start time",
            samples=latency,
            goal="<= 0.05 s",
            goal_met=med <= 0.05,
        )
    )
    b.add(
        Row(
            "pickup.p95",
            "aq add -> agent start, p95",
            p95(latency),
            "s",
            floor=floor,
            floor_what="(python -c pass)",
            ratio=p95(latency) / floor,
        )
    )
    b.add(
        Row(
            "pickup.add_part",
            "  of which aq add start-up (t0 -> added=)",
            median(own),
            "s",
            floor=floor,
            floor_what="(python -c pass)",
            ratio=median(own) / floor,
            note="`added=` is stamped by aq add just before it writes the job: its process start, imports, plugin load, validation",
            samples=own,
        )
    )
    b.add(
        Row(
            "pickup.runner_part",
            "  of which the runner (added= -> agent start)",
            median(runner_part),
            "s",
            note=f"aq add wakes the runner through its FIFO (wake/<pid>), after its own fsyncs; then the claim and "
            f"launch; max {max(runner_part):.3f} s",
            samples=runner_part,
        )
    )


def bench_pickup_plan(b: Bench) -> None:
    """Pick-up latency with 10,000 jobs waiting: half on a start time, half on those (``after:``)."""
    waiting = 1000 if b.quick else 10_000
    n = 5 if b.quick else 15
    root = b.tmp / "plan-root"
    work = b.tmp / "plan-work"
    marks = b.tmp / "plan-marks"
    for d in (work, marks, root / "inbox"):
        d.mkdir(parents=True, exist_ok=True)
    # Written straight into inbox/ (as a user may drop files): 10,000 `aq add` runs would take minutes.
    later = time.time() + 30 * 86400
    for i in range(waiting // 2):
        parent, child = f"later-{i:05d}", f"child-{i:05d}"
        (root / "inbox" / f"{parent}.md").write_text(
            f"---\nengine: command\ncommand: [/bin/true]\ncwd: {work}\nnot_before: {later:.0f}\n---\nWait.\n"
        )
        (root / "inbox" / f"{child}.md").write_text(
            f"---\nengine: command\ncommand: [/bin/true]\ncwd: {work}\nafter: {parent}\n---\nWait.\n"
        )
    rng = random.Random(7)
    latency: list[float] = []
    runner_part: list[float] = []
    with runner(b, root, 1, "plan"):
        for i in range(n + 1):
            job_id = f"plan-{i:02d}"
            mark = marks / job_id
            path = write_job(b.tmp / "plan-jobs", job_id, ["/bin/sh", "-c", f"date +%s.%N > {mark}"], work)
            t0 = time.time()
            b.run(b.aq(root, "add", str(path)), cwd=work)
            # The first job also waits for the runner's first look at the 10,000 files: not counted.
            text = wait_for(lambda m=mark: m.exists() and m.read_text().strip(), 300, f"{job_id} to start")
            wait_for(lambda j=job_id: (root / "done" / f"{j}.md").exists(), 60, f"{job_id} to finish")
            if i:
                latency.append(float(str(text)) - t0)
                runner_part.append(float(str(text)) - float(read_meta(root, job_id)["added"]))
            time.sleep(rng.uniform(0.1, 0.3))
    if count(root / "inbox") != waiting:
        raise RuntimeError(f"expected {waiting} jobs still waiting, found {count(root / 'inbox')}")
    med = median(latency)
    b.add(
        Row(
            "pickup.plan_10k",
            f"aq add -> agent start, {waiting:,} jobs waiting (half on after:)",
            med,
            "s",
            target="" if b.quick else "<= 0.25 s",
            met=None if b.quick else med <= 0.25,
            floor=b.python_floor(),
            floor_what="(python -c pass)",
            ratio=med / b.python_floor(),
            note=f"median of {n}; p95 {p95(latency):.3f} s; the runner's part (added= -> agent start) "
            f"{median(runner_part):.3f} s" + ("; --quick: 1,000 waiting, not 10k" if b.quick else ""),
            samples=latency,
        )
    )


# -- throughput ------------------------------------------------------------------------------------


FLOOR_PROMPT = b"Do the task.\n"


def throughput_floor(b: Bench, jobs: int, workers: int) -> float:
    """Seconds per job, ``workers`` threads, doing only what a job needs: claim rename, meta appends
    (fsync'd), spawn ``true`` with the prompt on stdin and the log as output, the final rename."""
    root = queue_data.make_root(b.tmp / f"floor-root-{jobs}")
    for i in range(jobs):
        (root / "inbox" / f"f{i}.md").write_bytes(FLOOR_PROMPT)

    def sync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def one(i: int) -> None:
        name = f"f{i}.md"
        meta = root / "meta" / f"f{i}.meta"
        os.rename(root / "inbox" / name, root / "building" / name)
        sync_dir(root / "building")
        append(meta, b"claimed=1\npid=1\n")
        log_fd = os.open(root / "logs" / f"f{i}.1.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        proc = subprocess.Popen(
            ["true"], stdin=subprocess.PIPE, stdout=log_fd, stderr=subprocess.STDOUT, start_new_session=True
        )
        os.close(log_fd)
        append(meta, b"attempt=1\nstarted=1\n")
        with contextlib.suppress(BrokenPipeError):
            proc.communicate(FLOOR_PROMPT)
        append(meta, b"exit=0\nresult=ok\ndecision=done\n")
        os.rename(root / "building" / name, root / "done" / name)
        sync_dir(root / "done")

    index = iter(range(jobs))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(index, None)
            if i is None:
                return
            one(i)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.perf_counter() - start) / jobs


def git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def make_repo(path: Path, files: int = 20) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for i in range(files):
        (path / f"module_{i}.py").write_text(f"def f{i}():\n    return {i}\n" * 20)
    git(path, "add", "-A")
    git(path, "commit", "-q", "--no-gpg-sign", "-m", "initial")
    return path


def run_throughput(
    b: Bench, name: str, jobs: int, cwds: list[Path], command: list[str] | None = None
) -> tuple[float, float, str]:
    """Queue ``jobs`` jobs running ``command`` (``true``; round robin over ``cwds``), drain them with 4
    workers; return (jobs/s from the first claim to the last meta write, wall of ``aq run --once``, done)."""
    root = b.tmp / f"{name}-root"
    folder = b.tmp / f"{name}-jobs"
    argv = command or ["true"]
    paths = [str(write_job(folder, f"{name}-{i:04d}", argv, cwds[i % len(cwds)])) for i in range(jobs)]
    b.run(b.aq(root, "add", *paths), cwd=b.tmp)
    start = time.perf_counter()
    b.run(b.aq(root, "run", "--once", "--workers", "4"), timeout=1200)
    wall = time.perf_counter() - start
    done = count(root / "done")
    metas = [read_meta(root, f"{name}-{i:04d}") for i in range(jobs)]
    claimed = min(float(m["claimed"]) for m in metas)
    last = max(os.stat(root / "meta" / f"{name}-{i:04d}.meta").st_mtime for i in range(jobs))
    checkpointed = sum(1 for m in metas if m.get("wip_branch"))
    changed = sum(1 for m in metas if m.get("files_changed", "0") != "0")
    return (
        jobs / (last - claimed),
        wall,
        f"{done}/{jobs} in done/, {checkpointed} with a wip_branch checkpoint, {changed} with a change committed",
    )


def bench_throughput(b: Bench) -> None:
    plain = b.tmp / "plain-cwd"
    plain.mkdir(exist_ok=True)
    n_plain = 20 if b.quick else 300
    n_git, n_repos = (8, 4) if b.quick else (120, 8)
    floor = median([throughput_floor(b, 20 if b.quick else 200, 4) for _ in range(1 if b.quick else 3)])
    rate, wall, done = run_throughput(b, "tp", n_plain, [plain])
    _throughput_rows(
        b, "throughput.nogit", "`true`, no git", rate, 50.0, floor, wall, done, n_plain, "cwd is not a git repo"
    )
    repos = [make_repo(b.tmp / "repos" / f"repo{i}") for i in range(n_repos)]
    rate, wall, done = run_throughput(b, "tg", n_git, repos)
    _throughput_rows(
        b,
        "throughput.git",
        "`true`, git checkpoints",
        rate,
        10.0,
        floor,
        wall,
        done,
        n_git,
        f"in-place jobs over {n_repos} git repos (20 files each), round robin, so 4 can run at once; "
        "floor has no git (the git work is the overhead)",
    )
    # Not a target: the same with an agent that changes a file, so every checkpoint writes a commit.
    writer = ["/bin/sh", "-c", 'echo "$AQ_JOB_ID" > "bench-$AQ_JOB_ID.txt"']
    rate, wall, done = run_throughput(b, "tw", n_git, repos, writer)
    _throughput_rows(
        b,
        "throughput.git_commit",
        "git, agent writes a file",
        rate,
        None,
        floor,
        wall,
        done,
        n_git,
        "same repos; the agent writes one new file, so each checkpoint commits (commit-tree, update-ref, diff-tree)",
    )


def _throughput_rows(
    b: Bench,
    key: str,
    label: str,
    rate: float,
    target: float | None,
    floor: float,
    wall: float,
    done: str,
    n: int,
    how: str,
) -> None:
    b.add(
        Row(
            key,
            f"command engine, 4 workers, {label} ({n} jobs)",
            rate,
            "jobs/s",
            target=f">= {target:g} jobs/s" if target else "",
            met=rate >= target if target else None,
            note=f"{how}; first claim -> last meta write; `aq run --once` wall {wall:.2f} s; {done}",
        )
    )
    per_job = 1000.0 / rate
    goal, goal_met = "", None
    if key == "throughput.nogit":
        goal, goal_met = "<= 2x floor", per_job <= 2.0 * floor * 1000.0
    elif key == "throughput.git":
        goal, goal_met = "<= 5 ms", per_job <= 5.0
    b.add(
        Row(
            key + ".per_job",
            f"  per-job wall time at 4 workers, {label}",
            per_job,
            "ms",
            floor=floor * 1000.0,
            floor_what="(renames, appends, spawn true)",
            ratio=per_job / (floor * 1000.0),
            goal=goal,
            goal_met=goal_met,
        )
    )


# -- memory ----------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 1e6


def runner_rss_mb(pid: int) -> float:
    """RSS of an ``aq run`` and of the runner processes it forked (``--processes``), summed: pages they share
    count once in each, so the sum is at or above what they use together."""
    import psutil

    proc = psutil.Process(pid)
    argv = proc.cmdline()
    total = proc.memory_info().rss
    for child in proc.children():
        with contextlib.suppress(psutil.Error):
            if child.cmdline() == argv:  # a forked runner process; agents run other programs
                total += child.memory_info().rss
    return total / 1e6


def bench_memory(b: Bench) -> None:
    import psutil

    work = b.tmp / "mem-work"
    work.mkdir(exist_ok=True)
    # The floor: a bare interpreter's RSS.
    idle = subprocess.Popen([PY, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, env=b.env)
    time.sleep(0.3)
    floor = rss_mb(idle.pid)
    idle.communicate(b"")

    root = b.tmp / "mem-root"
    sleep_s = 2.0 if b.quick else 4.0
    paths = [str(write_job(b.tmp / "mem-jobs", f"sleep-{i}", ["sleep", str(sleep_s)], work)) for i in range(8)]
    samples: list[float] = []
    with runner(b, root, 8, "mem8") as proc:
        b.run(b.aq(root, "add", *paths), cwd=work)
        wait_for(lambda: count(root / "building") == 8, 30, "8 running jobs", step=0.01)
        end = time.monotonic() + sleep_s / 2
        while time.monotonic() < end and count(root / "building") == 8:
            samples.append(runner_rss_mb(proc.pid))
            time.sleep(0.05)
        wait_for(lambda: count(root / "done") == 8, 60, "8 jobs done", step=0.05)
    peak = max(samples)
    b.add(
        Row(
            "memory.8_workers",
            "runner RSS, 8 jobs running",
            peak,
            "MB",
            target="<= 60 MB",
            met=peak <= 60.0,
            floor=floor,
            floor_what="(bare python)",
            ratio=peak / floor,
            note=(
                f"max of {len(samples)} psutil samples of the `aq run --workers 8` processes (their RSS summed:"
                " one a usable CPU, see --processes) while 8 `sleep` jobs ran"
            ),
        )
    )

    size = 50_000_000 if b.quick else 1_000_000_000
    root = b.tmp / "big-root"
    path = write_job(b.tmp / "big-jobs", "big", ["head", "-c", str(size), "/dev/zero"], work)
    log_path = root / "logs" / "big.1.log"
    trace: list[tuple[int, float]] = []
    with runner(b, root, 1, "big") as proc:
        time.sleep(0.3)
        before = rss_mb(proc.pid)
        b.run(b.aq(root, "add", str(path)), cwd=work)
        wait_for(log_path.exists, 30, "the 1 GB job to start", step=0.001)
        while not (root / "done" / "big.md").exists() and not (root / "failed" / "big.md").exists():
            try:
                trace.append((log_path.stat().st_size, rss_mb(proc.pid)))
            except (FileNotFoundError, psutil.NoSuchProcess):
                break
            time.sleep(0.005)
        time.sleep(0.2)
        after = rss_mb(proc.pid)
    on_disk = log_path.stat().st_size
    log_path.unlink()
    middle = min(trace, key=lambda s: abs(s[0] - size / 2)) if trace else (0, after)
    start_rss = trace[0][1] if trace else before
    peak = max([after, *(r for _, r in trace)])
    growth = peak - start_rss
    b.add(
        Row(
            "memory.big_output",
            f"runner RSS while an agent writes {size / 1e9:g} GB",
            peak,
            "MB",
            target="flat (peak <= start + 10 MB)",
            met=growth <= 10.0 and on_disk == size,
            floor=start_rss,
            floor_what="(at the job's start)",
            ratio=peak / start_rss,
            note=(
                f"idle {before:.1f} MB; start {start_rss:.1f} MB; middle {middle[1]:.1f} MB (log at {middle[0] / 1e6:.0f} MB); "
                f"end {after:.1f} MB; {len(trace)} samples; log on disk {on_disk:,} bytes "
                f"({'as expected' if on_disk == size else 'WRONG SIZE'}), deleted; agent `head -c {size} /dev/zero`"
            ),
        )
    )


# -- parse_usage -----------------------------------------------------------------------------------


PARSE_CHILD = r"""
import json, sys, time
from pathlib import Path


def peak_kb():
    # VmHWM: this process's own peak RSS. (ru_maxrss is inherited through fork and exec on Linux,
    # so a child of a big benchmark process would report the parent's peak.)
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


from aq_core import plugins
engine, path, read = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
plugins.installed_engines()  # load the plugins first: their import is not the parse
import aq_claude.usage, aq_codex.usage, aq_copilot.usage, aq_devin.atif  # noqa: the parsers' own modules
base = peak_kb()
start = time.perf_counter()
with open(read, "rb") as fh:
    while fh.read(1 << 20):
        pass
floor = time.perf_counter() - start
start = time.perf_counter()
usage = plugins.parse_usage(engine, path)
parse = time.perf_counter() - start
peak = peak_kb()
print(json.dumps({"parse": parse, "floor": floor, "base_kb": base, "peak_kb": peak, "figures": usage.figures()}))
"""


def bench_parse(b: Bench) -> None:
    size = 5_000_000 if b.quick else 200_000_000
    runs = 1 if b.quick else 3
    folder = b.tmp / "parse"
    folder.mkdir(exist_ok=True)
    cases = [
        ("claude", "claude", engine_logs.claude_log, "stream-json (claude -p --output-format stream-json --verbose)"),
        ("codex", "codex", engine_logs.codex_log, "codex exec --json"),
        ("copilot", "copilot", engine_logs.copilot_log, "copilot -p --output-format json + OTel spans"),
        ("devin", "devin", engine_logs.devin_plain_log, "devin -p plain answer: no usage in it, the log is not read"),
        ("devin_atif", "devin", engine_logs.devin_atif_export, "devin ATIF export <log>.atif.json beside a 1-line log"),
    ]
    for key, engine, generate, what in cases:
        log_path = folder / f"{key}.log"
        if key == "devin_atif":
            log_path.write_text("Done.\n")
            data_path = Path(str(log_path) + ".atif.json")
        else:
            data_path = log_path
        start = time.perf_counter()
        expected = generate(data_path, size)
        mb = data_path.stat().st_size / 1e6
        log(f"generated {key}: {mb:.0f} MB in {time.perf_counter() - start:.1f} s")
        results = []
        for _ in range(runs):
            out = b.run([PY, "-c", PARSE_CHILD, engine, str(log_path), str(data_path)]).stdout
            results.append(json.loads(out))
        for path in (log_path, data_path):
            path.unlink(missing_ok=True)
        parse = median([r["parse"] for r in results])
        floor = median([r["floor"] for r in results])
        peak = max(r["peak_kb"] for r in results) / 1024
        base = min(r["base_kb"] for r in results) / 1024
        figures = results[0]["figures"]
        wrong = {k: (v, figures.get(k)) for k, v in expected.items() if figures.get(k) != v}
        check = "figures as generated" if not wrong else f"FIGURES DIFFER (expected, got): {wrong}"
        if key == "devin":
            check = f"no figures (as expected: {figures == {}})"
        speed = mb / parse
        b.add(
            Row(
                f"parse.{key}.speed",
                f"parse_usage {engine}{' (ATIF export)' if key == 'devin_atif' else ''}, {mb:.0f} MB",
                speed,
                "MB/s",
                target=">= 200 MB/s",
                met=speed >= 200.0,
                floor=mb / floor,
                floor_what="(read, 1 MiB chunks)",
                ratio=parse / floor,
                note=f"{what}; median of {runs}; ratio = parse time / read time; {check}",
            )
        )
        b.add(
            Row(
                f"parse.{key}.memory",
                "  peak RSS of the parsing process",
                peak,
                "MB",
                target="< 100 MB",
                met=peak < 100.0,
                floor=base,
                floor_what="(before parsing)",
                ratio=peak / base,
            )
        )


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="aq benchmark: the figures of SPEC §10 against floors.")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of seconds")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help=f"run only these groups (comma-separated): {', '.join(GROUPS)}"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="run aq with PYTHONDONTWRITEBYTECODE=1 (every module compiled from source at each start)",
    )
    args = parser.parse_args(argv)
    selected = set(GROUPS)
    if args.only:
        selected = {name.strip() for item in args.only for name in item.split(",") if name.strip()}
        unknown = selected - set(GROUPS)
        if unknown:
            parser.error(f"unknown group(s): {', '.join(sorted(unknown))} (known: {', '.join(GROUPS)})")
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="aq-bench-"))
    bench = Bench(args, tmp)
    started = time.perf_counter()
    log(f"{'quick' if args.quick else 'full'} run in {tmp}; aq = {bench.aq_how}; {os.cpu_count()} CPUs")
    steps: list[tuple[str, Callable[[], None]]] = [
        ("startup", lambda: bench_startup(bench)),
        ("status+insights+rebuild+budget", lambda: bench_scale(bench, selected)),
        ("pg", lambda: bench_pg(bench)),
        ("pickup", lambda: bench_pickup(bench)),
        ("pickup", lambda: bench_pickup_plan(bench)),
        ("throughput", lambda: bench_throughput(bench)),
        ("memory", lambda: bench_memory(bench)),
        ("parse", lambda: bench_parse(bench)),
    ]
    try:
        for name, step in steps:
            if not set(name.split("+")) & selected:
                continue
            log(f"== {name}")
            try:
                step()
            except Exception as exc:
                bench.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                log(f"{name} FAILED:\n{traceback.format_exc()}")
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(render(bench.rows))
    targets = [r for r in bench.rows if r.met is not None]
    met = sum(1 for r in targets if r.met)
    print(
        f"\n{met} of {len(targets)} targets met; {len(bench.rows)} figures in {elapsed:.0f} s "
        f"({'quick' if args.quick else 'full'} run, {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after, "
        f"aq = {bench.aq_how}, {bench.bytecode})"
    )
    for error in bench.errors:
        print(f"ERROR {error}")
    if args.json:
        payload = {
            "quick": args.quick,
            "groups": sorted(selected),
            "seconds": round(elapsed, 1),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": [load_before, os.getloadavg()[0]],
            "aq": bench.aq_how,
            "bytecode": bench.bytecode,
            "errors": bench.errors,
            "rows": [asdict(r) for r in bench.rows],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if bench.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
