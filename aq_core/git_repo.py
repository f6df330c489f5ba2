"""A git work tree found without running git, and git run in it safely (no hooks, no prompts, no
inherited GIT_DIR): the plumbing the git checkpoint plugin uses, each git one plain subprocess."""

from __future__ import annotations

import os
import select
import shutil
import stat
import subprocess
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aq_core.filebytes import read_bytes

FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "aq",
    "GIT_AUTHOR_EMAIL": "aq@localhost",
    "GIT_COMMITTER_NAME": "aq",
    "GIT_COMMITTER_EMAIL": "aq@localhost",
}
# Applied to every git we run: no hooks (commit-tree runs none, but switch and worktree add would run
# post-checkout), no signing prompt, no auto-gc pause, no guessed identity (we fall back to aq's).
GIT_OPTIONS = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "gc.auto=0",
    "-c",
    "user.useConfigOnly=true",
)
# Inherited variables that would point git at another repository or index than the one we found.
_LOCATING_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX", "GIT_NAMESPACE")
# Files in a (per-worktree) git dir that mean an operation is under way: HEAD must not be switched.
_IN_PROGRESS = (
    ("rebase-merge", "a rebase"),
    ("rebase-apply", "a rebase or am"),
    ("MERGE_HEAD", "a merge"),
    ("CHERRY_PICK_HEAD", "a cherry-pick"),
    ("REVERT_HEAD", "a revert"),
    ("BISECT_LOG", "a bisect"),
)


class GitFailed(Exception):
    """A git command failed; the message is one line for the job's log, ``stderr`` all git said."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


@dataclass(frozen=True)
class Status:
    """What ``git status`` says: HEAD's commit (``None`` when unborn) and one porcelain v2 record per change."""

    head: str | None
    changes: tuple[str, ...]

    @property
    def clean(self) -> bool:
        """Whether the work tree and index equal HEAD (untracked files count; ignored ones do not)."""
        return not self.changes

    def surely_changed(self) -> bool:
        """Whether a snapshot of the work tree surely differs from HEAD's tree.

        An untracked file, or a path changed in exactly one of index and work tree, says so; a path
        changed in both may have come back to HEAD's content, and a submodule's own changes are not
        in its parent's tree: then only comparing trees tells.
        """
        for record in self.changes:
            if record.startswith("? "):
                return True
            if record.startswith("1 ") and record[5:9] == "N...":
                index, work = record[2], record[3]
                if (index == ".") != (work == "."):
                    return True
        return False


@dataclass(frozen=True)
class Repo:
    """A git work tree: its top level, its own git dir and the repository's common git dir."""

    top: Path
    git_dir: Path
    common_dir: Path

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        ok: Sequence[int] = (0,),
    ) -> tuple[int, str, str]:
        """Run git in the top level; return (exit code, stdout, stderr); raise ``GitFailed`` unless ``ok``."""
        full_env = _git_env()
        if env:
            full_env.update((os.fsencode(k), os.fsencode(v)) for k, v in env.items())
        path = full_env.get(b"PATH")
        argv = [git_program(path), *GIT_OPTIONS, "-C", str(self.top), *args]
        # ``subprocess``, not ``os.posix_spawnp``: CPython holds the GIL through ``posix_spawnp``, which
        # returns only once the child has exec'd git (1-2 ms, more on a busy machine), so every other
        # thread of the runner (the other workers, the main loop) stood still for each git a checkpoint
        # runs; ``subprocess`` starts the child with the GIL released, for about the same CPU.
        try:
            code, out, raw_err = _start(argv, full_env, stdin)
        except OSError as exc:
            if argv[0] == "git" or exc.filename != argv[0]:
                raise
            # The git found earlier could not be started (removed, moved): forget it and search again.
            _PROGRAMS.pop(path, None)
            argv[0] = "git"
            code, out, raw_err = _start(argv, full_env, stdin)
        err = raw_err.decode(errors="replace").strip()
        if code not in ok:
            detail = next((line for line in err.splitlines() if line.startswith(("fatal:", "error:"))), "")
            raise GitFailed(f"git {args[0]} failed: {detail or err or f'exit {code}'}", err)
        return code, out.decode(errors="surrogateescape"), err

    def git(self, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None) -> str:
        """Run git in the top level; return its stdout, raise ``GitFailed`` if it fails."""
        return self.run(*args, stdin=stdin, env=env)[1]

    def resolve(self, *names: str) -> list[str | None]:
        """Return the object id of each revision expression, ``None`` where it names nothing (one git)."""
        out = self.git("cat-file", "--batch-check=%(objectname)", stdin="".join(f"{n}\n" for n in names))
        return [None if line.endswith((" missing", " ambiguous")) else line for line in out.splitlines()]

    def status(self, *, submodule_files: bool = True) -> Status:
        """HEAD's commit and every change of the work tree against it, untracked files included (one git).

        ``submodule_files=False``: a submodule counts as changed only when its commit did (what a
        snapshot records), so git need not look inside each one.
        """
        args = ["status", "--porcelain=v2", "-z", "--branch", "--no-ahead-behind"]
        args += ["--untracked-files=normal", "--no-renames"]
        if not submodule_files:
            args.append("--ignore-submodules=dirty")
        out = self.git(*args)
        head: str | None = None
        changes: list[str] = []
        records = iter(out.split("\0"))
        for record in records:
            if record.startswith("# branch.oid "):
                oid = record[13:]
                head = None if oid == "(initial)" else oid
            elif record.startswith("2 "):  # a rename: its original path is the next record
                changes.append(record)
                next(records, None)
            elif record and not record.startswith("#"):
                changes.append(record)
        return Status(head, tuple(changes))

    def may_have_ref(self, ref: str) -> bool:
        """Whether ``ref`` may exist: False only when it surely does not (no loose file, not packed).

        Saves a git process for the common question "is this work branch new?"; git has the last word.
        """
        common = f"{self.common_dir}/"  # plain strings: asked every job, where a pathlib join costs more
        if os.path.isdir(common + "reftable") or os.path.exists(common + ref):
            return True
        try:
            return b" " + ref.encode() + b"\n" in read_bytes(common + "packed-refs")
        except FileNotFoundError:
            return False

    def head_ref(self) -> str | None:
        """Return the ref HEAD points at (``refs/heads/x``, maybe unborn), or ``None`` when detached."""
        if os.path.isdir(f"{self.common_dir}/reftable"):  # the reftable backend keeps no readable HEAD file
            return self.run("symbolic-ref", "-q", "HEAD", ok=(0, 1))[1].strip() or None
        head = read_bytes(f"{self.git_dir}/HEAD").decode(errors="replace").strip()
        return head[5:].strip() if head.startswith("ref:") else None

    def in_progress(self, names: Collection[str] | None = None) -> str | None:
        """Name the operation under way in this work tree (rebase, merge, ...), or ``None``.

        ``names``: the git dir's entries, when the caller has just listed them (``git_dir_names``)."""
        present = self.git_dir_names() if names is None else names
        return next((what for name, what in _IN_PROGRESS if name in present), None)

    def git_dir_names(self) -> frozenset[str]:
        """The names in this work tree's git dir (one call, not one ``stat`` a name); empty when unreadable."""
        try:
            return frozenset(os.listdir(self.git_dir))
        except OSError:
            return frozenset()


