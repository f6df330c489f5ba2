#!/usr/bin/env python3
"""Randomized kill -9 soak: kill runners and agents at random instants, then check nothing was lost.

    python scripts/soak.py [--rounds 20] [--jobs 6] [--kills 6] [--seed N] [--sandbox]

Each round builds a queue and two git repos in a temp dir, queues jobs whose agent writes files step by
step (recording each write, after fsync, outside the repo), runs `aq run --workers 2` and kills -9 the
runner or a running agent at random instants (restarting the runner when it was the victim). Then
`aq run --once` must converge, and the round checks:

- every job is in exactly one folder, and it is done/ or failed/ (nothing stranded);
- `attempts` in meta equals the number of times the agent really started (counted exactly once: from
  the agent's own record, and from the pid each start wrote to its started line, in its job's `logs/<id>.aq.log`, as it
  became the agent);
- every file the agent recorded as written is on `aq/wip/<id>` or in the working tree.

It prints one line per round and a tally, and exits 1 if anything was lost. With ``--sandbox`` the
jobs run under bubblewrap (``sandbox: true``): each agent records in its repository's git directory
(the only place outside its tree it may write) and names itself by the pid aq knows it by (bubblewrap's,
which it wrote itself as it started; inside, its own pid is its namespace's).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AGENT = r"""
import os, sys, time
sys.stdin.read()
job, attempt = os.environ["AQ_JOB_ID"], os.environ["AQ_ATTEMPT"]
record = sys.argv[1]
steps = int(sys.argv[2])
def note(text):
    fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, (text + "\n").encode())
    os.fsync(fd)
    os.close(fd)
pid = os.getpid()
if len(sys.argv) > 3:
    marker = os.path.join(os.environ["AQ_ROOT"], "logs", f"{job}.aq.log")
    prefix = f"aq: attempt {attempt}: agent started, pid "
    pid = int([l for l in open(marker).read().splitlines() if l.startswith(prefix)][-1][len(prefix):])
note(f"start {job} {attempt} {pid}")
for i in range(steps):
    name = f"{job}-a{attempt}-s{i}.txt"
    with open(name, "w") as fh:
        fh.write(f"{job} attempt {attempt} step {i}\n")
        fh.flush()
        os.fsync(fh.fileno())
    note(f"wrote {job} {name}")
    time.sleep(0.03 + 0.05 * (hash(name) % 3))
