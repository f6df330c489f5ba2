"""Starting an agent without a shell in front of it (``aq_core.spawn``): what the agent gets, what its
start leaves behind, and the ``sh`` path kept where ``posix_spawn`` is missing."""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import aq, meta, state_of, stub, write_job

from aq_core import spawn
from aq_core.journal import Journal
from aq_core.runner import Runner
from aq_core.store_fs import FsStore

AGENT = r"""
import os, sys
print("cwd", os.getcwd(), os.environ["PWD"])
print("leads its session", os.getsid(0) == os.getpid())
inherited = []
for fd in range(3, 256):
    try:
        os.fstat(fd)
    except OSError:
        continue
    inherited.append(fd)
print("inherited", inherited)
print("stdin", sys.stdin.read())
print("to stderr", file=sys.stderr)
"""


def test_the_agent_runs_in_its_workdir_alone_with_its_prompt_and_its_output_in_the_log(tmp_path: Path) -> None:
    agent, log, work = tmp_path / "agent.py", tmp_path / "logs" / "j.1.log", tmp_path / "work"
    agent.write_text(AGENT)
    log.parent.mkdir()
    work.mkdir()
    extra = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(extra, True)  # a runner's fd that Popen's close_fds would keep from the agent
    read, write = os.pipe()
    try:
        env = {**os.environb, b"PWD": os.fsencode(tmp_path)}  # the runner's own, as Node programs read it
        proc = spawn.spawn([sys.executable, str(agent)], env, work, read, log)
    finally:
        os.close(extra)
        os.close(read)
    os.write(write, b"the prompt")
    os.close(write)
    assert proc.wait() == 0 and proc.returncode == 0
    assert log.read_text().splitlines() == [
        f"cwd {work} {work}",
        "leads its session True",
        "inherited []",
        "stdin the prompt",
        "to stderr",
    ]
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_the_agent_starts_with_default_signals_and_none_blocked(tmp_path: Path) -> None:
    log = tmp_path / "status.log"
    grep = shutil.which("grep")
    assert grep is not None
    # This process ignores SIGPIPE and SIGXFSZ (Python does); block one more in the spawning thread.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        proc = spawn.spawn([grep, "^Sig", "/proc/self/status"], {}, tmp_path, None, log)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    assert proc.wait() == 0
    status = dict(line.split(":\t") for line in log.read_text().splitlines())
    ignored = int(status["SigIgn"], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))
    assert int(status["SigBlk"], 16) == 0


def test_the_log_is_there_as_soon_as_the_start_returns_made_by_the_agents_process(tmp_path: Path) -> None:
    log = tmp_path / "j.1.log"
    proc = spawn.spawn(["/bin/sleep", "30"], {}, tmp_path, None, log)
    try:
        assert log.is_file() and log.stat().st_size == 0, "made before the exec, not by anything the agent wrote"
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.01)
        assert proc.poll() is None
    finally:
        os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and proc.poll() == -signal.SIGKILL


def test_an_exec_that_fails_is_reported_and_never_writes_through_a_link(tmp_path: Path) -> None:
    missing = tmp_path / "missing-interpreter"
    missing.write_text("#!/nonexistent/interpreter\n")
    missing.chmod(0o700)
    with pytest.raises(OSError) as failed:
        spawn.spawn([str(missing)], {}, tmp_path, None, tmp_path / "g.1.log")
    assert failed.value.errno == errno.ENOENT
    outside = tmp_path / "outside"
    outside.write_text("precious\n")
    os.symlink(outside, tmp_path / "s.1.log")
    with pytest.raises(OSError) as linked:
        spawn.spawn(["/bin/true"], {}, tmp_path, None, tmp_path / "s.1.log")
    assert linked.value.errno == errno.ELOOP and outside.read_text() == "precious\n"


