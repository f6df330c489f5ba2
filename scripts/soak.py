#!/usr/bin/env python3
"""Randomized kill -9 soak: kill runners and agents at random instants, then check nothing was lost.

    python scripts/soak.py [--rounds 20] [--jobs 6] [--kills 6] [--seed N] [--sandbox]

Each round builds a queue and two git repos in a temp dir, queues jobs whose agent writes files step by
step (recording each write, after fsync, outside the repo), runs `aq run --workers 2` and kills -9 the
runner or a running agent at random instants (restarting the runner when it was the victim). Then
`aq run --once` must converge, and the round checks:

- every job is in exactly one folder, and it is done/ or failed/ (nothing stranded);
- `attempts` in meta equals the number of times the agent really started, and attempts 1..N each
  started exactly once: a start is seen as it happens, by inotify, as the creation of its attempt's log
  (`logs/<id>.<N>.log`, which the agent's process makes just before its exec); every start the agent
  recorded itself, and every agent the soak killed, must be one of those;
- every file the agent recorded as written is on `aq/wip/<id>` or in the working tree.

It prints one line per round and a tally, and exits 1 if anything was lost. With ``--sandbox`` the
jobs run under bubblewrap (``sandbox: true``): each agent records in its repository's git directory
(the only place outside its tree it may write).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import random
import re
import shutil
import signal
import struct
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
note(f"start {job} {attempt} {os.getpid()}")
for i in range(steps):
    name = f"{job}-a{attempt}-s{i}.txt"
    with open(name, "w") as fh:
        fh.write(f"{job} attempt {attempt} step {i}\n")
        fh.flush()
        os.fsync(fh.fileno())
    note(f"wrote {job} {name}")
    time.sleep(0.03 + 0.05 * (hash(name) % 3))
"""


# An attempt's log, as its agent's process creates it just before its exec.
ATTEMPT_LOG = re.compile(r"^(.+)\.(\d+)\.log$")
IN_CREATE, IN_Q_OVERFLOW = 0x100, 0x4000


class Creations:
    """The files created in a folder, in order, as inotify reports them (read with ``drain``)."""

    def __init__(self, folder: Path) -> None:
        self.libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or self.libc.inotify_add_watch(self.fd, os.fsencode(folder), IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), "inotify")
        self.names: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return self.names
            at = 0
            while at < len(data):
                _wd, mask, _cookie, size = struct.unpack_from("iIII", data, at)
                if mask & IN_Q_OVERFLOW:
                    raise RuntimeError("inotify queue overflow: the starts cannot be counted")
                self.names.append(data[at + 16 : at + 16 + size].rstrip(b"\0").decode())
                at += 16 + size

    def close(self) -> None:
        os.close(self.fd)


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
    # An agent killed before it could record its own start was started all the same: its attempt (read
    # from meta with the pid the signal reached) must be among the starts seen.
    killed_agents: set[tuple[str, int]] = set()
    creations = Creations(root / "logs")
    runner = start_runner()
    for _ in range(kills):
        time.sleep(rng.uniform(0.05, 0.5))
        creations.drain()
        building = [p.stem for p in (root / "building").glob("*.md")]
        if rng.random() < 0.5 or not building:
            runner.kill()
            runner.wait()
            tally["runner_kills"] += 1
            runner = start_runner()
        else:
            victim = rng.choice(building)
            victim_meta = read_meta(root, victim)
            agent_pid = victim_meta.get("agent_pid")
            if agent_pid:
                try:
                    os.kill(int(agent_pid), signal.SIGKILL)
                    tally["agent_kills"] += 1
                    killed_agents.add((victim, int(victim_meta["attempt"])))
                except (ProcessLookupError, ValueError):
                    pass
    runner.kill()
    runner.wait()
    tally["runner_kills"] += 1
    subprocess.run(aq_cmd(root, "run", "--once", "--workers", "2"), check=True, capture_output=True, timeout=600)
    names = creations.drain()
    creations.close()

    # Every start: its attempt's log created (the runner removes any left one first), in order.
    created: dict[str, list[int]] = {}
    for name in names:
        match = ATTEMPT_LOG.match(name)
        if match and match[1] in ids:
            created.setdefault(match[1], []).append(int(match[2]))
    recorded: set[tuple[str, int]] = set(killed_agents)
    wrote: dict[str, list[str]] = {}
    records = [repo / ".git" / "soak-record" for repo in repos] if sandbox else [record]
    for line in "".join(r.read_text() for r in records if r.exists()).splitlines():
        parts = line.split()
        if parts[0] == "start":
            recorded.add((parts[1], int(parts[2])))
        elif parts[0] == "wrote":
            wrote.setdefault(parts[1], []).append(parts[2])
    starts = {job_id: len(numbers) for job_id, numbers in created.items()}
    stranded = miscounted = lost = 0
    for job_id in ids:
        where = [s for s in ("inbox", "building", "done", "failed") if (root / s / f"{job_id}.md").exists()]
        if len(where) != 1 or where[0] not in ("done", "failed"):
            stranded += 1
            print(f"  stranded: {job_id} in {where}")
        meta = read_meta(root, job_id)
        numbers = sorted(created.get(job_id, []))
        unseen = sorted(n for job, n in recorded if job == job_id and n not in numbers)
        if numbers != list(range(1, int(meta.get("attempts", "0")) + 1)) or unseen:
            miscounted += 1
            print(f"  miscounted: {job_id} attempts={meta.get('attempts')} starts={numbers} not seen starting={unseen}")
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
