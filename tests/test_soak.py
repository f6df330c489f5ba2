"""A short run of the randomized kill -9 soak (scripts/soak.py runs many more rounds)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "scripts" / "soak.py"


def test_short_kill_soak_loses_nothing() -> None:
    result = subprocess.run(
        [sys.executable, str(SOAK), "--rounds", "2", "--jobs", "4", "--kills", "6"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    tally = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0, result.stdout + result.stderr
    assert tally.startswith("tally:")
    assert "stranded=0 miscounted=0 lost_files=0" in tally
    assert "runner_kills=0" not in tally


def test_short_kill_soak_of_sandboxed_agents_loses_nothing() -> None:
    assert shutil.which("bwrap"), "bubblewrap (bwrap) is required for this test"
    result = subprocess.run(
        [sys.executable, str(SOAK), "--rounds", "2", "--jobs", "4", "--kills", "6", "--sandbox"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    tally = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stranded=0 miscounted=0 lost_files=0" in tally
    assert "runner_kills=0" not in tally
