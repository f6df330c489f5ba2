"""``git switch -c <branch>`` at HEAD's commit without a git process: the branch's ref and HEAD
written as git writes them on the files ref backend (a ``<ref>.lock`` created exclusively, written,
renamed over the ref; the same reflog lines). Anything this does not cover is left to git."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Collection

from aq_core.filebytes import read_bytes
from aq_core.git_repo import GitFailed, Repo

__all__ = ["clear_stale_locks", "switch_new"]

# Files `git switch` removes or acts on when present (merge and sequencer state, an autostash to apply):
# with any of them there, git does more than move HEAD, so git does it.
_BRANCH_STATE = frozenset(
    {
        "AUTO_MERGE",
        "SQUASH_MSG",
        "MERGE_HEAD",
        "MERGE_RR",
        "MERGE_MSG",
        "MERGE_MODE",
        "MERGE_AUTOSTASH",
        "CHERRY_PICK_HEAD",
        "REVERT_HEAD",
        "sequencer",
        "rebase-merge",
        "rebase-apply",
        "BISECT_LOG",
        "HEAD.lock",
    }
)
# Settings under which git would write other files or modes, or read config this module does not see.
_CONFIG_WORDS = (
    b"include",
    b"refstorage",
    b"sharedrepository",
    b"sparse",
    b"recurse",
    b"worktreeconfig",
    b"fsync",  # git would flush the ref files
)
_LOG_ALL_ON = re.compile(rb"\s*logallrefupdates\s*=\s*(true|always|yes|on|1)\s*", re.IGNORECASE)
# Variables that change what git would write (its config, time or reflog message): then git does it.
_GIT_DECIDES = (
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG",
    "GIT_COMMITTER_DATE",
    "GIT_REFLOG_ACTION",
    "GIT_TEST_DATE_NOW",
)
_SYMREF = re.compile(rb"ref: (refs/heads/\S+)\n")
_OID = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")
_STALE_S = 10.0
# The identity git writes in reflog lines, by everything it is read from; None: git could not tell.
_IDENTITY: dict[tuple[object, ...], str | None] = {}


def switch_new(repo: Repo, branch: str, head: str, names: Collection[str] | None = None) -> bool:
    """Create ``refs/heads/<branch>`` at ``head`` and check it out, as ``git switch -c`` does.

    ``head`` is HEAD's commit, so neither the index nor the files change. ``names``: the git dir's
    entries when the caller has just listed them (``Repo.git_dir_names``). Returns False, having written
    nothing, when the repository or the moment is one git must handle (another ref backend, a detached
    HEAD, state files, settings that change what git writes, the branch or a lock already there).
    """
    if any(name in os.environ for name in _GIT_DECIDES):
        return False
    ref = "refs/heads/" + branch
    git_dir, common = f"{repo.git_dir}/", f"{repo.common_dir}/"  # plain strings: this runs once a job
    try:
        if not _BRANCH_STATE.isdisjoint(os.listdir(git_dir) if names is None else names):
            return False
        head_text = _read(git_dir + "HEAD")
    except OSError:
        return False
    match = _SYMREF.fullmatch(head_text)
    if match is None or match[1].decode() == ref or os.path.lexists(common + "reftable"):
        return False  # detached, or not on a branch, or not the files backend: git
    configs = _configs(repo)
    old_ref = match[1].decode()
    packed = _read(common + "packed-refs")
    if configs is None or _value(common, old_ref, packed) != head or _taken(common, ref, packed):
        return False
    ident = _identity(repo, configs)
    if ident is None:
        return False
    stamp = _stamp()
    zero = "0" * len(head)
    created = f"{zero} {head} {ident} {stamp}\tbranch: Created from HEAD\n"
    if not _write_locked(common + ref, head + "\n", common + "logs/" + ref, created):
        return False
    message = f"checkout: moving from {old_ref.removeprefix('refs/heads/')} to {branch}"
    line = f"{head} {head} {ident} {stamp}\t{message}\n"
    if not _write_locked(git_dir + "HEAD", f"ref: {ref}\n", git_dir + "logs/HEAD", line, expect=head_text):
        # The branch exists now; HEAD was taken or moved meanwhile: git points it there, or says why not.
        repo.git("symbolic-ref", "-m", message, "HEAD", ref)
    return True


def clear_stale_locks(repo: Repo, branch: str) -> None:
    """Remove the lock files a killed aq could have left by ``switch_new``: this job's branch's, and a
    ``HEAD.lock`` that would point HEAD at a work branch, each once it is ``_STALE_S`` old.

    aq writes them in its own process, so a kill -9 between creating and renaming one leaves it, and
    git then refuses every ref update it guards. Git holds such a lock for milliseconds; only aq
    writes ``aq/wip/*``, and in-place jobs in one work tree are serialised, so an old one is aq's.
    """
    now = time.time()
    for lock, mine in (
        (f"{repo.git_dir}/HEAD.lock", b"ref: refs/heads/aq/wip/"),
        (f"{repo.common_dir}/refs/heads/{branch}.lock", b""),
    ):
        try:
            if now - os.lstat(lock).st_mtime >= _STALE_S and _read(lock).startswith(mine):
                os.unlink(lock)
        except OSError:
            continue


def _write_locked(path: str, content: str, log: str, line: str, *, expect: bytes | None = None) -> bool:
    """Replace ``path`` with ``content`` through ``<path>.lock`` as git does, appending ``line`` to its
    reflog first; False, with nothing written, when the lock is held or ``path`` is not as expected
    (``expect``: its content; ``None``: it must not exist)."""
    lock = path + ".lock"
    try:
        fd = _open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
    except OSError:  # held, or a folder on the way is a file (e.g. a branch named aq): git's to refuse
        return False
    try:
        if (_read(path) == expect) if expect is not None else not os.path.lexists(path):
            os.write(fd, content.encode())
            log_fd = _open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC)
            try:
                os.write(log_fd, line.encode())
            finally:
                os.close(log_fd)
            os.replace(lock, path)
            return True
    except OSError:
        pass
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(lock)
    return False


def _open(path: str, flags: int) -> int:
    """``os.open`` with git's mode, creating the folders on the way when they are missing."""
    try:
        return os.open(path, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, flags, 0o666)


def _read(path: str) -> bytes:
    """A file's bytes; empty when it does not exist (any other error is raised)."""
    return read_bytes(path, empty_on=_MISSING)


_MISSING = (FileNotFoundError, NotADirectoryError)


def _value(common: str, ref: str, packed: bytes) -> str | None:
    """The commit a branch points at (loose, else packed); None when it is symbolic or missing."""
    text = _read(common + ref).strip()
    if not text:
        at = packed.find(b" " + ref.encode() + b"\n")
        text = packed[packed.rfind(b"\n", 0, at) + 1 : at] if at > 0 else b""
    return text.decode() if _OID.fullmatch(text) else None


def _taken(common: str, ref: str, packed: bytes) -> bool:
    """Whether ``ref`` or a ref it conflicts with (one named like a folder above it, or one below it) exists."""
    if os.path.lexists(common + ref):
        return True
    parts = ref.split("/")
    above = ("/".join(parts[:i]) for i in range(3, len(parts)))
    return any(f" {name}\n".encode() in packed for name in above) or any(
        f" {ref}{end}".encode() in packed for end in ("\n", "/")
    )


def _configs(repo: Repo) -> tuple[bytes, ...] | None:
    """The config files git reads for this repository (system, global, repository), when none holds a
    setting that would make git write something else; None otherwise (git decides)."""
    env = os.environ
    home = env.get("HOME", "")
    xdg = env.get("XDG_CONFIG_HOME") or (home and f"{home}/.config")
    names = [] if env.get("GIT_CONFIG_NOSYSTEM") else [env.get("GIT_CONFIG_SYSTEM", "/etc/gitconfig")]
    if "GIT_CONFIG_GLOBAL" in env:
        names.append(env["GIT_CONFIG_GLOBAL"])
    else:
        names += [f"{xdg}/git/config" if xdg else "", f"{home}/.gitconfig" if home else ""]
    outer = tuple(_read(name) if name else b"" for name in names)
    local = _read(f"{repo.common_dir}/config")
    for text in (*outer, local):
        lowered = text.lower()
        if any(word in lowered for word in _CONFIG_WORDS):
            return None
    if any(b"logallrefupdates" in text.lower() for text in outer):
        return None
    # Reflogs are written for branches and HEAD when core.logAllRefUpdates is on (a work tree's default).
    for line in local.splitlines():
        if b"logallrefupdates" in line.lower() and _LOG_ALL_ON.fullmatch(line) is None:
            return None
    return (*outer, local)


def _identity(repo: Repo, configs: tuple[bytes, ...]) -> str | None:
    """``Name <email>`` as git puts it in a reflog line, asked of git once per set of config files and
    environment (``git var -l``: the identity, guessed as the reflog's is when none is configured, and
    the config in effect from every file git reads), then remembered. None when that config holds a
    setting under which git would write something else."""
    env = os.environ
    names = ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL", "HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL")
    key = (*configs, *(env.get(name) for name in names), env.get("GIT_CONFIG_SYSTEM"), env.get("GIT_CONFIG_NOSYSTEM"))
    if key not in _IDENTITY:
        _IDENTITY[key] = _ask_identity(repo)
    return _IDENTITY[key]


def _ask_identity(repo: Repo) -> str | None:
    try:
        lines = repo.git("var", "-l").splitlines()
    except GitFailed:
        return None
    ident = None
    for line in lines:
        name, _, value = line.partition("=")
        if name == "GIT_COMMITTER_IDENT":
            ident = value.rsplit(" ", 2)[0] if value.count(" ") >= 2 else None
        elif name == "core.logallrefupdates":
            if value.lower() not in ("true", "always", "yes", "on", "1"):
                return None
        elif any(word.decode() in name for word in _CONFIG_WORDS):
            return None
    return ident if ident and ident.endswith(">") else None


def _stamp() -> str:
    """Now as git writes it in a reflog line: seconds since the epoch and the local offset (``+0100``)."""
    now = int(time.time())
    offset = time.localtime(now).tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    return f"{now} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
