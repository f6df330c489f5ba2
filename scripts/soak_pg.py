#!/usr/bin/env python3
"""Many hosts under faults: a kill -9 soak of the PostgreSQL store, with the database restarted mid-run.

    python scripts/soak_pg.py [--rounds 10] [--hosts 3] [--jobs 8] [--kills 8] [--pg-restarts 2]
                              [--host-deaths 1] [--lease 6] [--seed N] [--keep]

It starts its own PostgreSQL server (loopback, a temp dir: ``tests/pgserver.py``). Each round makes a
database, one git repo per job, and ``--hosts`` runner hosts: each an ``aq run --workers 2`` with its
own ``AQ_HOST_ID`` and its own local directory, all on the one store, with a short lease
(``?lease=SECONDS`` in the store URL). The jobs' agent writes files step by step and notes, after
fsync and outside the repo, its start, every file and its end, with its host, pid and the time.

While they run, the soak kills -9 a random runner (restarting it at once, as a supervisor would) or a
running agent, at random instants, and restarts PostgreSQL (``pg_ctl stop -m immediate`` or ``fast``,
down for up to most of a lease, then started again); a runner that exits because the database is away
is started again. A host also dies: its runner and its agents killed -9, the host down for a lease and
a half, so that another host recovers its jobs. Then every runner is killed -9, every host runs
``aq run --once`` at the same time, and the round checks:

- every job is done or failed (nothing stranded: a job left in building is, with its lease's and its
  lock's holders printed);
- ``attempts`` in meta equals the number of times the agent really started (counted exactly once);
  a start is ``uncounted_host_death`` instead, and not a fault, only when its evidence proves the
  documented limit "a host that never comes back" (``host_death_starts``);
- no two starts of one job were alive at the same time (double run): their noted intervals do not
  overlap, and no agent saw another live agent of its job;
- every file an agent noted as written is on ``aq/wip/<id>`` or in the working tree.

It prints one line per round and a tally, and exits 1 if anything was wrong.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from pgserver import PgServer, available  # noqa: E402

AGENT = r"""
import os, sys, time
job, attempt = os.environ["AQ_JOB_ID"], os.environ["AQ_ATTEMPT"]
host = os.environ.get("AQ_HOST_ID", "?")
record, live, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
pid = os.getpid()
def note(text):
    fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, (text + "\n").encode())
    os.fsync(fd)
    os.close(fd)
def running(other):
    try:
        with open(f"/proc/{other}/stat") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
        with open(f"/proc/{other}/cmdline", "rb") as fh:
            mine = sys.argv[0].encode() in fh.read()
    except OSError:
        return False
    return mine and state not in ("Z", "X")
def others():
    for name in os.listdir(live):
        owner, _, other = name.rpartition(".")
        if owner == job and int(other) != pid and running(int(other)):
            note(f"overlap {job} {attempt} {pid} {other} {time.time():.6f}")
note(f"start {job} {attempt} {pid} {host} {time.time():.6f}")
open(os.path.join(live, f"{job}.{pid}"), "w").close()
sys.stdin.read()
for i in range(steps):
    others()
    name = f"{job}-a{attempt}-s{i}.txt"
    with open(name, "w") as fh:
        fh.write(f"{job} attempt {attempt} step {i} on {host}\n")
        fh.flush()
        os.fsync(fh.fileno())
    note(f"wrote {job} {name} {pid} {time.time():.6f}")
    time.sleep(0.05 + 0.1 * (hash(name) % 4))
