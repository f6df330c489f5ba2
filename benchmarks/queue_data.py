"""Build a queue root on disk in aq's real layout, fast: finished jobs with realistic meta.

What ``aq run`` leaves behind for a finished job is a job file in ``done/`` or ``failed/`` and an
append-only ``meta/<id>.meta`` (see ``aq_core/attempt.py``): the ``added=`` lines of ``aq add``, the
runner's ``claimed=`` block, the git checkpoint's ``wip_*`` lines, then per attempt ``attempt=N`` ...
``decision=``, then the row the job reached ``done/`` or ``failed/`` with (``aq_core/row_line.py``),
computed by aq's own code (``kept=False``: none, as a job finished by an aq before it left). The files
are written with plain ``os.open``/``os.write`` (no fsync: this is test data, not a queue aq wrote),
about 100,000 jobs in a few seconds.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

STATE_DIRS = ("inbox", "building", "done", "failed", "meta", "logs", "tmp", "locks", "runners", "engines")
# (engine, model, share of jobs): roughly what a mixed queue runs.
ENGINES = (
    ("claude", "claude-sonnet-4-5-20250929", 0.5),
    ("codex", "gpt-5-codex", 0.25),
    ("copilot", "claude-sonnet-4.5", 0.15),
    ("devin", "swe-1.5", 0.10),
)
FAILED_SHARE = 0.05  # failed jobs: two attempts (a crash, a retry, then retries_exhausted)
T0 = 1_790_000_000.0

JOB_TEXT = """---
engine: {engine}
cwd: ~/code/repo{repo}
timeout: 4h
yolo: true
retry:
  max: 1
  backoff: 5m
  on: [timeout, verify_failed, crash]
---
Job {job_id}: fix the failing tests in tests/test_module_{repo}.py, keep the public API unchanged and
make `pytest -q` green. Explain what was wrong in the commit message.
"""


def _sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _attempt(
    rng: random.Random, n: int, engine: str, model: str, t: float, result: str, decision: str, repo: int, wip: str
) -> str:
    duration = round(rng.uniform(30, 3000), 3)
    tokens_in = rng.randint(20_000, 4_000_000)
    lines = [
        f"claimed={t:.3f}",
        f"pid={rng.randint(1000, 99999)}",
        f"pidstart={t - 3600:.2f}",
        "host=build-box",
        f"cwd=/home/dev/code/repo{repo}",
        "isolation=inplace",
        wip,
        f"attempt={n}",
        f"attempts={n}",
        f"engine={engine}",
        f"started={t + 0.05:.3f}",
        f"agent_pid={rng.randint(1000, 99999)}",
        f"agent_pidstart={t:.2f}",
        f"exit={0 if result == 'ok' else 1}",
        f"duration_s={duration}",
        f"model={model}",
        f"tokens_in={tokens_in}",
        f"tokens_out={rng.randint(500, 80_000)}",
        f"tokens_cached={int(tokens_in * rng.uniform(0.5, 0.95))}",
        f"cost_usd={round(rng.uniform(0.05, 12.0), 6)}",
        f"turns={rng.randint(1, 120)}",
        f"tool_calls={rng.randint(0, 300)}",
        f"session_id={_uuid(rng)}",
        f"wip_commit={_sha(rng)}",
        f"files_changed={rng.randint(0, 30)}",
        f"lines_added={rng.randint(0, 2000)}",
        f"lines_deleted={rng.randint(0, 800)}",
        f"finished={t + duration:.3f}",
        "orphans=0",
    ]
    if decision == "inbox":
        lines += [f"result={result}", "retries=1", f"next_eligible={t + duration + 300:.3f}", "decision=inbox"]
    elif decision == "failed":
        lines += ["result=retries_exhausted", f"last_failure={result}", "decision=failed"]
    else:
        lines += ["result=ok", "decision=done"]
    return "\n".join(lines) + "\n"


def job_meta(rng: random.Random, job_id: str, engine: str, model: str, failed: bool, t: float) -> str:
    """The meta file of one finished job, as ``aq add`` + ``aq run`` write it."""
    repo = rng.randint(0, 49)
    head = f"added={t:.3f}\nadd_dir=/home/dev/code/repo{repo}\nengine={engine}\n"
    # The git checkpoint's prepare stage, after the runner's claim block (a retry writes it again).
    wip = f"wip_branch=aq/wip/{job_id}\nworkdir=/home/dev/code/repo{repo}\nwip_base={_sha(rng)}\nwip_pre={_sha(rng)}"
    if not failed:
        return head + _attempt(rng, 1, engine, model, t + 1, "ok", "done", repo, wip)
    first = _attempt(rng, 1, engine, model, t + 1, "crash", "inbox", repo, wip)
    return head + first + _attempt(rng, 2, engine, model, t + 4000, "crash", "failed", repo, wip)


def make_root(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in STATE_DIRS:
        (root / name).mkdir(exist_ok=True, mode=0o700)
    return root


def kept_row(job_id: str, state: str, meta: bytes) -> bytes:
    """The line ``aq run`` appends to a finished job's ``meta`` (b"" for a row too long to keep)."""
    from aq_core.finished_row import finished_row
    from aq_core.meta import encode_lines, parse_lines
    from aq_core.records import _ENCODE_ROW, SUMMARY
    from aq_core.row_line import item

    full = finished_row(job_id, state, parse_lines(meta))
    line = item(_ENCODE_ROW(full), [full.get(key) for key in SUMMARY], len(meta))
    return encode_lines(line) if line is not None else b""