def git_program(path: bytes | None) -> str:
    """git's full path as an exec along ``path`` (git's ``PATH``) would find it; ``"git"`` when none is.

    Looked up once per ``PATH`` for the process's life (a git installed later in an earlier folder of
    ``PATH`` is used by the next runner): given a bare name, ``subprocess`` joins it to every folder of
    ``PATH`` in Python for each git, and the child tries an exec in each folder before git's."""
    found = _PROGRAMS.get(path)
    if found is None:
        search = os.defpath if path is None else os.fsdecode(path)
        which = shutil.which("git", path=search)
        # Only a full path is kept: a relative one (a `.` in PATH) means another file in another folder.
        found = _PROGRAMS[path] = which if which and os.path.isabs(which) else "git"
    return found


_PROGRAMS: dict[bytes | None, str] = {}


def _start(argv: list[str], env: dict[bytes, bytes], stdin: str | None) -> tuple[int, bytes, bytes]:
    """Run ``argv``, fed ``stdin`` when given; return its exit code, stdout and stderr."""
    if stdin is None:
        return _capture(argv, env)
    proc = subprocess.run(argv, env=env, input=stdin.encode(), capture_output=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def _capture(argv: list[str], env: dict[bytes, bytes]) -> tuple[int, bytes, bytes]:
    """Run ``argv`` with no input; return its exit code, stdout and stderr.

    What ``subprocess.run(capture_output=True)`` does, with the pipes read as plain descriptors:
    no file object wrapped around each (three system calls apiece) and no selector set up per call,
    about a third less of the runner's CPU for each git a checkpoint runs (two a job)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    try:
        try:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w)
        finally:
            os.close(out_w)
            os.close(err_w)
        try:
            poller = select.poll()
            for fd in chunks:
                poller.register(fd, select.POLLIN)
            live = len(chunks)
            while live:
                for fd, _ in poller.poll():
                    data = os.read(fd, _CHUNK)
                    if data:
                        chunks[fd].append(data)
                    else:  # end of that output: git closed it (or exited)
                        poller.unregister(fd)
                        live -= 1
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    finally:
        os.close(out_r)
        os.close(err_r)
    return proc.wait(), b"".join(chunks[out_r]), b"".join(chunks[err_r])


_CHUNK = 65536


def _git_env() -> dict[bytes, bytes]:
    """Our environment without the variables that would locate another repository, plus quiet settings.

    As bytes, copied in C where the interpreter keeps it so (``os.environb``): a checkpoint runs
    three git processes a job, and a ``str`` environment costs a Python call per variable to copy and
    two to encode again for each."""
    for name in _LOCATING_VARS:
        if name in os.environ:
            # A GIT_DIR inherited by aq would point every git we run, and every agent aq starts, at
            # another repository than the job's: drop it from aq's own environment.
            del os.environ[name]
    data = getattr(os.environb, "_data", None)
    env = dict(data) if isinstance(data, dict) else dict(os.environb)
    env.update(_QUIET)
    return env


_QUIET = {
    b"GIT_TERMINAL_PROMPT": b"0",
    b"GIT_PAGER": b"cat",
    b"PAGER": b"cat",
    b"GIT_EDITOR": b"true",
    b"GIT_OPTIONAL_LOCKS": b"0",  # status must not rewrite the user's index behind their back
    b"LANGUAGE": b"C",
    b"LC_ALL": b"C",
}


# Directories seen to hold neither a `.git` nor a `HEAD` entry, with their identity and change times
# then. Creating, removing or renaming either name changes the directory's mtime and ctime, so while
# those are the same the directory still holds neither: a folder outside any repository costs one
# `lstat` a level instead of two or three. Only a directory whose times were at least _SETTLED_NS old
# when it was looked at is remembered: a change after that look gets a later time even on a
# filesystem with coarse timestamps (git's "racy" rule), and a ctime cannot be set back by a user.
_PLAIN: dict[str, tuple[int, int, int, int]] = {}
_PLAIN_MAX = 4096
_SETTLED_NS = 3_000_000_000


def find_repo(workdir: Path) -> Repo | None:
    """Return the git work tree containing ``workdir`` by walking up for ``.git`` (no git process).

    ``None`` when there is none, when ``workdir`` does not exist, or when it lies inside a git dir
    (a bare repository has no work tree to checkpoint).
    """
    now = time.time_ns()
    levels = _levels(os.fspath(workdir))
    if levels is None:
        return None
    for directory, st in levels:
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        if _PLAIN.get(directory) == key:
            continue
        found = _look(directory)
        if found is not None:
            return found or None
        if max(st.st_mtime_ns, st.st_ctime_ns) < now - _SETTLED_NS:
            if len(_PLAIN) >= _PLAIN_MAX:
                _PLAIN.clear()
            _PLAIN[directory] = key
    return None


def _levels(path: str) -> list[tuple[str, os.stat_result]] | None:
    """The real path of ``path`` and each of its parents up to ``/``, each with its ``stat``; None
    when it is not a directory. One ``lstat`` a level when no part of the path is a symlink."""
    if os.path.isabs(path) and os.path.normpath(path) == path and "//" not in path:
        parts = path.split("/")[1:] if path != "/" else []
        levels = []
        try:
            for prefix in ("/", *("/" + "/".join(parts[: i + 1]) for i in range(len(parts)))):
                st = os.lstat(prefix)
                if not stat.S_ISDIR(st.st_mode):  # a symlink (or not a directory): resolve it below
                    break
                levels.append((prefix, st))
            else:
                return levels[::-1]
        except OSError:
            return None
    real = os.path.realpath(path)
    levels = []
    for directory in (real, *map(str, Path(real).parents)):
        try:
            st = os.stat(directory)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        levels.append((directory, st))
    return levels


def _look(name: str) -> Repo | None | bool:
    """What the directory ``name`` says: the work tree it is the top of; False when it is a git dir
    (no work tree above counts); None when it is neither (its parent must be asked)."""
    # Plain strings for the two look-ups most levels end with: a pathlib join costs more than the lstat.
    prefix = name if name.endswith("/") else name + "/"
    try:
        mode = os.lstat(prefix + ".git").st_mode
    except OSError:
        try:
            os.lstat(prefix + "HEAD")
        except OSError:
            return None  # neither name: nothing here, whatever lies above
        return False if _is_git_dir(prefix) else None
    if stat.S_ISLNK(mode):  # what it points at decides, as for git
        try:
            mode = os.stat(prefix + ".git").st_mode
        except OSError:
            mode = 0
    directory = Path(name)
    dot_git = directory / ".git"
    if stat.S_ISDIR(mode):
        if _is_git_dir(prefix + ".git/"):
            return Repo(directory, dot_git, _common_dir(dot_git))
    elif stat.S_ISREG(mode):  # a linked worktree or submodule: "gitdir: <path>"
        try:
            text = dot_git.read_text(errors="replace").strip()
        except OSError:
            text = ""
        if text.startswith("gitdir:"):
            git_dir = Path(os.path.realpath(directory / text[7:].strip()))
            if (git_dir / "HEAD").is_file():
                return Repo(directory, git_dir, _common_dir(git_dir))
    return False if _is_git_dir(prefix) else None


def _is_git_dir(prefix: str) -> bool:
    """Whether the folder ``prefix`` (ending in ``/``) holds a ``HEAD`` file, ``objects`` and ``refs``."""
    return os.path.isfile(prefix + "HEAD") and os.path.isdir(prefix + "objects") and os.path.isdir(prefix + "refs")


def _common_dir(git_dir: Path) -> Path:
    try:
        rel = read_bytes(f"{git_dir}/commondir").decode().strip()
    except (OSError, UnicodeDecodeError):
        return git_dir
    return Path(os.path.realpath(git_dir / rel))