def add(root: Path, tmp_path: Path, job_id: str, command: list[str]) -> None:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    path = write_job(tmp_path / "jobs", job_id, {"engine": "command", "cwd": str(work), "command": command})
    assert aq("add", str(path), root=root).returncode == 0


def test_an_engine_that_cannot_be_executed_fails_unstarted_and_leaves_no_log(tmp_path: Path) -> None:
    root, broken = tmp_path / "queue", tmp_path / "broken"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o700)
    add(root, tmp_path, "broken", [str(broken)])
    assert aq("run", "--once", root=root).returncode == 0
    m = meta(root, "broken")
    assert (state_of(root, "broken"), m["result"], m.get("attempts", "0")) == ("failed", "invalid", "0")
    assert m["error"] == f"engine command: cannot start {str(broken)!r}: No such file or directory"
    # Its process made the log before the exec failed: gone, so that it can never count as a start.
    assert not (root / "logs" / "broken.1.log").exists()


def test_a_script_without_an_interpreter_line_is_run_by_sh_as_a_shell_would(tmp_path: Path) -> None:
    root, script = tmp_path / "queue", tmp_path / "plain-script"
    script.write_text('echo "ran in $PWD with $1"\n')
    script.chmod(0o700)
    add(root, tmp_path, "plain", [str(script), "its argument"])
    assert aq("run", "--once", root=root).returncode == 0
    assert (state_of(root, "plain"), meta(root, "plain")["attempts"]) == ("done", "1")
    assert (root / "logs" / "plain.1.log").read_text() == f"ran in {tmp_path / 'work'} with its argument\n"


def test_a_log_left_by_an_older_aq_before_its_fork_is_replaced_by_the_agents_own(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    add(root, tmp_path, "again", stub("--print", "fresh output"))
    (root / "logs" / "again.1.log").write_text("left by a runner that never started the agent\n")
    assert aq("run", "--once", root=root).returncode == 0
    assert (state_of(root, "again"), meta(root, "again")["attempts"]) == ("done", "1")
    assert (root / "logs" / "again.1.log").read_text() == "fresh output\n"


def test_without_posix_spawn_a_shell_writes_the_started_line_with_the_agents_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spawn, "_LIBC", None)  # as on a system without glibc's posix_spawn pieces
    root = tmp_path / "queue"
    add(root, tmp_path, "once", stub("--print", "out"))
    store = FsStore(root)
    assert Runner(store, workers=1, once=True, journal=Journal(store, out=io.StringIO())).run() == 0
    assert state_of(root, "once") == "done"
    lines = (root / "logs" / "once.aq.log").read_text().splitlines()
    started = [line for line in lines if "agent started" in line]
    # Written by the process that became the agent, before its exec: so before the job's end.
    assert started == [f"aq: attempt 1: agent started, pid {meta(root, 'once')['agent_pid']}"]
    assert lines.index(started[0]) < next(i for i, line in enumerate(lines) if ": done: " in line)
    assert (root / "logs" / "once.1.log").read_text() == "out\n"
    assert not list((root / "logs").glob("*.started")), "a start creates no file of its own"


def test_without_posix_spawn_a_symlinked_log_of_aq_lines_keeps_the_agent_from_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spawn, "_LIBC", None)
    root, outside = tmp_path / "queue", tmp_path / "outside"
    outside.write_text("precious\n")
    add(root, tmp_path, "sym", stub("--print", "out"))
    os.symlink(outside, root / "logs" / "sym.aq.log")
    store = FsStore(root)
    assert Runner(store, workers=1, once=True, journal=Journal(store, out=io.StringIO())).run() == 0
    m = meta(root, "sym")
    # The shell would write its started line through the link: the agent never starts.
    assert (state_of(root, "sym"), m["result"], m.get("attempts", "0")) == ("failed", "invalid", "0")
    assert m["error"] == "logs/sym.aq.log: cannot be written (Too many levels of symbolic links)"
    assert outside.read_text() == "precious\n"
