"""The agent sandbox (``sandbox: true``): whether bubblewrap works here, and the command line that
runs an agent inside it with the filesystem read-only except its work tree, a private temporary
directory and its engine's state directories.

Everything here is Linux and bubblewrap; other platforms get a reason, never an unsandboxed run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

BWRAP_ENV = "AQ_BWRAP_BIN"
PROBE_TIMEOUT = 15.0

# bubblewrap exits on SIGTERM at once (it forwards nothing), and with --die-with-parent its death
# SIGKILLs the sandbox: the agent would get no grace. So bubblewrap starts with TERM ignored (the
# group's TERM reaches the agent, which ends, and bubblewrap follows), and inside the sandbox TERM
# is reset to its default before the agent starts (a shell cannot un-ignore what it inherited).
IGNORE_TERM = "trap '' TERM; exec \"$@\""
RESET_TERM = "import os,signal,sys;signal.signal(signal.SIGTERM,signal.SIG_DFL);os.execv(sys.argv[1],sys.argv[1:])"

_probed: dict[str, str | None] = {}
_probe_lock = threading.Lock()


def find_bwrap() -> tuple[str | None, str]:
    """Return (the bubblewrap executable, '') or (None, why there is none)."""
    configured = os.environ.get(BWRAP_ENV)
    if configured:
        path = shutil.which(os.path.expanduser(configured))
        if path is None:
            return None, f"{BWRAP_ENV}={configured!r} is not an executable"
        return path, ""
    path = shutil.which("bwrap")
    if path is None:
        return None, f"bubblewrap not found (install the bubblewrap package, or set {BWRAP_ENV})"
    return path, ""


def ready(platform: str | None = None) -> tuple[str | None, str]:
    """Return (bubblewrap, '') when sandboxed agents can run here, else (None, one line saying why).

    The first call per bubblewrap executable runs it once (user namespaces may be disabled); the
    answer is kept for the life of the process.
    """
    platform = platform or sys.platform
    if not platform.startswith("linux"):
        return None, f"sandbox: not supported on {platform} yet (Linux with bubblewrap only)"
    bwrap, why = find_bwrap()
    if bwrap is None:
        return None, f"sandbox: {why}"
    with _probe_lock:
        if bwrap not in _probed:
            _probed[bwrap] = probe(bwrap)
        error = _probed[bwrap]
    if error:
        return None, f"sandbox: {bwrap} cannot make a sandbox here: {error}"
    return bwrap, ""


def probe(bwrap: str) -> str | None:
    """Start ``true`` in a sandbox made as an agent's is; return None, or the error in one line."""
    scratch = Path(tempfile.mkdtemp(prefix="aq-sandbox-probe-"))
    try:
        true = shutil.which("true") or "/bin/true"
        argv = command(bwrap, [true], workdir=scratch, writable=[scratch], tmpdir=scratch)
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return f"it did not finish within {PROBE_TIMEOUT:g}s"
        except OSError as exc:
            return exc.strerror or str(exc)
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
            return lines[-1] if lines else f"exit {done.returncode}"
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def command(
    bwrap: str,
    argv: list[str],
    *,
    workdir: Path,
    writable: Iterable[Path],
    tmpdir: Path,
    readonly: Iterable[Path] = (),
) -> list[str]:
    """Return the command line that runs ``argv`` in ``workdir`` inside the sandbox.

    ``/`` is bound read-only; ``writable`` paths (existing ones) and ``tmpdir`` are bound
    read-write at the same place, then ``readonly`` ones inside them read-only again. The network is left as it is. ``--unshare-pid`` gives the
    agent its own process namespace, so when the sandbox ends (the agent exits, or aq kills the
    group) every process it started ends too, even one that left the process group; with
    ``--die-with-parent`` that holds when the runner is killed. No ``--new-session``: aq already
    starts the agent in its own session and process group, and one more would move the agent
    out of the group aq ends on timeout, stop and cancel (without a terminal, there is none to
    inject into).
    """
    args = [
        "/bin/sh",
        "-c",
        IGNORE_TERM,
        "aq-sandbox",
        bwrap,
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--unshare-pid",
        "--die-with-parent",
    ]
    seen: set[str] = set()
    for path in [*writable, tmpdir]:
        real = os.path.realpath(path)
        if real in seen or real == "/" or not os.path.exists(real):
            continue
        seen.add(real)
        args += ["--bind", real, real]
    for path in readonly:
        real = os.path.realpath(path)
        if os.path.exists(real):
            args += ["--ro-bind", real, real]
    tmp = os.path.realpath(tmpdir)
    for name in ("TMPDIR", "TMP", "TEMP"):
        args += ["--setenv", name, tmp]
    args += ["--chdir", os.path.realpath(workdir), "--", sys.executable, "-I", "-S", "-c", RESET_TERM, *argv]
    return args


