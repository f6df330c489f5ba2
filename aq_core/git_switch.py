"""``git switch -c <branch>`` at HEAD's commit without a git process: the branch's ref and HEAD
written as git writes them on the files ref backend (a ``<ref>.lock`` created exclusively, written,
renamed over the ref; the same reflog lines). Anything this does not cover is left to git."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

from aq_core.git_repo import GitFailed, Repo

__all__ = ["switch_new"]

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
_CONFIG_WORDS = (b"include", b"refstorage", b"sharedrepository", b"sparse", b"recurse", b"worktreeconfig")
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
# The identity git writes in reflog lines, by everything it is read from; None: git could not tell.
_IDENTITY: dict[tuple[object, ...], str | None] = {}


def switch_new(repo: Repo, branch: str, head: str) -> bool:
    """Create ``refs/heads/<branch>`` at ``head`` and check it out, as ``git switch -c`` does.

    ``head`` is HEAD's commit, so neither the index nor the files change. Returns False, having written
    nothing, when the repository or the moment is one git must handle (another ref backend, a detached
    HEAD, state files, settings that change what git writes, the branch or a lock already there).
    """
    if any(name in os.environ for name in _GIT_DECIDES):
        return False
    ref = "refs/heads/" + branch
    git_dir, common = repo.git_dir, repo.common_dir
    try:
        if not _BRANCH_STATE.isdisjoint(os.listdir(git_dir)):
            return False
        head_text = (git_dir / "HEAD").read_bytes()
        configs = _configs(repo)
    except OSError:
        return False
    if configs is None or (common / "reftable").exists():
        return False
    match = re.fullmatch(rb"ref: (refs/heads/\S+)\n", head_text)
    if match is None or match[1].decode() == ref:
        return False  # detached, or not a branch: git
    old_ref = match[1].decode()
    packed = _read(common / "packed-refs")
    if _value(common, old_ref, packed) != head or _taken(common, ref, packed):
        return False
    ident = _identity(repo, configs)
    if ident is None:
        return False
    stamp = _stamp()
    zero = "0" * len(head)
    ref_path = common / ref
    try:
        ref_path.parent.mkdir(parents=True, exist_ok=True)
        (common / "logs" / ref).parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # e.g. refs/heads/aq is a branch (a file): git's refusal to give
        return False
    if not _write_locked(
        ref_path, head + "\n", common / "logs" / ref, f"{zero} {head} {ident} {stamp}\tbranch: Created from HEAD\n"
    ):
        return False
    old = old_ref.removeprefix("refs/heads/")
    message = f"checkout: moving from {old} to {branch}"
    line = f"{head} {head} {ident} {stamp}\t{message}\n"
    with contextlib.suppress(OSError):  # without it, the reflog line cannot be written: git below
        (git_dir / "logs").mkdir(exist_ok=True)
    if not _write_locked(git_dir / "HEAD", f"ref: {ref}\n", git_dir / "logs" / "HEAD", line, expect=head_text):
        # The branch exists now; HEAD was taken or moved meanwhile: git points it there, or says why not.
        repo.git("symbolic-ref", "-m", message, "HEAD", ref)
    return True


def _write_locked(path: Path, content: str, log: Path, line: str, *, expect: bytes | None = None) -> bool:
    """Replace ``path`` with ``content`` through ``<path>.lock`` as git does, appending ``line`` to its
    reflog first; False, with nothing written, when the lock is held or ``path`` is not as expected
    (``expect``: its content; ``None``: it must not exist)."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError:
        return False
    try:
        ok = path.read_bytes() == expect if expect is not None else not os.path.lexists(path)
        if ok:
            os.write(fd, content.encode())
            with open(log, "ab") as reflog:
                reflog.write(line.encode())
            os.replace(lock, path)
            return True
    except OSError:
        pass
    finally:
        os.close(fd)
    lock.unlink(missing_ok=True)
    return False


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _value(common: Path, ref: str, packed: bytes) -> str | None:
    """The commit a branch points at (loose, else packed); None when it is symbolic or missing."""
    try:
        text = (common / ref).read_bytes().strip()
    except (FileNotFoundError, NotADirectoryError):
        found = re.search(rb"^([0-9a-f]{40,64}) " + re.escape(ref.encode()) + rb"$", packed, re.MULTILINE)
        return found[1].decode() if found else None
    return text.decode() if re.fullmatch(rb"[0-9a-f]{40,64}", text) else None


def _taken(common: Path, ref: str, packed: bytes) -> bool:
    """Whether ``ref`` or a ref it conflicts with (a parent folder's name or one below it) exists."""
    if os.path.lexists(common / ref):
        return True
    parts = ref.split("/")
    names = [re.escape("/".join(parts[:i]).encode()) for i in range(3, len(parts) + 1)]
    pattern = rb" (?:" + b"|".join(names) + rb")(?:$|/)"
    return re.search(pattern, packed, re.MULTILINE) is not None


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
    outer = tuple(_read(Path(name)) if name else b"" for name in names)
    local = _read(repo.common_dir / "config")
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
    """``Name <email>`` as git puts it in a reflog line: asked of git once per set of config files and
    environment (``git var``), then remembered; None when git has no identity to give."""
    env = os.environ
    names = ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL", "HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL")
    key = (*configs, *(env.get(name) for name in names), env.get("GIT_CONFIG_SYSTEM"), env.get("GIT_CONFIG_NOSYSTEM"))
    if key not in _IDENTITY:
        try:
            out = repo.git("var", "GIT_COMMITTER_IDENT").strip()
        except GitFailed:  # no identity configured: git's reflog guesses one; let git write it
            out = ""
        name_email = out.rsplit(" ", 2)[0] if out.count(" ") >= 2 else ""
        _IDENTITY[key] = name_email if name_email.endswith(">") else None
    return _IDENTITY[key]


def _stamp() -> str:
    """Now as git writes it in a reflog line: seconds since the epoch and the local offset (``+0100``)."""
    now = int(time.time())
    offset = time.localtime(now).tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    return f"{now} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