"""


# The started line each start writes to its job's log of aq's lines as it becomes the agent.
STARTED = re.compile(r"^aq: attempt \d+: agent started, pid (\d+)$", re.MULTILINE)


def sh(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def aq_cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "aq_core", "--root", str(root), *args]


def read_meta(root: Path, job: str) -> dict[str, str]:
    last: dict[str, str] = {}
    path = root / "meta" / f"{job}.meta"
    if path.exists():
        data = path.read_bytes()
        data = data[: data.rfind(b"\n") + 1]
        for line in data.decode(errors="replace").splitlines():
            key, _, value = line.partition("=")
            last[key] = value
    return last


def one_round(base: Path, rng: random.Random, jobs: int, kills: int, sandbox: bool = False) -> dict[str, int]:
    env = dict(os.environ)
    root = base / "queue"
    record = base / "record.txt"
    agent = base / "agent.py"
    agent.write_text(AGENT)
    repos = []
    for r in range(2):
        repo = base / f"repo{r}"
        repo.mkdir()
        (repo / "README.md").write_text("soak\n")
        sh("git", "init", "-q", "-b", "main", cwd=repo)
        sh("git", "add", "-A", cwd=repo)
        sh("git", "-c", "commit.gpgsign=false", "commit", "-q", "-m", "initial", cwd=repo)
        repos.append(repo)
    job_dir = base / "jobs"
    job_dir.mkdir()
    ids = []
    for j in range(jobs):
        job_id = f"soak{j}"
        ids.append(job_id)
        steps = rng.randint(3, 8)
        front = {
            "engine": "command",
            "cwd": str(repos[j % 2]),
            "command": [sys.executable, str(agent), str(record), str(steps)],
            "retry": {"max": 20, "backoff": "0s", "on": ["crash", "timeout"]},
        }
        if sandbox:
            front["sandbox"] = True
            record_in_git = str(repos[j % 2] / ".git" / "soak-record")
            front["command"] = [sys.executable, str(agent), record_in_git, str(steps), "sandboxed"]
        (job_dir / f"{job_id}.md").write_text("---\n" + json.dumps(front) + "\n---\nWrite the files.\n")
    subprocess.run(aq_cmd(root, "add", *(str(job_dir / f"{i}.md") for i in ids)), check=True, capture_output=True)

    def start_runner() -> subprocess.Popen:
        return subprocess.Popen(
            aq_cmd(root, "run", "--workers", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )

    tally = {"runner_kills": 0, "agent_kills": 0}
    # An agent killed before it could record its own start was started all the same: the soak
    # counts it from the kill (its pid came from meta and the signal reached a live process).
    killed_agents: set[tuple[str, int]] = set()
    runner = start_runner()
    for _ in range(kills):
        time.sleep(rng.uniform(0.05, 0.5))
        building = [p.stem for p in (root / "building").glob("*.md")]
        if rng.random() < 0.5 or not building:
            runner.kill()
            runner.wait()
            tally["runner_kills"] += 1
            runner = start_runner()
        else:
            victim = rng.choice(building)
            agent_pid = read_meta(root, victim).get("agent_pid")
            if agent_pid:
                try:
                    os.kill(int(agent_pid), signal.SIGKILL)
                    tally["agent_kills"] += 1
                    killed_agents.add((victim, int(agent_pid)))
                except (ProcessLookupError, ValueError):
                    pass
    runner.kill()
    runner.wait()
    tally["runner_kills"] += 1
    subprocess.run(aq_cmd(root, "run", "--once", "--workers", "2"), check=True, capture_output=True, timeout=600)

    started: set[tuple[str, int]] = set(killed_agents)
    wrote: dict[str, list[str]] = {}
    records = [repo / ".git" / "soak-record" for repo in repos] if sandbox else [record]
    # An agent can be ended before it records its own start: in a sandbox, a runner's kill -9 ends it
    # at once (--die-with-parent); without one, recovery ends the orphan a killed runner left. The pid
    # each start wrote as it became the agent (the process that then runs it, or bubblewrap) counts it.
    for marker in (root / "logs").glob("*.aq.log"):
        job_id = marker.name.removesuffix(".aq.log")
        started.update((job_id, int(pid)) for pid in STARTED.findall(marker.read_text()))
    for line in "".join(r.read_text() for r in records if r.exists()).splitlines():
        parts = line.split()
        if parts[0] == "start":
            started.add((parts[1], int(parts[3])))
        elif parts[0] == "wrote":
            wrote.setdefault(parts[1], []).append(parts[2])
    starts: dict[str, int] = {}
    for job_id, _pid in started:
        starts[job_id] = starts.get(job_id, 0) + 1
    stranded = miscounted = lost = 0
    for job_id in ids:
        where = [s for s in ("inbox", "building", "done", "failed") if (root / s / f"{job_id}.md").exists()]
        if len(where) != 1 or where[0] not in ("done", "failed"):
            stranded += 1
            print(f"  stranded: {job_id} in {where}")
        meta = read_meta(root, job_id)
        if int(meta.get("attempts", "0")) != starts.get(job_id, 0):
            miscounted += 1
            print(f"  miscounted: {job_id} attempts={meta.get('attempts')} starts={starts.get(job_id, 0)}")
        repo = repos[int(job_id[4:]) % 2]
        branch = f"aq/wip/{job_id}"
        try:
            on_branch = set(sh("git", "ls-tree", "-r", "--name-only", branch, cwd=repo).split())
        except subprocess.CalledProcessError:
            on_branch = set()
        for name in wrote.get(job_id, []):
            if name not in on_branch and not (repo / name).exists():
                lost += 1
                print(f"  lost: {job_id} {name}")
    tally.update(
        jobs=len(ids), stranded=stranded, miscounted=miscounted, lost_files=lost, files=sum(map(len, wrote.values()))
    )
    tally["attempts"] = sum(starts.values())
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--kills", type=int, default=6, help="kills per round")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--sandbox", action="store_true", help="run the agents under bubblewrap (sandbox: true)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    os.environ.setdefault("GIT_AUTHOR_NAME", "aq soak")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "soak@aq.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "aq soak")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "soak@aq.invalid")
    total: dict[str, int] = {}
    print(f"soak: {args.rounds} rounds x {args.jobs} jobs, {args.kills} kills per round, seed {seed}")
    for n in range(1, args.rounds + 1):
        base = Path(tempfile.mkdtemp(prefix="aq-soak-"))
        try:
            tally = one_round(base, rng, args.jobs, args.kills, args.sandbox)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        for key, value in tally.items():
            total[key] = total.get(key, 0) + value
        print(
            f"round {n:3d}: kills runner={tally['runner_kills']} agent={tally['agent_kills']}  jobs={tally['jobs']} "
            f"attempts={tally['attempts']} files={tally['files']}  stranded={tally['stranded']} "
            f"miscounted={tally['miscounted']} lost={tally['lost_files']}",
            flush=True,
        )
    bad = total.get("stranded", 0) + total.get("miscounted", 0) + total.get("lost_files", 0)
    print(
        f"tally: rounds={args.rounds} runner_kills={total.get('runner_kills', 0)} agent_kills={total.get('agent_kills', 0)} "
        f"jobs={total.get('jobs', 0)} attempts={total.get('attempts', 0)} files_written={total.get('files', 0)} "
        f"stranded={total.get('stranded', 0)} miscounted={total.get('miscounted', 0)} lost_files={total.get('lost_files', 0)}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
