"""The benchmark runs: ``benchmarks/run.py --quick`` exits 0 and prints every figure's row (no timings asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"

FIGURES = [
    "startup.version",
    "startup.status",
    "startup.module",
    "status.1k",
    "status.10k",
    "status.100k",
    "status.100k.after_change",
    "status.growth",
    "insights.1k",
    "insights.10k",
    "insights.100k",
    "insights.100k.after_change",
    "insights.growth",
    "startup.add",
    "rebuild.10k",
    "rebuild.100k",
    "budget.full_read",
    "budget.refresh",
    "pg.run",
    "pg.claims",
    "pg.commits",
    "pg.status.100k",
    "pg.insights.100k",
    "pg.status.first",
    "pg.insights.first",
    "pickup.median",
    "pickup.p95",
    "pickup.add_part",
    "pickup.runner_part",
    "pickup.plan_10k",
    "throughput.nogit",
    "throughput.nogit.per_job",
    "throughput.git",
    "throughput.git.per_job",
    "throughput.git_commit",
    "throughput.git_commit.per_job",
    "memory.8_workers",
    "memory.big_output",
    *(
        f"parse.{engine}.{what}"
        for engine in ("claude", "codex", "copilot", "devin", "devin_atif")
        for what in ("speed", "memory")
    ),
]


def _kept(proc: subprocess.CompletedProcess) -> Path:
    """The run's temporary directory, kept (``--keep``) and named on stderr."""
    return Path(next(line for line in proc.stderr.splitlines() if "] kept " in line).split("] kept ", 1)[1])


def _compiled(kept: Path) -> list[Path]:
    """aq's modules compiled into the run's own bytecode folder (as installed, not the source tree)."""
    return [p for p in (kept / "pycache").rglob("*.pyc") if "aq_core" in p.parts]


def test_quick_benchmark_prints_every_figure_and_runs_aq_from_its_own_bytecode(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--keep", "--json", str(out_json)],
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hang only: the quick run takes 1 to 4 min, longer under load
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kept = _kept(proc)
    try:
        compiled = _compiled(kept)
        # As installed: aq's modules compiled once, into the run's own folder (not the source tree).
        assert compiled and any(p.name.startswith("cli_add.") for p in compiled), compiled
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    keys_printed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    missing = [key for key in FIGURES if key not in keys_printed]
    assert not missing, f"rows missing from the table: {missing}\n{proc.stdout}"
    for header in ("FIGURE", "VALUE", "TARGET", "FLOOR", "RATIO", "GOAL (#15)"):
        assert header in proc.stdout
    report = json.loads(out_json.read_text())
    assert report["bytecode"].startswith("bytecode")
    rows = {row["key"]: row for row in report["rows"]}
    # A figure that cannot be measured here says why ("n/a: ..."), never a made-up number.
    unmeasured = [key for key in FIGURES if rows.get(key, {}).get("value") is None]
    assert [key for key in unmeasured if not rows.get(key, {}).get("note", "").startswith("n/a: ")] == []
    assert [key for key in unmeasured if not key.startswith("pg.")] == []


def test_only_runs_the_named_group_and_without_bytecode_compiles_none(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    argv = [
        sys.executable,
        str(RUN),
        "--quick",
        "--only",
        "startup",
        "--no-bytecode",
        "--keep",
        "--json",
        str(out_json),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kept = _kept(proc)
    try:
        assert _compiled(kept) == []
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    assert json.loads(out_json.read_text())["bytecode"].startswith("no bytecode")
    keys_printed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"startup.version", "startup.status"} <= keys_printed
    assert not keys_printed & {"pickup.median", "status.10k", "parse.claude.speed"}
