"""Process identity and process-group control, guarded against PID reuse."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def start_time(pid: int) -> float | None:
    """Return the start time of ``pid`` (epoch seconds, as psutil reports it), or None if gone.

    A zombie (exited, not yet reaped by its parent) counts as gone. On Linux it is one read of
    ``/proc/<pid>/stat`` (the runner asks once per attempt); elsewhere psutil answers.
    """
    boot = _boot()
    if boot is not None:
        try:
            data = _read_small(f"/proc/{pid}/stat")
        except (FileNotFoundError, ProcessLookupError):
            return None
        except OSError:
            return _psutil_start_time(pid)
        # The command name (field 2) may hold spaces and parentheses: count fields after its last ")".
        fields = data[data.rfind(b")") + 2 :].split()
        if len(fields) < 20 or fields[0] == b"Z":
            return None
        return int(fields[19]) / boot[1] + boot[0]
    return _psutil_start_time(pid)


def _read_small(path: str) -> bytes:
    """A /proc file of a few hundred bytes in one ``read``: a buffered file object adds five
    system calls (stat, seek, a second read), and the runner asks once per attempt."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = chunk = os.read(fd, 4096)
        while len(chunk) == 4096:  # less than asked: the end (the kernel makes the record in one go)
            chunk = os.read(fd, 4096)
            data += chunk
        return data
    finally:
        os.close(fd)


_boot_cache: list = [float("-inf"), None]  # [read at (monotonic), (boot time, clock ticks) or None]


def _boot() -> tuple[float, int] | None:
    """The boot time and clock ticks psutil's ``create_time`` uses (None where /proc has no stat).

    The kernel derives the boot time from the clock, so a clock step moves it: read again each second."""
    now = time.monotonic()
    if now - _boot_cache[0] < 1.0:
        return _boot_cache[1]
    found = None
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"btime "):
                    found = float(line.split()[1]), os.sysconf("SC_CLK_TCK")
                    break
    except (OSError, ValueError, IndexError):
        found = None
    _boot_cache[:] = [now, found]
    return found


def _psutil_start_time(pid: int) -> float | None:
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ValueError, OverflowError):
        return None


def same_start(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) < 0.05


def alive(pid: int | None, pidstart: float | None) -> bool:
    """True when ``pid`` runs and is the same process that started at ``pidstart`` (not a reuse)."""
    if not pid or pid <= 0:
        return False
    return same_start(start_time(pid), pidstart)


def group_members(pgid: int, not_before: float | None) -> list[int]:
    """Return the live processes in group ``pgid`` that started no earlier than ``not_before``.

    The start-time bound keeps a stranger safe: a recycled group id belongs to processes that
    started after the leader we knew.
    """
    import psutil

    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
            if not_before is not None and proc.create_time() + 0.05 < not_before:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue  # exited, waiting to be reaped (a sandbox's init, by a slow pid 1)
            members.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def only_zombies(pgid: int) -> bool:
    """True when no process of group ``pgid`` still runs: those left have exited and wait to be
    reaped by whoever inherited them (a sandbox's init, reparented to a slow-reaping pid 1)."""
    import psutil

    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return False
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return True


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a whole process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def kill_orphan_group(pgid: int, leader_start: float | None, grace: float = 2.0) -> int:
    """End an orphaned agent's process group, verified by start time; return how many were signalled.

    When the leader still runs it must have ``leader_start``; when it is gone, only members that
    started after it are touched (grandchildren such as the native binary of a launcher).
    """
    leader_now = start_time(pgid)
    if leader_now is not None and leader_start is not None and not same_start(leader_now, leader_start):
        # The pid now belongs to another process. Linux never hands out a pid still in use as a
        # group id, so the agent's group is already empty: nothing of ours is left to end.
        return 0
    members = group_members(pgid, leader_start)
    if not members:
        return 0
    for pid in members:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and group_members(pgid, leader_start):
        time.sleep(0.05)
    for pid in group_members(pgid, leader_start):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(members)


def find_by_env(wanted: dict[str, str]) -> list[int]:
    """Return the pids of this user's processes whose environment has every ``wanted`` pair.

    Recovery uses it for an agent whose runner died between starting it and recording its pid.
    """
    import psutil

    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if all(env.get(k) == v for k, v in wanted.items()):
            found.append(proc.pid)
    return found