others()
note(f"end {job} {attempt} {pid} {time.time():.6f}")
os.unlink(os.path.join(live, f"{job}.{pid}"))
"""

RESTART_GAP = 0.5  # a runner that exited (the database was away) is started again after this


def sh(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


class Hosts:
    """The runner hosts of one round: one ``aq run`` each, started again whenever it is gone."""

    def __init__(self, base: Path, url: str, count: int) -> None:
        self.url = url
        self.roots = [base / "hosts" / f"host{n}" for n in range(count)]
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.started = [0.0] * count
        self.since = [0.0] * count  # when each host's runner was started (wall clock, as the agents note)
        self.down_until = [0.0] * count  # a host that died stays down until then
        self.deaths: list[HostDeath] = []

    def env(self, n: int) -> dict[str, str]:
        return {**os.environ, "AQ_STORE": self.url, "AQ_HOST_ID": f"host{n}"}

    def aq(self, n: int, *args: str) -> list[str]:
        return [sys.executable, "-m", "aq_core", "--root", str(self.roots[n]), *args]

    def start(self, n: int) -> None:
        self.procs[n] = subprocess.Popen(
            self.aq(n, "run", "--workers", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env(n)
        )
        self.started[n] = time.monotonic()
        self.since[n] = time.time()

    def supervise(self) -> None:
        for n, proc in enumerate(self.procs):
            gone = proc is None or proc.poll() is not None
            if gone and time.monotonic() - self.started[n] >= RESTART_GAP and time.monotonic() >= self.down_until[n]:
                self.start(n)

    def kill(self, n: int) -> bool:
        proc = self.procs[n]
        if proc is None or proc.poll() is not None:
            return False
        proc.kill()
        proc.wait()
        return True

    def kill_all(self) -> int:
        return sum(self.kill(n) for n in range(len(self.procs)))


def wait(hosts: Hosts, seconds: float) -> None:
    """Let the round run for ``seconds``, keeping every host's runner up."""
    deadline = time.monotonic() + seconds
    while True:
        hosts.supervise()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.1, left))


def running_agents(server: PgServer, db: str, agent: Path) -> list[tuple[str, int]]:
    """(job, agent pid) of the jobs in building whose recorded agent is one of ours and still runs."""
    rows = server.sql(
        "SELECT j.id, (SELECT value FROM aq_meta m WHERE m.job_id = j.id AND m.key = 'agent_pid'"
        " ORDER BY seq DESC LIMIT 1) FROM aq_jobs j WHERE j.state = 'building'",
        dbname=db,
    )
    found = []
    for job_id, pid in rows:
        if not pid or not pid.isdigit():
            continue
        try:  # only a live process running our agent: a reused pid is never signalled
            if str(agent).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append((job_id, int(pid)))
        except OSError:
            continue
    return found


