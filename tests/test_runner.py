"""End-to-end runs of the real CLI with stub agents: outcomes, timeouts, locks, races, stop, cancel."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import aq, aq_popen, meta, meta_pairs, pid_alive, state_of, stub, wait_until, write_job


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "queue"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def add(root: Path, jobs: Path, job_id: str, front: dict, prompt: str = "Do the task.\n") -> None:
    path = write_job(jobs, job_id, front, prompt)
    result = aq("add", str(path), root=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == job_id


def test_success_lands_in_done_with_meta(root: Path, work: Path, tmp_path: Path) -> None:
    add(
        root,
        tmp_path / "jobs",
        "ok-job",
        {"engine": "command", "cwd": str(work), "command": stub("--write", "out.txt=hi")},
    )
    run = aq("run", "--once", root=root)
    assert run.returncode == 0, run.stdout + run.stderr
    assert state_of(root, "ok-job") == "done"
    m = meta(root, "ok-job")
    assert (m["result"], m["exit"], m["attempts"]) == ("ok", "0", "1")
    assert float(m["duration_s"]) >= 0
    assert (work / "out.txt").read_text() == "hi\n"
    assert (root / "logs" / "ok-job.1.log").exists()
    assert oct((root / "meta" / "ok-job.meta").stat().st_mode & 0o777) == "0o600"
    assert oct(root.stat().st_mode & 0o777) == "0o700"


def test_agent_gets_prompt_on_stdin_and_job_env(root: Path, work: Path, tmp_path: Path) -> None:
    saved = tmp_path / "prompt-seen.txt"
    command = ["/bin/sh", "-c", f'cat > {saved}; echo "$AQ_JOB_ID $AQ_ATTEMPT" > env.txt']
    add(
        root,
        tmp_path / "jobs",
        "env-job",
        {"engine": "command", "cwd": str(work), "command": command},
        "Line one.\nTwo.\n",
    )
    assert aq("run", "--once", root=root).returncode == 0
    assert saved.read_text() == "Line one.\nTwo.\n"
    assert (work / "env.txt").read_text() == "env-job 1\n"


def test_a_prompt_larger_than_a_pipe_reaches_the_agent_whole_and_an_agent_that_never_reads_it_ends(
    root: Path, work: Path, tmp_path: Path
) -> None:
    # 300 KB: more than a pipe holds (64 KiB), so the runner writes the rest from a thread of its own.
    prompt = "".join(f"line {i} of a long prompt\n" for i in range(12000))
    saved = tmp_path / "big-prompt-seen.txt"
    jobs = tmp_path / "jobs"
    add(
        root,
        jobs,
        "reads",
        {"engine": "command", "cwd": str(work), "command": ["/bin/sh", "-c", f"cat > {saved}"]},
        prompt,
    )
    add(root, jobs, "ignores", {"engine": "command", "cwd": str(work), "command": ["true"]}, prompt)
    assert aq("run", "--once", "--workers", "2", root=root, timeout=60).returncode == 0
    assert saved.read_text() == prompt
    assert state_of(root, "reads") == state_of(root, "ignores") == "done"


def test_nonzero_exit_is_crash_in_failed(root: Path, work: Path, tmp_path: Path) -> None:
    add(root, tmp_path / "jobs", "boom", {"engine": "command", "cwd": str(work), "command": stub("--exit", "3")})
    assert aq("run", "--once", root=root).returncode == 0
    assert state_of(root, "boom") == "failed"
    m = meta(root, "boom")
    assert (m["result"], m["exit"], m["attempts"]) == ("crash", "3", "1")


def test_timeout_kills_the_whole_group_including_a_grandchild_ignoring_term(
    root: Path, work: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    front = {
        "engine": "command",
        "cwd": str(work),
        "timeout": "1s",
        "grace": "1s",
        "command": stub("--grandchild-ignores-term", str(pidfile), "--sleep", "60"),
    }
    add(root, tmp_path / "jobs", "slow", front)
    run = aq("run", "--once", root=root, timeout=60)
    assert run.returncode == 0
    assert state_of(root, "slow") == "failed"
    assert meta(root, "slow")["result"] == "timeout"
    grandchild = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(grandchild), 5, "the grandchild to be gone")


def test_verify_runs_in_cwd_after_success(root: Path, work: Path, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    add(
        root,
        jobs,
        "verified",
        {"engine": "command", "cwd": str(work), "command": stub("--write", "a.txt=x"), "verify": "test -f a.txt"},
    )
    add(
        root,
        jobs,
        "unverified",
        {"engine": "command", "cwd": str(work), "command": stub(), "verify": "test -f missing.txt"},
    )
    assert aq("run", "--once", root=root).returncode == 0
    assert state_of(root, "verified") == "done"
    assert state_of(root, "unverified") == "failed"
    assert meta(root, "unverified")["result"] == "verify_failed"
    assert "aq: verify: running" in (root / "logs" / "unverified.1.log").read_text()


def test_invalid_file_in_inbox_is_failed_and_kept_and_runner_goes_on(root: Path, work: Path, tmp_path: Path) -> None:
    add(root, tmp_path / "jobs", "good", {"engine": "command", "cwd": str(work), "command": stub()})
    bad = b"---\nengine: command\ntiemout: 5m\n---\nprompt\n"
    (root / "inbox" / "bad.md").write_bytes(bad)
    (root / "inbox" / "junk.md").write_bytes(b"\x00\x01\x02 binary junk")
    run = aq("run", "--once", root=root)
    assert run.returncode == 0, run.stderr
    assert state_of(root, "good") == "done"
    for job_id, data in (("bad", bad), ("junk", b"\x00\x01\x02 binary junk")):
        assert state_of(root, job_id) == "failed"
        assert (root / "failed" / f"{job_id}.md").read_bytes() == data, "an invalid file is preserved as it was"
        assert meta(root, job_id)["result"] == "invalid"
    assert "'tiemout'" in meta(root, "bad")["error"] and "timeout" in meta(root, "bad")["error"]


def test_prompt_canary_never_in_argv_meta_or_aq_lines(root: Path, work: Path, tmp_path: Path) -> None:
    canary = "CANARY-e3b0c44298fc1c149afbf4c8996fb924"
    marker = tmp_path / "started"
    command = ["/bin/sh", "-c", f"cat >/dev/null; touch {marker}; sleep 30"]
    add(
        root,
        tmp_path / "jobs",
        "secret",
        {"engine": "command", "cwd": str(work), "command": command},
        f"Use {canary} now.\n",
    )
    runner = aq_popen("run", root=root)
    try:
        wait_until(marker.exists, 20, "the agent to start")
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                assert canary.encode() not in cmdline, f"the prompt is in the argv of pid {pid}"
        status = aq("status", "--json", root=root)
        assert canary not in status.stdout
    finally:
        runner.send_signal(signal.SIGTERM)
        out, _ = runner.communicate(timeout=30)
    assert canary not in out
    assert canary not in (root / "meta" / "secret.meta").read_text()
    assert canary not in (root / "logs" / "secret.aq.log").read_text()


def _intervals(record: Path) -> dict[str, tuple[float, float]]:
    spans: dict[str, list[float]] = {}
    for line in record.read_text().splitlines():
        kind, job, _attempt, t, _pid = line.split()
        spans.setdefault(job, [0.0, 0.0])[0 if kind == "start" else 1] = float(t)
    return {job: (a, b) for job, (a, b) in spans.items()}


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_workers_overlap_but_a_shared_lock_never_does(root: Path, work: Path, tmp_path: Path) -> None:
    free_rec, lock_rec = tmp_path / "free.rec", tmp_path / "lock.rec"
    jobs = tmp_path / "jobs"
    for i in range(3):
        add(
            root,
            jobs,
            f"free{i}",
            {"engine": "command", "cwd": str(work), "command": stub("--record", str(free_rec), "--sleep", "1")},
        )
    for i in range(3):
        front = {
            "engine": "command",
            "cwd": str(work),
            "lock": "db",
            "command": stub("--record", str(lock_rec), "--sleep", "0.5"),
        }
        add(root, jobs, f"locked{i}", front)
    run = aq("run", "--once", "--workers", "3", root=root, timeout=120)
    assert run.returncode == 0, run.stdout
    free, locked = _intervals(free_rec), _intervals(lock_rec)
    assert len(free) == 3 and len(locked) == 3
    spans = list(free.values())
    assert any(_overlap(a, b) for i, a in enumerate(spans) for b in spans[i + 1 :]), "--workers 3 must run jobs at once"
    spans = list(locked.values())
    for i, a in enumerate(spans):
        for b in spans[i + 1 :]:
            assert not _overlap(a, b), "jobs sharing a lock overlapped"


def test_four_racing_runners_run_each_of_100_jobs_exactly_once(root: Path, work: Path, tmp_path: Path) -> None:
    record = tmp_path / "runs.rec"
    jobs = tmp_path / "jobs"
    paths = [
        write_job(
            jobs, f"race{i:03d}", {"engine": "command", "cwd": str(work), "command": stub("--record", str(record))}
        )
        for i in range(100)
    ]
    assert aq("add", *map(str, paths), root=root).returncode == 0
    runners = [aq_popen("run", "--once", "--workers", "2", root=root) for _ in range(4)]
    for r in runners:
        r.communicate(timeout=240)
        assert r.returncode == 0
    starts = [line.split()[1] for line in record.read_text().splitlines() if line.startswith("start")]
    assert sorted(starts) == sorted(f"race{i:03d}" for i in range(100)), "every job ran exactly once"
    assert len(os.listdir(root / "done")) == 100
    assert not os.listdir(root / "inbox") and not os.listdir(root / "building")
    for i in range(100):
        assert meta(root, f"race{i:03d}")["attempts"] == "1"


def test_retry_until_exhausted_then_manual_retry(root: Path, work: Path, tmp_path: Path) -> None:
    front = {
        "engine": "command",
        "cwd": str(work),
        "command": stub("--exit", "1"),
        "retry": {"max": 1, "backoff": "0s", "on": ["crash"]},
    }
    add(root, tmp_path / "jobs", "flaky", front)
    assert aq("run", "--once", root=root).returncode == 0
    m = meta(root, "flaky")
    assert state_of(root, "flaky") == "failed"
    assert (m["attempts"], m["result"], m["last_failure"]) == ("2", "retries_exhausted", "crash")
    retry = aq("retry", "flaky", root=root)
    assert retry.returncode == 0, retry.stderr
    assert state_of(root, "flaky") == "inbox"
    assert aq("run", "--once", root=root).returncode == 0
    assert meta(root, "flaky")["attempts"] == "4"


def test_class_not_in_retry_on_fails_at_once(root: Path, work: Path, tmp_path: Path) -> None:
    front = {
        "engine": "command",
        "cwd": str(work),
        "command": stub("--exit", "1"),
        "retry": {"max": 3, "on": ["timeout"]},
    }
    add(root, tmp_path / "jobs", "crashy", front)
    assert aq("run", "--once", root=root).returncode == 0
    m = meta(root, "crashy")
    assert (m["attempts"], m["result"]) == ("1", "crash")


def test_cancel_running_job_kills_its_group_and_fails_it(root: Path, work: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "gc.pid"
    add(
        root,
        tmp_path / "jobs",
        "long",
        {
            "engine": "command",
            "cwd": str(work),
            "command": stub("--grandchild-ignores-term", str(pidfile), "--sleep", "60"),
        },
    )
    runner = aq_popen("run", root=root)
    try:
        wait_until(lambda: pidfile.exists() and "agent_pid" in meta(root, "long"), 20, "the agent to start")
        agent = int(meta(root, "long")["agent_pid"])
        result = aq("cancel", "long", root=root)
        assert result.returncode == 0, result.stderr
        assert state_of(root, "long") == "failed"
        assert meta(root, "long")["result"] == "cancelled"
        assert not pid_alive(agent)
        wait_until(lambda: not pid_alive(int(pidfile.read_text())), 10, "the grandchild to be gone")
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=30)
    again = aq("cancel", "long", root=root)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "already finished" in again.stderr


def test_cancel_waiting_job(root: Path, work: Path, tmp_path: Path) -> None:
    add(root, tmp_path / "jobs", "waiting", {"engine": "command", "cwd": str(work), "command": stub()})
    assert aq("cancel", "waiting", root=root).returncode == 0
    assert state_of(root, "waiting") == "failed"
    assert meta(root, "waiting")["result"] == "cancelled"


def test_stop_puts_running_job_back_without_using_a_retry(root: Path, work: Path, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    add(
        root,
        tmp_path / "jobs",
        "halted",
        {"engine": "command", "cwd": str(work), "command": ["/bin/sh", "-c", f"touch {marker}; exec sleep 60"]},
    )
    runner = aq_popen("run", root=root)
    # The agent may touch its marker before the runner has recorded its pid: wait for both.
    wait_until(lambda: marker.exists() and "agent_pid" in meta(root, "halted"), 20, "the agent to start")
    agent = int(meta(root, "halted")["agent_pid"])
    stop = aq("stop", root=root)
    assert stop.returncode == 0, stop.stderr
    runner.communicate(timeout=30)
    assert runner.returncode == 0
    assert not pid_alive(agent)
    assert state_of(root, "halted") == "inbox"
    m = meta(root, "halted")
    assert (m["result"], m["attempts"]) == ("stopped", "1")
    assert "next_eligible" not in m


def test_sigterm_to_runner_stops_within_seconds(root: Path, work: Path, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    add(
        root,
        tmp_path / "jobs",
        "termed",
        {
            "engine": "command",
            "cwd": str(work),
            "command": ["/bin/sh", "-c", f"trap '' TERM; touch {marker}; sleep 60"],
        },
    )
    runner = aq_popen("run", root=root)
    wait_until(marker.exists, 20, "the agent to start")
    runner.send_signal(signal.SIGTERM)
    runner.communicate(timeout=15)
    assert state_of(root, "termed") == "inbox"


def test_idle_runner_picks_up_a_new_job(root: Path, work: Path, tmp_path: Path) -> None:
    runner = aq_popen("run", root=root)
    try:
        add(root, tmp_path / "jobs", "late", {"engine": "command", "cwd": str(work), "command": stub()})
        wait_until(lambda: state_of(root, "late") == "done", 20, "the job to be done")
    finally:
        runner.send_signal(signal.SIGINT)
        runner.communicate(timeout=30)
    assert runner.returncode == 0


def test_backoff_is_respected(root: Path, work: Path, tmp_path: Path) -> None:
    record = tmp_path / "rec"
    front = {
        "engine": "command",
        "cwd": str(work),
        "command": stub("--record", str(record), "--exit", "1"),
        "retry": {"max": 1, "backoff": "2s", "on": ["crash"]},
    }
    add(root, tmp_path / "jobs", "backoff", front)
    assert aq("run", "--once", root=root).returncode == 0
    starts = [float(line.split()[3]) for line in record.read_text().splitlines() if line.startswith("start")]
    assert len(starts) == 2
    assert starts[1] - starts[0] >= 2.0
    pairs = meta_pairs(root, "backoff")
    assert any(k == "next_eligible" for k, _ in pairs)


def test_status_json_shape(root: Path, work: Path, tmp_path: Path) -> None:
    add(root, tmp_path / "jobs", "shape", {"engine": "command", "cwd": str(work), "command": stub(), "lock": "L"})
    import json

    data = json.loads(aq("status", "--json", root=root).stdout)
    (job,) = data["jobs"]
    for key in ("id", "state", "engine", "attempts", "result", "lock", "next_eligible"):
        assert key in job
    assert (job["id"], job["state"], job["engine"], job["lock"]) == ("shape", "inbox", "command", "L")
    text = aq("status", root=root).stdout
    assert "shape" in text and "inbox" in text


def test_logs_shows_the_attempt_output(root: Path, work: Path, tmp_path: Path) -> None:
    add(
        root,
        tmp_path / "jobs",
        "talker",
        {"engine": "command", "cwd": str(work), "command": stub("--print", "hello from the agent")},
    )
    assert aq("run", "--once", root=root).returncode == 0
    logs = aq("logs", "talker", root=root)
    assert logs.returncode == 0 and "hello from the agent" in logs.stdout
    missing = aq("logs", "nope", root=root)
    assert missing.returncode == 2 and missing.stderr.startswith("aq: ") and missing.stderr.count("\n") == 1


def test_status_does_not_import_git(root: Path) -> None:
    code = (
        "import sys; from aq_core.cli import main; main(['--root', sys.argv[1], 'status']); print('git' in sys.modules)"
    )
    out = subprocess.run([os.sys.executable, "-c", code, str(root)], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_workers_are_reused_never_more_than_asked_and_none_is_left_behind(
    root: Path, work: Path, tmp_path: Path
) -> None:
    import io
    import threading

    from aq_core.journal import Journal
    from aq_core.runner import Runner
    from aq_core.store_fs import FsStore

    for i in range(12):
        add(root, tmp_path / "jobs", f"quick-{i}", {"engine": "command", "cwd": str(work), "command": ["true"]})
    store = FsStore(root)
    runner = Runner(store, workers=3, once=True, journal=Journal(store, out=io.StringIO()))
    assert runner.run() == 0
    assert sorted(p.stem for p in (root / "done").glob("*.md")) == sorted(f"quick-{i}" for i in range(12))
    assert 1 <= len(runner._threads) <= 3
    assert not [t for t in threading.enumerate() if t.name.startswith("aq-worker-")]


def test_a_runner_that_runs_many_jobs_keeps_no_parsed_job_it_will_not_offer_again(tmp_path: Path) -> None:
    """Each parsed job holds its prompt: a runner living through a long queue must not keep them all."""
    import gc
    import io

    from aq_core.job_model import Job
    from aq_core.journal import Journal
    from aq_core.runner import Runner
    from aq_core.store import State
    from aq_core.store_fs import FsStore

    store = FsStore(tmp_path / "q")
    work = tmp_path / "work"
    work.mkdir()
    prompt = "Do the task. " * 1500  # about 20 KB, as a detailed prompt is
    for n in range(200):
        store.add(f"j{n:03d}", f"---\nengine: command\ncwd: {work}\ncommand: 'true'\n---\n{prompt}\n".encode(), {})
    runner = Runner(store, workers=2, once=True, journal=Journal(store, out=io.StringIO()))
    assert runner.run() == 0
    assert len(store.list(State.DONE)) == 200
    gc.collect()
    alive = sum(1 for o in gc.get_objects() if isinstance(o, Job))
    # At most the cache's slack beyond the (now empty) inbox: round i's runner kept all 200.
    assert len(runner.inbox.parsed) <= 64 and alive <= 64, (len(runner.inbox.parsed), alive)
