"""``sandbox: true`` with real bubblewrap: what the agent may write, and that it never outlives its attempt."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import psutil
import pytest
from fakes import claude_ok
from helpers import aq, aq_popen, git, git_repo, meta, state_of, wait_until, write_job
from requires import require

from aq_core import sandbox


@pytest.fixture(autouse=True)
def _bubblewrap(request: pytest.FixtureRequest) -> None:
    # scripts/test installs bubblewrap; where it cannot, these are skipped with the reason (a failure under CI=true).
    # The tests of a missing or broken bubblewrap need none.
    if "unavailable" not in request.node.name:
        require("bwrap")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "queue"


def add(root: Path, tmp_path: Path, job_id: str, front: dict) -> None:
    result = aq("add", str(write_job(tmp_path / "jobs", job_id, front)), root=root)
    assert result.returncode == 0, result.stderr


def job_processes(root: Path, job_id: str) -> list[int]:
    """Live processes (zombies are dead) started for ``job_id`` of this queue, found by their environment."""
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            env = proc.environ()
        except psutil.Error:
            continue
        if env.get("AQ_JOB_ID") == job_id and os.path.realpath(env.get("AQ_ROOT", "")) == os.path.realpath(root):
            found.append(proc.pid)
    return found


def report(lines: dict[str, str]) -> str:
    """A shell agent that tries each write and prints ``name=written`` or ``name=refused``."""
    return "; ".join(
        f"if ({command}) 2>/dev/null; then echo {name}=written; else echo {name}=refused; fi"
        for name, command in lines.items()
    )


def test_the_agent_writes_only_its_tree_and_its_private_tmp(root: Path, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    outside = tmp_path / "outside.txt"
    escaped = tmp_path / "escaped"
    home = Path(os.environ["HOME"])
    agent = report(
        {
            "outside": f"echo x > {outside}",
            "home": 'echo x > "$HOME/home.txt"',
            "hosttmp": f"echo x > /tmp/aq-sandbox-test-{os.getpid()}",
            "inside": "echo made inside > inside.txt",
            # Commands git would run later, outside the sandbox (aq's checkpoint runs git status).
            "hook": f"printf '#!/bin/sh\\ntouch {escaped}\\n' > .git/hooks/post-commit",
            "gitconfig": f"git config core.fsmonitor 'touch {escaped}'",
            "tmp": 'echo x > "$TMPDIR/scratch" && cat "$TMPDIR/scratch"',
        }
    )
    agent += '; echo "tmpdir=$TMPDIR mode=$(stat -c %a "$TMPDIR")"'
    add(root, tmp_path, "boxed", {"engine": "command", "cwd": str(repo), "sandbox": True, "command": agent})
    run = aq("run", "--once", root=root)
    assert run.returncode == 0, run.stderr
    m = meta(root, "boxed")
    assert (state_of(root, "boxed"), m["result"]) == ("done", "ok")
    log = (root / "logs" / "boxed.1.log").read_text()
    refused, written = ("outside", "home", "hosttmp", "hook", "gitconfig"), ("inside", "tmp")
    for line in [f"{n}=refused" for n in refused] + [f"{n}=written" for n in written]:
        assert line in log.splitlines(), log
    assert not outside.exists() and not (home / "home.txt").exists()
    assert not (repo / ".git" / "hooks" / "post-commit").exists() and "fsmonitor" not in git(repo, "config", "--list")
    assert not escaped.exists()
    assert not Path(f"/tmp/aq-sandbox-test-{os.getpid()}").exists()
    # The work is checkpointed on the job's branch; main is untouched.
    assert git(repo, "show", "aq/wip/boxed:inside.txt") == "made inside"
    assert git(repo, "log", "-1", "--format=%s", "main") == "initial"
    # Its temporary directory was its own (0700, in the queue, named for the attempt) and is gone.
    tmpdir = next(line for line in log.splitlines() if line.startswith("tmpdir=")).split()
    path = Path(tmpdir[0].removeprefix("tmpdir="))
    assert tmpdir[1] == "mode=700"
    assert path.name == "boxed.1.sandbox-tmp" and path.parent == (root / "tmp").resolve()
    assert not path.exists()


def test_a_worktree_job_runs_sandboxed_and_git_works_inside(root: Path, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    agent = "echo from the sandbox > work.txt && git add work.txt && git commit -q -m 'agent commit' && echo committed"
    front = {"engine": "command", "cwd": str(repo), "sandbox": True, "isolation": "worktree", "command": agent}
    add(root, tmp_path, "tree", front)
    assert aq("run", "--once", root=root).returncode == 0
    m = meta(root, "tree")
    assert (state_of(root, "tree"), m["result"]) == ("done", "ok"), (root / "logs" / "tree.1.log").read_text()
    assert "committed" in (root / "logs" / "tree.1.log").read_text()
    assert git(repo, "log", "-1", "--format=%s", "aq/wip/tree") == "agent commit"
    assert git(repo, "show", "aq/wip/tree:work.txt") == "from the sandbox"
    assert not (repo / "work.txt").exists() and git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"


def test_the_engines_declared_state_is_writable_and_nothing_else_in_home(root: Path, tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    (home / ".claude").mkdir()
    (home / ".claude.json").write_text("{}\n")
    lines = tmp_path / "claude.jsonl"
    lines.write_text("\n".join(line.replace("{session}", "s-1") for line in claude_ok()) + "\n")
    fake = tmp_path / "bin" / "claude"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        + report(
            {
                "state": 'echo s > "$HOME/.claude/session.txt"',
                "config": 'echo \'{"x": 1}\' > "$HOME/.claude.json"',
                "home": 'echo x > "$HOME/.bashrc"',
            }
        )
        + f" >&2\ncat {lines}\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    work = tmp_path / "work"
    work.mkdir()
    add(root, tmp_path, "engine-state", {"engine": "claude", "cwd": str(work), "sandbox": True})
    assert aq("run", "--once", root=root, env={"AQ_CLAUDE_BIN": str(fake)}).returncode == 0
    log = (root / "logs" / "engine-state.1.log").read_text()
    assert meta(root, "engine-state")["result"] == "ok", log
    for line in ("state=written", "config=written", "home=refused"):
        assert line in log.splitlines(), log
    assert (home / ".claude" / "session.txt").read_text() == "s\n"
    assert (home / ".claude.json").read_text() == '{"x": 1}\n'
    assert not (home / ".bashrc").exists()


def test_without_bubblewrap_the_job_fails_and_never_runs(root: Path, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    agent = f"touch {ran}"
    add(root, tmp_path, "nobox", {"engine": "command", "cwd": str(tmp_path), "sandbox": True, "command": agent})
    # The queue's default: a job that says nothing is sandboxed; one that says false is not.
    (root / "config.yaml").write_text("sandbox: true\n")
    add(root, tmp_path, "default", {"engine": "command", "cwd": str(tmp_path), "command": agent})
    add(root, tmp_path, "optout", {"engine": "command", "cwd": str(tmp_path), "sandbox": False, "command": "true"})
    run = aq("run", "--once", root=root, env={"AQ_BWRAP_BIN": str(tmp_path / "no-such-bwrap")})
    assert run.returncode == 0
    for job_id in ("nobox", "default"):
        m = meta(root, job_id)
        assert (state_of(root, job_id), m["result"]) == ("failed", "sandbox_unavailable")
        assert m["error"] == f"sandbox: AQ_BWRAP_BIN='{tmp_path / 'no-such-bwrap'}' is not an executable"
        assert m.get("attempts", "0") == "0", "the agent never started: no attempt is counted"
    assert not ran.exists()
    assert meta(root, "optout")["result"] == "ok"


def test_a_bubblewrap_that_cannot_make_a_sandbox_is_unavailable(root: Path, tmp_path: Path) -> None:
    # What bubblewrap prints where user namespaces are disabled.
    broken = tmp_path / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    broken.chmod(0o755)
    ran = tmp_path / "ran"
    add(
        root,
        tmp_path,
        "nouserns",
        {"engine": "command", "cwd": str(tmp_path), "sandbox": True, "command": f"touch {ran}"},
    )
    run = aq("run", "--once", root=root, env={"AQ_BWRAP_BIN": str(broken)})
    assert run.returncode == 0
    m = meta(root, "nouserns")
    assert m["result"] == "sandbox_unavailable" and not ran.exists()
    assert m["error"] == f"sandbox: {broken} cannot make a sandbox here: bwrap: setting up uid map: Permission denied"
    assert f"sandbox_unavailable: {m['error']}" in run.stdout + run.stderr


def test_other_platforms_are_unavailable() -> None:
    assert sandbox.ready("darwin") == (None, "sandbox: not supported on darwin yet (Linux with bubblewrap only)")


def agent_with_a_child(tmp_path: Path) -> str:
    """A sandboxed agent that starts a TERM-ignoring child and one that leaves the process group
    (``setsid``), then sleeps; on TERM it takes a moment before it records it (its grace)."""
    stubborn = (
        f"{sys.executable} -c 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'"
    )
    return (
        f"trap 'sleep 0.5; echo term > {tmp_path}/work/got-term; exit 0' TERM; "
        f"{stubborn} & setsid {stubborn} & echo started > started; sleep 600 & wait"
    )


def test_a_timeout_gives_the_sandboxed_agent_its_grace_and_leaves_nothing(root: Path, tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    front = {
        "engine": "command",
        "cwd": str(tmp_path / "work"),
        "sandbox": True,
        "timeout": "2s",
        "grace": "2s",
        "command": agent_with_a_child(tmp_path),
    }
    add(root, tmp_path, "slow", front)
    assert aq("run", "--once", root=root, timeout=60).returncode == 0
    assert meta(root, "slow")["result"] == "timeout"
    assert (tmp_path / "work" / "got-term").read_text() == "term\n", "the agent got TERM and time to act on it"
    assert job_processes(root, "slow") == []


@pytest.mark.parametrize("how", ["stop", "cancel", "kill -9"])
def test_stop_cancel_and_a_killed_runner_leave_no_sandboxed_process(root: Path, tmp_path: Path, how: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    front = {"engine": "command", "cwd": str(work), "sandbox": True, "command": agent_with_a_child(tmp_path)}
    add(root, tmp_path, "held", front)
    runner = aq_popen("run", root=root)
    try:
        wait_until((work / "started").exists, 30, "the agent to start")
        wait_until(lambda: len(job_processes(root, "held")) >= 4, 30, "the agent's processes")
        if how == "stop":
            assert aq("stop", root=root).returncode == 0
            runner.communicate(timeout=30)
            assert (state_of(root, "held"), meta(root, "held")["result"]) == ("inbox", "stopped")
        elif how == "cancel":
            assert aq("cancel", "held", root=root).returncode == 0
            assert (state_of(root, "held"), meta(root, "held")["result"]) == ("failed", "cancelled")
        else:
            runner.kill()
            runner.wait(timeout=10)
            assert aq("recover", root=root).returncode == 0
            assert (state_of(root, "held"), meta(root, "held")["attempts"]) == ("inbox", "1")
        wait_until(lambda: not job_processes(root, "held"), 30, "every process of the job to be gone")
    finally:
        if runner.poll() is None:
            runner.terminate()
            runner.communicate(timeout=30)


def test_the_command_line_keeps_the_network_and_the_process_group(tmp_path: Path) -> None:
    argv = sandbox.command(
        "/usr/bin/bwrap", ["/bin/agent", "--flag"], workdir=tmp_path, writable=[tmp_path, Path("/")], tmpdir=tmp_path
    )
    bwrap = argv[argv.index("/usr/bin/bwrap") :]
    assert bwrap[1:4] == ["--ro-bind", "/", "/"]
    assert "--unshare-net" not in bwrap and "--unshare-all" not in bwrap and "--new-session" not in bwrap
    assert "--die-with-parent" in bwrap
    real = os.path.realpath(tmp_path)
    assert bwrap.count("--bind") == 1 and bwrap[bwrap.index("--bind") + 1 :][:2] == [real, real], "/ is never writable"
    assert bwrap[-2:] == ["/bin/agent", "--flag"]
    assert sandbox.state_paths(["~/.claude", "/opt/state", "relative"], home="/home/u") == [
        Path("/home/u/.claude"),
        Path("/opt/state"),
    ]


def test_verify_runs_in_the_same_sandbox(root: Path, tmp_path: Path) -> None:
    # verify runs the code the agent wrote (its tests): it gets no more than the agent did.
    repo = git_repo(tmp_path / "repo")
    outside = tmp_path / "outside.txt"
    agent = f"echo 'touch {outside} && touch inside.txt' > check.sh"
    for job_id, verify in (("checked", "sh check.sh"), ("passes", "true")):
        add(
            root,
            tmp_path,
            job_id,
            {"engine": "command", "cwd": str(repo), "sandbox": True, "command": agent, "verify": verify},
        )
    assert aq("run", "--once", root=root).returncode == 0
    assert meta(root, "checked")["result"] == "verify_failed"
    assert meta(root, "passes")["result"] == "ok"
    assert not outside.exists()
    assert "Read-only file system" in (root / "logs" / "checked.1.log").read_text()
    assert not list((root / "tmp").glob("*sandbox-tmp"))