def host_agents(agent: Path, host: str) -> list[tuple[str, int, int]]:
    """(job, pid, parent pid) of every live agent of ours started by ``host``'s runners (from /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if str(agent).encode() not in (proc / "cmdline").read_bytes():
                continue
            env = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
            parent = int((proc / "stat").read_bytes().rpartition(b")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if env.get(b"AQ_HOST_ID") == host.encode():
            found.append((env.get(b"AQ_JOB_ID", b"?").decode(), int(proc.name), parent))
    return found


class HostDeath:
    """A host the soak let die: its runner then (``None``: none lived), when that runner was started
    and when it died (wall clock), and the agents it had started that died with it."""

    def __init__(
        self, host: str, runner: int | None, since: float, at: float, agents: set[tuple[str, int]] | None = None
    ) -> None:
        self.host, self.runner, self.since, self.at = host, runner, since, at
        self.agents = agents if agents is not None else set()  # (job, pid), killed with the host


def host_dies(hosts: Hosts, n: int, agent: Path, lease: float, killed: set[tuple[str, int]]) -> int:
    """Host ``n`` dies: its runner and its agents killed -9, down for a lease and a half; return agents killed."""
    count = 0
    proc = hosts.procs[n]
    alive = proc is not None and proc.poll() is None
    death = HostDeath(f"host{n}", proc.pid if alive else None, hosts.since[n], time.time())
    # Its agents' parents are read before the runner dies (its children are then reparented).
    before = host_agents(agent, death.host)
    hosts.kill(n)
    hosts.down_until[n] = time.monotonic() + 1.5 * lease
    hosts.deaths.append(death)
    for job_id, pid, parent in before + host_agents(agent, death.host):
        if parent == death.runner:
            death.agents.add((job_id, pid))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.add((job_id, pid))
        count += 1
    return count


def steps(rng: random.Random, lease: float) -> int:
    """How many files a job's agent writes (about 0.2 s each): a few, or, for one job in three, a lease's worth."""
    return rng.randint(3, 10) if rng.random() < 2 / 3 else rng.randint(int(3 * lease), int(5 * lease))


def restart_pg(server: PgServer, rng: random.Random, lease: float) -> None:
    server.stop(rng.choice(("immediate", "fast")))
    time.sleep(rng.uniform(0.0, 0.8 * lease))
    server.start()


def one_round(server: PgServer, base: Path, rng: random.Random, args: argparse.Namespace) -> dict[str, int]:
    db = server.create_database()
    url = server.url(db, lease=args.lease)
    record = base / "record.txt"
    live = base / "live"
    live.mkdir()
    agent = base / "agent.py"
    agent.write_text(AGENT)
    hosts = Hosts(base, url, args.hosts)
    subprocess.run(hosts.aq(0, "store", "init"), env=hosts.env(0), check=True, capture_output=True)
    job_dir = base / "jobs"
    job_dir.mkdir()
    ids, repos = [], {}
    for j in range(args.jobs):
        job_id = f"soak{j}"
        repo = repos[job_id] = base / "repos" / job_id
        repo.mkdir(parents=True)
        (repo / "README.md").write_text("soak\n")
        sh("git", "init", "-q", "-b", "main", cwd=repo)
        sh("git", "add", "-A", cwd=repo)
        sh("git", "-c", "commit.gpgsign=false", "commit", "-q", "-m", "initial", cwd=repo)
        front = {
            "engine": "command",
            "cwd": str(repo),
            # Some agents run for more than half a lease: a PostgreSQL restart then makes their runner
            # give the job up (a lost lease) before it can renew.
            "command": [sys.executable, str(agent), str(record), str(live), str(steps(rng, args.lease))],
            "grace": "1s",
            "retry": {"max": 30, "backoff": "0s", "on": ["crash", "timeout"]},
        }
        (job_dir / f"{job_id}.md").write_text("---\n" + json.dumps(front) + "\n---\nWrite the files.\n")
        ids.append(job_id)
    subprocess.run(
        hosts.aq(0, "add", *(str(job_dir / f"{i}.md") for i in ids)), env=hosts.env(0), check=True, capture_output=True
    )

    tally = {"runner_kills": 0, "agent_kills": 0, "pg_restarts": 0, "host_deaths": 0}
    killed_agents: set[tuple[str, int]] = set()  # killed before it could note its start, it still started
    events = ["kill"] * args.kills + ["pg"] * args.pg_restarts + ["host"] * args.host_deaths
    rng.shuffle(events)
    try:
        run_events(server, db, hosts, events, agent, rng, args, tally, killed_agents)
    finally:
        tally["runner_kills"] += hosts.kill_all()

    # Convergence: every host drains at once (each recovers its own dead runners' jobs by pid).
    finals = [
        subprocess.Popen(hosts.aq(n, "run", "--once", "--workers", "2"), env=hosts.env(n), stdout=subprocess.DEVNULL)
        for n in range(args.hosts)
    ]
    try:
        for proc in finals:
            proc.wait(timeout=900)
    finally:
        for proc in finals:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    tally.update(check(server, db, ids, repos, record, killed_agents, hosts))
    tally.update(faults_seen(hosts))
    if args.keep and any(
        tally[k] for k in ("stranded", "miscounted", "double_run", "lost_files", "uncounted_host_death")
    ):
        for job_id in ids:  # the evidence, next to the hosts' logs and the agents' record
            rows = server.sql("SELECT key, value FROM aq_meta WHERE job_id = %s ORDER BY seq", (job_id,), dbname=db)
            (base / f"{job_id}.meta").write_text("".join(f"{k}={v}\n" for k, v in rows))
        deaths = [
            {"host": d.host, "runner": d.runner, "since": d.since, "at": d.at, "agents": sorted(d.agents)}
            for d in hosts.deaths
        ]
        (base / "host-deaths.json").write_text(json.dumps(deaths, indent=1) + "\n")
        print(f"  kept {base}")
        tally["kept"] = 1
    return tally


def run_events(
    server: PgServer,
    db: str,
    hosts: Hosts,
    events: list[str],
    agent: Path,
    rng: random.Random,
    args: argparse.Namespace,
    tally: dict[str, int],
    killed_agents: set[tuple[str, int]],
) -> None:
    """Run the hosts through ``events``: kill -9 of a runner or an agent, or a PostgreSQL restart."""
    for n in range(args.hosts):
        hosts.start(n)
    for event in events:
        wait(hosts, rng.uniform(0.1, 0.8))
        if event == "pg":
            restart_pg(server, rng, args.lease)
            tally["pg_restarts"] += 1
            continue
        if event == "host":
            tally["agent_kills"] += host_dies(hosts, rng.randrange(args.hosts), agent, args.lease, killed_agents)
            tally["runner_kills"] += 1
            tally["host_deaths"] += 1
            continue
        try:
            agents = running_agents(server, db, agent)
        except Exception:  # the database is still coming back: kill a runner instead
            agents = []
        if agents and rng.random() < 0.5:
            job_id, pid = rng.choice(agents)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            tally["agent_kills"] += 1
            killed_agents.add((job_id, pid))
        else:
            n = rng.randrange(args.hosts)
            if hosts.kill(n):
                tally["runner_kills"] += 1
            hosts.start(n)
    wait(hosts, rng.uniform(0.1, 1.0))


def faults_seen(hosts: Hosts) -> dict[str, int]:
    """How often the hosts' logs say a lease was lost (the database away), an orphan was recovered,
    and a runner waited for an orphan's lock held by another host's process."""
    lost = recovered = waits = 0
    for root in hosts.roots:
        for log in (root / "logs").glob("*.aq.log"):
            text = log.read_text(errors="replace")
            lost += text.count(": lease lost")
            recovered += text.count(": recovered")
            waits += text.count(": waiting for it")
    return {"leases_lost": lost, "recoveries": recovered, "lock_waits": waits}


def read_notes(
    lines: list[str], killed: set[tuple[str, int]]
) -> tuple[dict[str, int], dict[str, list[str]], dict[str, str]]:
    """From the agents' notes: (starts per job, files written per job, the jobs run twice at once and why).

    Each agent's interval runs from its start to the last thing it noted (a lower bound of its life);
    two intervals of one job that overlap, or an agent that saw another live agent of its job, is a
    double run. An agent killed before it could note its start (``killed``) still started.
    """
    times: dict[tuple[str, int], list[float]] = {(job, pid): [] for job, pid in killed}
    wrote: dict[str, list[str]] = {}
    double: dict[str, str] = {}
    for line in lines:
        parts = line.split()
        kind, job_id = parts[0], parts[1]
        if kind == "start":
            times.setdefault((job_id, int(parts[3])), []).append(float(parts[5]))
        elif kind == "wrote":
            wrote.setdefault(job_id, []).append(parts[2])
            times.setdefault((job_id, int(parts[3])), []).append(float(parts[4]))
        elif kind == "end":
            times.setdefault((job_id, int(parts[3])), []).append(float(parts[4]))
        elif kind == "overlap":
            double[job_id] = f"attempt {parts[2]} (pid {parts[3]}) saw pid {parts[4]} of the same job alive"
    spans: dict[str, list[tuple[float, float, int]]] = {}
    for (job_id, pid), noted in times.items():
        if noted:
            spans.setdefault(job_id, []).append((min(noted), max(noted), pid))
    for job_id, items in spans.items():
        items.sort()
        last_end, last_pid = float("-inf"), 0
        for begin, end, pid in items:
            if begin < last_end and job_id not in double:
                double[job_id] = (
                    f"pid {pid} started at {begin:.3f}, before pid {last_pid} was last seen ({last_end:.3f})"
                )
            if end > last_end:
                last_end, last_pid = end, pid
    counts: dict[str, int] = {}
    for job_id, _pid in times:
        counts[job_id] = counts.get(job_id, 0) + 1
    return counts, wrote, double


_UNSTARTED = re.compile(
    r"^aq: \S+ \S+ (\S+): recovered: runner \(pid (\d+)\) died before starting the engine", re.MULTILINE
)


def host_death_starts(
    job_id: str,
    logs: dict[str, str],
    recorded: set[int],
    deaths: list[HostDeath],
    started_at: dict[int, tuple[str, float]],
) -> set[int]:
    """The pids of ``job_id``'s starts that the documented limit "a host that never comes back" explains.

    ``logs``: each host's log of the job's aq lines; ``recorded``: the agent pids the job's attempt
    records in the database name; ``started_at``: the host each agent noted as its own, and when it
    noted its start. A start is proven only if: it was on a host the soak let die, started by the
    runner that died with the host (the agent died with it, or noted that host and its start between
    that runner's own start and the death: a host runs one runner at a time); no attempt record names
    it (none reached the database); and another host recovered the job saying that runner died before
    starting the engine (no attempt counted).
    """
    proven = set()
    for death in deaths:
        if death.runner is None:
            continue
        said = (
            int(runner) == death.runner
            for host, text in logs.items()
            if host != death.host
            for job, runner in _UNSTARTED.findall(text)
            if job == job_id
        )
        if not any(said):
            continue
        with_it = {pid for job, pid in death.agents if job == job_id}
        there = {pid for pid, (host, at) in started_at.items() if host == death.host and death.since <= at <= death.at}
        proven.update(pid for pid in with_it | there if pid not in recorded)
    return proven


def holders(server: PgServer, db: str, job_id: str) -> str:
    """A job left in building: who its lease and its lock name, and whether each is still live."""
    lease = server.sql(
        "SELECT lease_host, lease_pid, lease_expires > clock_timestamp() FROM aq_jobs WHERE id = %s AND state = 'building'",
        (job_id,),
        dbname=db,
    )
    lock = server.sql(
        "SELECT host, pid, expires_at > clock_timestamp() FROM aq_locks WHERE name = %s", ("job:" + job_id,), dbname=db
    )
    if not lease:
        return ""
    said = " (lease: {} pid {}, {})".format(*lease[0][:2], "live" if lease[0][2] else "run out")
    if lock:
        said += "; its lock: {} pid {}, {}".format(*lock[0][:2], "live" if lock[0][2] else "run out")
    return said


def check(
    server: PgServer,
    db: str,
    ids: list[str],
    repos: dict[str, Path],
    record: Path,
    killed: set[tuple[str, int]],
    hosts: Hosts,
) -> dict[str, int]:
    lines = record.read_text().splitlines() if record.exists() else []
    counts, wrote, double = read_notes(lines, killed)
    started_at = {}  # (job, pid) -> the host the agent noted as its own, and when it noted its start
    for line in lines:
        if line.startswith("start "):
            parts = line.split()
            started_at[(parts[1], int(parts[3]))] = (parts[4], float(parts[5]))
    for job_id, why in sorted(double.items()):
        print(f"  double run: {job_id}: {why}")
    states = dict(server.sql("SELECT id, state FROM aq_jobs", dbname=db))
    attempts = dict(
        server.sql(
            "SELECT DISTINCT ON (job_id) job_id, value FROM aq_meta WHERE key = 'attempts' ORDER BY job_id, seq DESC",
            dbname=db,
        )
    )
    recorded: dict[str, set[int]] = {}
    for job_id, pid in server.sql("SELECT job_id, value FROM aq_meta WHERE key = 'agent_pid'", dbname=db):
        if pid and pid.isdigit():
            recorded.setdefault(job_id, set()).add(int(pid))
    stranded = miscounted = uncounted = lost = 0
    for job_id in ids:
        if states.get(job_id) not in ("done", "failed"):
            stranded += 1
            print(f"  stranded: {job_id} in {states.get(job_id)}{holders(server, db, job_id)}")
        counted, started = int(attempts.get(job_id, "0")), counts.get(job_id, 0)
        if counted != started:
            logs = {}
            for n, root in enumerate(hosts.roots):
                path = root / "logs" / f"{job_id}.aq.log"
                logs[f"host{n}"] = path.read_text(errors="replace") if path.exists() else ""
            began = {pid: at for (job, pid), at in started_at.items() if job == job_id}
            proven = host_death_starts(job_id, logs, recorded.get(job_id, set()), hosts.deaths, began)
            if counted < started and len(proven) == started - counted:
                uncounted += started - counted
                print(f"  uncounted_host_death: {job_id} attempts={counted} starts={started} pids={sorted(proven)}")
            else:
                miscounted += 1
                print(f"  miscounted: {job_id} attempts={attempts.get(job_id)} starts={started}")
        repo = repos[job_id]
        try:
            on_branch = set(sh("git", "ls-tree", "-r", "--name-only", f"aq/wip/{job_id}", cwd=repo).split())
        except subprocess.CalledProcessError:
            on_branch = set()
        for name in wrote.get(job_id, []):
            if name not in on_branch and not (repo / name).exists():
                lost += 1
                print(f"  lost: {job_id} {name}")
    return {
        "jobs": len(ids),
        "attempts": sum(counts.values()),
        "files": sum(map(len, wrote.values())),
        "stranded": stranded,
        "miscounted": miscounted,
        "uncounted_host_death": uncounted,
        "double_run": len(double),
        "lost_files": lost,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--hosts", type=int, default=3, help="runner hosts (distinct AQ_HOST_ID)")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--kills", type=int, default=8, help="kill -9s per round (a runner or an agent)")
    parser.add_argument("--pg-restarts", type=int, default=2, help="PostgreSQL restarts per round")
    parser.add_argument("--host-deaths", type=int, default=1, help="hosts dying (runner and agents) per round")
    parser.add_argument("--lease", type=float, default=6.0, help="the store's lease in seconds (default 6)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep a round's files when it finds a problem")
    args = parser.parse_args(argv)
    if not available():
        print("soak_pg: PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed", file=sys.stderr)
        return 2
    # A SIGTERM unwinds like an error: the runners are killed and the server removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    for key, value in (("NAME", "aq soak"), ("EMAIL", "soak@aq.invalid")):
        os.environ.setdefault(f"GIT_AUTHOR_{key}", value)
        os.environ.setdefault(f"GIT_COMMITTER_{key}", value)
    print(
        f"soak_pg: {args.rounds} rounds x {args.jobs} jobs on {args.hosts} hosts, {args.kills} kills and"
        f" {args.pg_restarts} PostgreSQL restarts per round, lease {args.lease:g}s, seed {seed}",
        flush=True,
    )
    server = PgServer(crash_safe=True).start()
    total: dict[str, int] = {}
    try:
        for n in range(1, args.rounds + 1):
            base = Path(tempfile.mkdtemp(prefix="aq-soak-pg-"))
            tally: dict[str, int] = {}
            try:
                tally = one_round(server, base, rng, args)
            finally:
                if not tally.get("kept"):
                    shutil.rmtree(base, ignore_errors=True)
            for key, value in tally.items():
                total[key] = total.get(key, 0) + value
            print(
                f"round {n:3d}: kills runner={tally['runner_kills']} agent={tally['agent_kills']}"
                f" pg={tally['pg_restarts']} host={tally['host_deaths']}"
                f"  leases_lost={tally['leases_lost']} recoveries={tally['recoveries']}"
                f" lock_waits={tally['lock_waits']}"
                f"  jobs={tally['jobs']} attempts={tally['attempts']} files={tally['files']}"
                f"  stranded={tally['stranded']} miscounted={tally['miscounted']} double_run={tally['double_run']}"
                f" lost={tally['lost_files']} uncounted_host_death={tally['uncounted_host_death']}",
                flush=True,
            )
    finally:
        server.destroy()
    names = (
        "runner_kills",
        "agent_kills",
        "pg_restarts",
        "host_deaths",
        "leases_lost",
        "recoveries",
        "lock_waits",
        "jobs",
        "attempts",
    )
    bad = ("stranded", "miscounted", "double_run", "lost_files")
    print(
        f"tally: rounds={args.rounds} hosts={args.hosts} "
        + " ".join(f"{k}={total.get(k, 0)}" for k in names)
        + f" files_written={total.get('files', 0)} "
        + " ".join(f"{k}={total.get(k, 0)}" for k in bad)
        + f" uncounted_host_death={total.get('uncounted_host_death', 0)}"
    )
    return 1 if any(total.get(k, 0) for k in bad) else 0


if __name__ == "__main__":
    raise SystemExit(main())
