"""Starting an agent without a shell in front of it: glibc's ``posix_spawn`` through ctypes.

The child itself, as its last step before the exec, creates the attempt's log (its stdout and stderr):
that file's existence is the evidence recovery counts a start by (``supervise.started``), made neither
before the fork (a runner killed then would be counted a start that never was) nor after the exec. The
call runs without the GIL (a ``ctypes.CDLL`` call releases it; ``os.posix_spawn`` holds it through the
vfork and exec, stalling every other runner thread) and costs a ``vfork``, not a shell's start-up.

Where glibc's needed pieces are missing (``available()`` is False: another C library, glibc < 2.34),
the attempt falls back to the ``sh`` that writes a started line (``supervise.start_script``).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

# glibc's flag values (spawn.h); SETSID needs glibc >= 2.26.
_SETSIGDEF, _SETSIGMASK, _SETSID = 0x04, 0x08, 0x80
_LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
_OPAQUE = 1024  # bytes for posix_spawn_file_actions_t / posix_spawnattr_t / sigset_t (80/336/128 on x86-64)
_NEEDED = (
    "posix_spawn",
    "posix_spawn_file_actions_init",
    "posix_spawn_file_actions_destroy",
    "posix_spawn_file_actions_adddup2",
    "posix_spawn_file_actions_addopen",
    "posix_spawn_file_actions_addchdir_np",
    "posix_spawn_file_actions_addclosefrom_np",
    "posix_spawnattr_init",
    "posix_spawnattr_destroy",
    "posix_spawnattr_setflags",
    "posix_spawnattr_setsigdefault",
    "posix_spawnattr_setsigmask",
    "sigemptyset",
    "sigaddset",
    "gnu_get_libc_version",  # glibc itself: the flag values below are its own
)


def _libc() -> ctypes.CDLL | None:
    import ctypes  # here, not at the top: a command that starts no agent does not pay for it

    try:  # the symbols this process already has (libc among them): no library search, no ldconfig
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    # addclosefrom_np came with glibc 2.34 (SETSID with 2.26): where it is, everything is.
    return libc if all(hasattr(libc, name) for name in _NEEDED) else None


_LIBC: ctypes.CDLL | None | bool = False  # False: not looked up yet
_LOOKUP = threading.Lock()


def libc() -> ctypes.CDLL | None:
    """glibc with every piece ``spawn`` needs, or None (looked up once)."""
    global _LIBC
    if _LIBC is False:
        with _LOOKUP:
            if _LIBC is False:
                _LIBC = _libc() if os.name == "posix" else None
    return _LIBC  # type: ignore[return-value]


def available() -> bool:
    """True when agents are started by ``spawn`` (so the attempt's log is the started evidence)."""
    return libc() is not None


def _check(code: int, what: str) -> None:
    if code != 0:
        raise OSError(code, f"{what}: {os.strerror(code)}")


def spawn(argv: Sequence[str], env: dict[bytes, bytes], workdir: Path, stdin: int | None, log: Path) -> Agent:
    """Start ``argv[0]`` (an absolute path) as the leader of a new session in ``workdir``, with ``env``
    (its ``PWD`` set to ``workdir``);
    stdin from the fd ``stdin`` (None: /dev/null); stdout and stderr appended to ``log``, which the child
    opens (created 0600, never through a symlink) just before its exec; no other fd inherited; SIGPIPE
    and SIGXFSZ at their defaults and no signal blocked (as ``subprocess`` does).

    A program the kernel cannot execute (a script without ``#!``) is run by ``/bin/sh``, as ``execvp``
    does. Raises OSError when the child could not open the log or exec the program: glibc then has
    reaped it, and the log may exist (the caller removes it: no start happened)."""
    import ctypes

    lib = libc()
    if lib is None:
        raise OSError(0, "posix_spawn is not available here")
    actions = ctypes.create_string_buffer(_OPAQUE)
    attr = ctypes.create_string_buffer(_OPAQUE)
    _check(lib.posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init")
    try:
        _check(lib.posix_spawnattr_init(attr), "posix_spawnattr_init")
        try:
            if stdin is None:
                _check(lib.posix_spawn_file_actions_addopen(actions, 0, b"/dev/null", os.O_RDONLY, 0), "addopen")
            else:
                _check(lib.posix_spawn_file_actions_adddup2(actions, stdin, 0), "adddup2")
            _check(lib.posix_spawn_file_actions_addopen(actions, 1, os.fsencode(log), _LOG_FLAGS, 0o600), "addopen")
            _check(lib.posix_spawn_file_actions_adddup2(actions, 1, 2), "adddup2")
            _check(lib.posix_spawn_file_actions_addchdir_np(actions, os.fsencode(workdir)), "addchdir_np")
            _check(lib.posix_spawn_file_actions_addclosefrom_np(actions, 3), "addclosefrom_np")
            default, empty = ctypes.create_string_buffer(_OPAQUE), ctypes.create_string_buffer(_OPAQUE)
            lib.sigemptyset(default)
            lib.sigemptyset(empty)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                lib.sigaddset(default, int(sig))
            _check(lib.posix_spawnattr_setsigdefault(attr, default), "setsigdefault")
            _check(lib.posix_spawnattr_setsigmask(attr, empty), "setsigmask")
            _check(lib.posix_spawnattr_setflags(attr, ctypes.c_short(_SETSID | _SETSIGDEF | _SETSIGMASK)), "setflags")
            args = [os.fsencode(a) for a in argv]
            c_argv = _c_strings(args)
            # ``PWD`` names the workdir, as a shell in front of the agent would set it: programs (Node's
            # among them) take it for their working directory when it names a directory.
            pairs = [k + b"=" + v for k, v in env.items() if k != b"PWD"]
            pairs.append(b"PWD=" + os.fsencode(os.path.abspath(workdir)))
            c_env = _c_strings(pairs)
            pid = ctypes.c_int(0)
            # Returns the child's errno when a file action or the exec failed (the child already reaped).
            code = lib.posix_spawn(ctypes.byref(pid), args[0], actions, attr, c_argv, c_env)
            if code == errno.ENOEXEC:  # a script without ``#!``: run by ``sh``, as ``execvp`` (and a shell) do
                args = [b"/bin/sh", *args]
                c_argv = _c_strings(args)
                code = lib.posix_spawn(ctypes.byref(pid), args[0], actions, attr, c_argv, c_env)
            if code != 0:
                raise OSError(code, os.strerror(code), os.fsdecode(args[0]))
            return Agent(pid.value, list(argv))
        finally:
            lib.posix_spawnattr_destroy(attr)
    finally:
        lib.posix_spawn_file_actions_destroy(actions)


def _c_strings(items: list[bytes]) -> ctypes.Array:
    """``items`` as a C array of strings ended by NULL (an ``argv`` or ``envp``)."""
    import ctypes

    return (ctypes.c_char_p * (len(items) + 1))(*items, None)


class Agent:
    """A spawned agent, as the supervision uses a ``subprocess.Popen``: ``pid``, ``returncode``,
    ``poll()`` and ``wait(timeout)`` (raising ``subprocess.TimeoutExpired``). Safe across threads."""

    def __init__(self, pid: int, args: list[str]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def _reap(self, flags: int) -> None:
        """Collect the exit status (the lock held); with ``WNOHANG``, none while the agent runs."""
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped elsewhere: its status is lost, as Popen says
            self.returncode = 0
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)

    def poll(self) -> int | None:
        if self.returncode is None and self._lock.acquire(blocking=False):
            try:
                if self.returncode is None:
                    self._reap(os.WNOHANG)
            finally:
                self._lock.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            with self._lock:
                if self.returncode is None:
                    self._reap(0)
            return self.returncode  # type: ignore[return-value]
        deadline, delay = time.monotonic() + timeout, 0.0005
        while self.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)
        return self.returncode  # type: ignore[return-value]
