"""The engine's process group: ending it (TERM, grace, KILL), feeding it the prompt, waiting for its
exit, the evidence of its start (and its start through ``sh`` where ``spawn`` is not available), and
the job's ``verify`` command."""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aq_core import sandbox, spawn
from aq_core.filebytes import read_bytes
from aq_core.journal import Journal
from aq_core.procs import only_zombies, signal_group
from aq_core.store import Store

STOP_GRACE = 3.0  # a stopping runner must exit within seconds, whatever the job's grace


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return only_zombies(pgid)


def end_group(proc: spawn.Agent | subprocess.Popen, grace: float) -> None:
    """TERM the whole process group, wait up to ``grace`` for every member, then KILL the rest."""
    pgid = proc.pid
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.05)
        if proc.returncode is not None and group_gone(pgid):
            return
    signal_group(pgid, signal.SIGKILL)
    proc.wait()


def started_marker(store: Store, job_id: str) -> Path:
    """The file an attempt's ``sh`` writes its started line to as it starts (where ``spawn`` is not
    available): the job's own log of aq's lines (``logs/<id>.aq.log``), which the runner holds open
    through the attempt anyway, so marking a start creates no file (see ``Attempt._run``)."""
    return store.files.aq_log_path(job_id)


def start_script(attempt: int) -> str:
    """The ``sh -c`` script that writes the started line with its own pid, then becomes the agent
    (``$0``: the marker, ``$@``: the agent's argv)."""
    return f'echo "aq: attempt {int(attempt)}: agent started, pid $$" >>"$0" && exec "$@"'


def start_with_shell(
    store: Store,
    journal: Journal,
    job_id: str,
    argv: list[str],
    env: dict[bytes, bytes],
    workdir: Path,
    stdin: int | None,
    log: Path,
    attempt: int,
) -> subprocess.Popen:
    """Start the agent through ``sh`` (where ``spawn`` is not available), in its own session, output
    appended to ``log``: the shell writes the started line, then becomes the agent.

    Raises OSError: with no ``errno`` when the job's log of aq's lines cannot be written (the message
    says why), else what the start itself raised."""
    # The line goes to the job's log of aq's lines, which this attempt holds open (created 0600, never
    # through a symlink): the child only appends to a file that is there.
    marker = started_marker(store, job_id)
    if not journal.holds(job_id):
        try:
            os.close(store.files.open_log(marker))
        except OSError as exc:  # e.g. a symlink planted there: nothing is written through it
            raise OSError(f"logs/{marker.name}: cannot be written ({exc.strerror})") from None
    log_fd = store.files.open_log(log)
    try:
        return subprocess.Popen(
            ["/bin/sh", "-c", start_script(attempt), str(marker), *argv],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: timeouts and stops end every descendant
            close_fds=True,
        )
    finally:
        os.close(log_fd)


_STARTED = re.compile(rb"^aq: attempt (\d+): agent started, pid (\d+)$", re.MULTILINE)


def started(store: Store, job_id: str, attempt: int) -> tuple[bool, list[int]]:
    """Whether ``attempt``'s agent started, and the pids its start evidence names (maybe none).

    Started by ``spawn``, the evidence is the attempt's log, which only the child creates, just before
    its exec (it names no pid). Started by ``sh``, it is the line the shell wrote with its pid; an aq
    before that marked starts in a file of their own (``logs/<id>.<N>.started``, one pid a line)."""
    log = store.files.log_path(job_id, attempt)
    data = read_bytes(started_marker(store, job_id), follow=False, empty_on=OSError)
    found = [int(pid) for number, pid in _STARTED.findall(data) if int(number) == attempt]
    marked = read_bytes(log.with_suffix(".started"), follow=False, empty_on=OSError)
    found += [int(word) for word in marked.split() if word.isdigit()]
    return bool(found) or (spawn.available() and is_file(log)), found


def is_file(path: Path) -> bool:
    """True when ``path`` is a regular file (not followed: a symlink planted there is not one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def send_prompt(fd: int, data: bytes) -> None:
    """Write the prompt to the write end ``fd`` of the engine's stdin pipe, then close it.

    What fits in the pipe (64 KiB on Linux: almost every prompt) is written at once, without a thread;
    only the rest is left to a thread, since the engine may read it slowly or never."""
    view = memoryview(data)
    try:
        os.set_blocking(fd, False)
        while view:
            view = view[os.write(fd, view) :]
    except BlockingIOError:
        threading.Thread(target=_write_rest, args=(fd, view), daemon=True).start()
        return
    except OSError:  # the engine exited without reading (EPIPE): nothing more to say
        pass
    os.close(fd)


def _write_rest(fd: int, view: memoryview) -> None:
    try:
        os.set_blocking(fd, True)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass
    finally:
        os.close(fd)


def wait_exit(proc: spawn.Agent | subprocess.Popen, pidfd: int | None, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the engine's exit; True once it is reaped.

    With a pidfd (Linux) the wait wakes at the exit itself; otherwise it polls as ``Popen.wait`` does."""
    if pidfd is not None:
        poller = select.poll()  # not select(): no limit on the fd's number
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            return False
        proc.wait()
        return True
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it exits), or None where the system has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def run_verify(
    store: Store,
    command: str,
    workdir: Path,
    log_path: Path,
    timeout: float | None,
    grace: float,
    say: Callable[[str], None],
    bwrap: str | None = None,
    job_id: str = "",
) -> str:
    """Run the job's ``verify`` in its own process group, output to the attempt's log; return the
    class: ``ok``, ``verify_failed`` or ``timeout`` (``timeout``: seconds left, None for none).

    With ``bwrap`` (a sandboxed job) it runs in the same sandbox as the agent: it runs the code the
    agent wrote."""
    argv, tmpdir = ["/bin/sh", "-c", command or "true"], None
    if bwrap is not None:
        tmpdir = sandbox.make_tmpdir(store.files.tmp_path(""), job_id, "verify")
        argv = sandbox.wrap(bwrap, argv, workdir, tmpdir, (), log_path)
    try:
        return _run_verify(store, command, argv, workdir, log_path, timeout, grace, say)
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _run_verify(
    store: Store,
    command: str,
    argv: list[str],
    workdir: Path,
    log_path: Path,
    timeout: float | None,
    grace: float,
    say: Callable[[str], None],
) -> str:
    fd = store.files.open_log(log_path)
    try:
        os.write(fd, f"\naq: verify: running `{command}`\n".encode())
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        os.close(fd)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        end_group(proc, grace)
        say("verify: timed out")
        return "timeout"
    if not group_gone(proc.pid):
        end_group(proc, 1.0)
    if code != 0:
        say(f"verify failed (exit {code}): {command}")
        return "verify_failed"
    return "ok"