def add_finished_jobs(root: Path, start: int, stop: int, seed: int = 1, kept: bool = True) -> dict[str, int]:
    """Write finished jobs ``start`` .. ``stop - 1`` (ids ``job-000123``); return the count per state.
    ``kept``: each meta ends with its row, as ``aq run`` leaves it (else as an earlier aq did)."""
    make_root(root)
    rng = random.Random(seed * 1_000_003 + start)
    weights = [w for _, _, w in ENGINES]
    counts = {"done": 0, "failed": 0}
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    meta_dir, done_dir, failed_dir = str(root / "meta"), str(root / "done"), str(root / "failed")
    for i in range(start, stop):
        job_id = f"job-{i:06d}"
        engine, model, _ = rng.choices(ENGINES, weights)[0]
        failed = rng.random() < FAILED_SHARE
        t = T0 + i * 60.0
        meta = job_meta(rng, job_id, engine, model, failed, t).encode()
        if kept:
            meta += kept_row(job_id, "failed" if failed else "done", meta)
        text = JOB_TEXT.format(engine=engine, repo=i % 50, job_id=job_id).encode()
        state_dir = failed_dir if failed else done_dir
        counts["failed" if failed else "done"] += 1
        for path, data in ((f"{meta_dir}/{job_id}.meta", meta), (f"{state_dir}/{job_id}.md", text)):
            fd = os.open(path, flags, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
    return counts


def drop_kept_rows(root: Path) -> int:
    """Cut each meta in ``root`` back to before its kept row (as an aq before it left it): how many."""
    from aq_core.row_line import KEY

    cut = 0
    marker = f"\n{KEY}=".encode()
    with os.scandir(root / "meta") as found:
        for entry in found:
            with open(entry.path, "rb") as fh:
                data = fh.read()
            at = data.rfind(marker)
            if at >= 0:
                os.truncate(entry.path, at + 1)
                cut += 1
    return cut


FLOOR_SCRIPT = """
import os, sys
root = sys.argv[1]
n = 0
for state in ("inbox", "building", "done", "failed"):
    with os.scandir(os.path.join(root, state)) as it:
        for entry in it:
            if entry.name.endswith(".md"):
                entry.stat(follow_symlinks=False)
                with open(os.path.join(root, "meta", entry.name[:-3] + ".meta"), "rb") as fh:
                    fh.read()
                n += 1
print(n)
"""