def state_paths(declared: Iterable[str], home: str | None = None) -> list[Path]:
    """Return an engine's declared state paths (``~/...`` or absolute) as absolute paths."""
    home = home if home is not None else os.path.expanduser("~")
    paths = []
    for entry in declared:
        if entry == "~" or entry.startswith("~/"):
            paths.append(Path(home + entry[1:]))
        elif os.path.isabs(entry):
            paths.append(Path(entry))
    return paths


def work_paths(workdir: Path) -> tuple[list[Path], list[Path]]:
    """Return (writable, read-only) paths for an agent working in ``workdir``: its work tree and, in
    a git repository, the git directories a commit writes to (a worktree's lie outside it); but
    not the repository's ``config`` and ``hooks``, which name commands git runs later outside the
    sandbox (``core.fsmonitor``, a ``post-commit`` hook)."""
    paths: tuple[list[Path], list[Path]] = ([workdir], [])
    git = shutil.which("git")
    if git is None:
        return paths
    try:
        out = subprocess.run(
            [git, "rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return paths
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) != 3:
        return paths
    top, git_dir, common_dir = lines
    common = (workdir / common_dir).resolve()
    guarded = [common / "config", common / "hooks", Path(git_dir) / "config.worktree"]
    return [Path(top), workdir, Path(git_dir), common], guarded


def side_files(tokens: Iterable[str], log_path: Path) -> list[Path]:
    """Return the attempt's side files (``<log>.<suffix>``, see ``LaunchContext.log_path``) named in
    ``tokens`` (argv and env values), so they can be made writable inside the sandbox."""
    prefix = str(log_path) + "."
    found = []
    for token in tokens:
        for part in (token, token.partition("=")[2]):
            if part.startswith(prefix) and "/" not in part[len(prefix) :]:
                found.append(Path(part))
                break
    return found


def make_tmpdir(parent: Path, job_id: str, attempt: int | str) -> Path:
    """Create the attempt's private temporary directory (0700), removing earlier attempts' leftovers."""
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob(f"{job_id}.*.sandbox-tmp"):
        shutil.rmtree(old, ignore_errors=True)
    path = parent / f"{job_id}.{attempt}.sandbox-tmp"
    path.mkdir(mode=0o700)
    return path


def wrap(
    bwrap: str,
    argv: list[str],
    workdir: Path,
    tmpdir: Path,
    state_dirs: Iterable[str],
    log_path: Path,
    tokens: Iterable[str] = (),
) -> list[str]:
    """Return ``argv`` wrapped for one attempt: writable are its work tree (and git directories),
    ``tmpdir``, the engine's existing state paths and the attempt's side files named in ``tokens``
    (created here, empty and private, so that they can be bound)."""
    writable, readonly = work_paths(workdir)
    writable += state_paths(state_dirs)
    for side in side_files(tokens, log_path):
        os.close(os.open(side, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        writable.append(side)
    return command(bwrap, argv, workdir=workdir, writable=writable, tmpdir=tmpdir, readonly=readonly)
