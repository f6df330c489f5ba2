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


def test_quick_benchmark_prints_every_figure(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(out_json)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    keys_printed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    missing = [key for key in FIGURES if key not in keys_printed]
    assert not missing, f"rows missing from the table: {missing}\n{proc.stdout}"
    for header in ("FIGURE", "VALUE", "TARGET", "FLOOR", "RATIO", "GOAL (#15)"):
        assert header in proc.stdout
    rows = {row["key"]: row for row in json.loads(out_json.read_text())["rows"]}
    # A figure that cannot be measured here says why ("n/a: ..."), never a made-up number.
    unmeasured = [key for key in FIGURES if rows.get(key, {}).get("value") is None]
    assert [key for key in unmeasured if not rows.get(key, {}).get("note", "").startswith("n/a: ")] == []
    assert [key for key in unmeasured if not key.startswith("pg.")] == []


def test_only_runs_the_named_group(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--only", "startup"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    keys_printed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"startup.version", "startup.status"} <= keys_printed
    assert not keys_printed & {"pickup.median", "status.10k", "parse.claude.speed"}


def test_aq_runs_from_its_own_bytecode_cache_unless_asked_not_to(tmp_path: Path) -> None:
    for flag, cached in (("", True), ("--no-bytecode", False)):
        out_json = tmp_path / f"bench{flag}.json"
        argv = [sys.executable, str(RUN), "--quick", "--only", "startup", "--keep", "--json", str(out_json)]
        proc = subprocess.run([*argv, *([flag] if flag else [])], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        kept = Path(next(line for line in proc.stderr.splitlines() if "] kept " in line).split("] kept ", 1)[1])
        try:
            compiled = [p for p in (kept / "pycache").rglob("*.pyc") if "aq_core" in p.parts]
            # As installed: aq's modules compiled once, into the run's own folder (not the source tree).
            assert bool(compiled) is cached, compiled
            assert any(p.name.startswith("cli_add.") for p in compiled) is cached
            assert json.loads(out_json.read_text())["bytecode"].startswith("bytecode" if cached else "no bytecode")
        finally:
            shutil.rmtree(kept, ignore_errors=True)
