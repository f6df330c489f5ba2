#!/usr/bin/env python3
"""Claim throughput: the filesystem store next to PostgreSQL, measured in one run.

    python benchmarks/claims.py [--jobs 400] [--claims 2000] [--procs 4] [--fast]

Two figures per store, each with ``--procs`` processes:

- run: jobs/s claimed and finished by ``aq run --once`` runners (the ``command`` engine running
  ``true``), from the first claim to the last finish (as recorded in meta), so process start-up
  is not counted;
- claims: raw ``store.claim`` calls per second, every process walking the same ``--claims`` ids
  (from its own offset), exactly one winning each;
- for PostgreSQL, beside them: the server's transactions and WAL flushes per job of the run
  (``pg_stat_database``, ``pg_stat_wal``: how many round trips and durable commits a job costs), and
  the claims' floor: durable commits per second of ``--procs`` processes that each insert one row
  per commit, nothing else;
- and the floors of the claims' race itself: the same race (same ids, processes and offsets) with
  a bare one-row ``UPDATE ... WHERE id = $1 AND state = 'inbox'`` instead of ``store.claim`` (one
  round trip a call, a durable commit a win; no lease, no plan, no token), and with a one-row
  ``SELECT`` (the round trip alone, no write), each a prepared statement run through libpq, the
  least Python can do a call.

It starts its own PostgreSQL (``tests/pgserver.py``: loopback, a temp dir, as the ``postgres``
user when run as root). The server is durable (fsync on, as the filesystem store fsyncs every
transition) unless ``--fast`` turns fsync and synchronous commit off.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from pgserver import PgServer, available  # noqa: E402

from aq_core.store import State, Store  # noqa: E402
from aq_core.store_fs import FsStore  # noqa: E402


def job_text(work: Path) -> str:
    return f'---\nengine: command\ncwd: {work}\ncommand: "true"\n---\nNothing to do.\n'


def aq(*args: str, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aq_core", "--root", str(root), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )


def open_store(url: str | None, local: Path) -> Store:
    if url:
        from aq_core.store_pg import PgStore

        return PgStore(url, local=local)
    return FsStore(local)


def run_throughput(base: Path, url: str | None, jobs: int, procs: int) -> float:
    """Jobs/s of ``procs`` runner processes draining ``jobs`` trivial jobs."""
    work = base / "work"
    work.mkdir()
    files = base / "jobs"
    files.mkdir()
    paths = []
    for i in range(jobs):
        path = files / f"r{i:05d}.md"
        path.write_text(job_text(work))
        paths.append(str(path))
    env = {"AQ_STORE": url} if url else {}
    shared = base / "queue"  # the filesystem queue; for PostgreSQL only the adder's local dir
    aq("add", *paths, root=shared, env=env)
    runners = [
        subprocess.Popen(
            [sys.executable, "-m", "aq_core", "--root", str(base / f"host{n}" if url else shared), "run", "--once"],
            env={**os.environ, **env, "AQ_HOST_ID": f"bench-{n}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(procs)
    ]
    for proc in runners:
        proc.wait()
    store = open_store(url, shared)
    first_claim, last_finish = float("inf"), 0.0
    done = 0
    for entry in store.list():
        meta = store.read_meta(entry.id)
        first_claim = min(first_claim, meta.number("claimed") or first_claim)
        last_finish = max(last_finish, meta.number("finished") or 0.0)
        done += entry.state is State.DONE
    if done != jobs:
        raise SystemExit(f"only {done} of {jobs} jobs finished")
    if url:
        store.close()  # type: ignore[attr-defined]
    return jobs / (last_finish - first_claim)


def server_counts(url: str) -> tuple[int, int]:
    """(transactions committed in the URL's database, WAL flushes of the whole server) so far."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        xacts = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        syncs = conn.execute("SELECT wal_sync FROM pg_stat_wal")
        return int(xacts.fetchone()[0]), int(syncs.fetchone()[0])


def run_counted(base: Path, url: str, jobs: int, procs: int) -> tuple[float, float, float]:
    """``run_throughput`` on PostgreSQL, with the server's transactions and WAL flushes per job."""
    xacts, syncs = server_counts(url)
    rate = run_throughput(base, url, jobs, procs)
    time.sleep(1.0)  # backends report their counts within a second of their last transaction
    xacts2, syncs2 = server_counts(url)
    return rate, (xacts2 - xacts) / jobs, (syncs2 - syncs) / jobs


def _committer(url: str, count: int, start: multiprocessing.Event, out: multiprocessing.Queue) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        start.wait()
        for n in range(count):
            conn.execute("INSERT INTO aq_bench_commits (n) VALUES (%s)", (n,), prepare=True)
        out.put(time.monotonic())


def _together(workers: list, start: multiprocessing.Event, out: multiprocessing.Queue) -> tuple[float, list]:
    """Start ``workers``, let them import and connect, then start them at once: (when, their results)."""
    for proc in workers:
        proc.start()
    time.sleep(2.0)
    began = time.monotonic()
    start.set()
    results = [out.get(timeout=600) for _ in workers]
    for proc in workers:
        proc.join()
    return began, results


def commit_floor(url: str, count: int, procs: int) -> float:
    """Durable commits per second of ``procs`` processes inserting one row per commit: a claim's floor."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS aq_bench_commits (n integer)")
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_committer, args=(url, count // procs, start, out)) for _ in range(procs)]
    began, ends = _together(workers, start, out)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE aq_bench_commits")
    return (count // procs) * procs / (max(ends) - began)


def _claimer(url: str | None, local: str, ids: list[str], start: multiprocessing.Event, out: multiprocessing.Queue):
    store = open_store(url, Path(local))
    start.wait()
    won = sum(1 for job_id in ids if store.claim(job_id))
    out.put((won, time.monotonic()))


_FLOOR_STATEMENTS = {
    "update": b"UPDATE aq_bench_race SET state = 'building' WHERE id = $1 AND state = 'inbox' RETURNING id",
    "select": b"SELECT id FROM aq_bench_race WHERE id = $1 AND state = 'inbox'",
}


def _floor_racer(url: str, kind: str, ids: list[str], start: multiprocessing.Event, out: multiprocessing.Queue):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        pgconn = conn.pgconn
        pgconn.prepare(b"race", _FLOOR_STATEMENTS[kind])
        keys = [job_id.encode() for job_id in ids]
        start.wait()
        won = sum(pgconn.exec_prepared(b"race", [key]).ntuples for key in keys)
        out.put((won, time.monotonic()))


def race_floor(url: str, count: int, procs: int, kind: str) -> float:
    """``claim_throughput``'s race with a bare prepared ``kind`` ("update" or "select") per call."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE aq_bench_race (id text PRIMARY KEY, state text NOT NULL)")
        conn.execute(
            "INSERT INTO aq_bench_race SELECT 'c' || lpad(n::text, 5, '0'), 'inbox' FROM generate_series(0, %s) n",
            (count - 1,),
        )
    ids = [f"c{i:05d}" for i in range(count)]
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(
            target=_floor_racer, args=(url, kind, ids[n * count // procs :] + ids[: n * count // procs], start, out)
        )
        for n in range(procs)
    ]
    began, results = _together(workers, start, out)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE aq_bench_race")
    if kind == "update" and sum(r[0] for r in results) != count:
        raise SystemExit("the bare race did not update each row once")
    return count / (max(r[1] for r in results) - began)


def claim_throughput(base: Path, url: str | None, count: int, procs: int) -> float:
    """Successful ``store.claim`` calls per second from ``procs`` processes racing for ``count`` jobs."""
    local = base / "claims"
    store = open_store(url, local)
    ids = [f"c{i:05d}" for i in range(count)]
    for job_id in ids:
        store.add(job_id, b"x", {})
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    workers = []
    for n in range(procs):
        offset = n * count // procs
        order = ids[offset:] + ids[:offset]
        workers.append(
            ctx.Process(target=_claimer, args=(url, str(local if not url else base / f"c{n}"), order, start, out))
        )
    for proc in workers:
        proc.start()
    time.sleep(2.0)  # let every process import and connect
    began = time.monotonic()
    start.set()
    results = [out.get(timeout=600) for _ in workers]
    for proc in workers:
        proc.join()
    won = sum(r[0] for r in results)
    if won != count:
        raise SystemExit(f"{won} claims won for {count} jobs: not exactly one each")
    if url:
        store.close()  # type: ignore[attr-defined]
    return count / (max(r[1] for r in results) - began)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=400, help="jobs run through aq run (default 400)")
    p.add_argument("--claims", type=int, default=2000, help="jobs raced for with store.claim (default 2000)")
    p.add_argument("--procs", type=int, default=4, help="runner / claimer processes (default 4)")
    p.add_argument("--fast", action="store_true", help="PostgreSQL without fsync and synchronous commit")
    args = p.parse_args()
    if not available():
        raise SystemExit("PostgreSQL server binaries (initdb, pg_ctl, postgres) are not on PATH")
    server = PgServer(durable=not args.fast).start()
    base = Path(tempfile.mkdtemp(prefix="aq-bench-"))
    rows = []
    extra = ""
    try:
        for name in ("filesystem", "postgresql"):
            url = None
            if name == "postgresql":
                from aq_core.store_pg import init_schema

                url = server.url(server.create_database())
                init_schema(url)
            (base / name).mkdir()
            (base / name / "run").mkdir()
            (base / name / "claim").mkdir()
            if url:
                jobs_s, xacts, syncs = run_counted(base / name / "run", url, args.jobs, args.procs)
                floor = commit_floor(url, args.claims, args.procs)
                bare = race_floor(url, args.claims, args.procs, "update")
                trips = race_floor(url, args.claims, args.procs, "select")
                extra = (
                    f"postgresql, a job of the run: {xacts:.1f} transactions, {syncs:.1f} WAL flushes;"
                    f" durable commits/s of {args.procs} processes, one row each (the claims' floor): {floor:.0f}\n"
                    f"the claims' race ({args.claims} ids, {args.procs} processes), ids/s with a bare one-row UPDATE"
                    f" a call: {bare:.0f}; with a one-row SELECT (round trips, no write): {trips:.0f}"
                )
            else:
                jobs_s = run_throughput(base / name / "run", url, args.jobs, args.procs)
            claims_s = claim_throughput(base / name / "claim", url, args.claims, args.procs)
            rows.append((name, jobs_s, claims_s))
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)
    cores = os.cpu_count()
    mode = "fsync off" if args.fast else "durable"
    print(f"claim throughput, {args.procs} processes, {cores} cores (PostgreSQL 15 on loopback, {mode})")
    print(f"{'store':<12} {'run: jobs/s':>12} {'claims/s':>10}")
    print(f"{'':<12} {f'({args.jobs} jobs)':>12} {f'({args.claims})':>10}")
    for name, jobs_s, claims_s in rows:
        print(f"{name:<12} {jobs_s:>12.1f} {claims_s:>10.0f}")
    print(extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
