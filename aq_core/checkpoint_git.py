"""WIP checkpoints in git (the built-in ``git`` plugin): the job's work is committed to
``aq/wip/<id>`` on every exit path; in-place jobs in one work tree are serialised."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aq_core.git_repo import FALLBACK_IDENTITY, GitFailed, Repo, find_repo
from aq_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from aq_core.checkpoint import CheckpointContext

__all__ = ["WIP_PREFIX", "checkpoint", "find_repo", "work_lock"]

WIP_PREFIX = "aq/wip/"


def _branch_ok(job_id: str) -> bool:
    """Whether ``aq/wip/<job_id>`` is a valid branch name (job ids are already [A-Za-z0-9._-])."""
    return ".." not in job_id and not job_id.endswith((".", ".lock")) and "/." not in job_id


@hookimpl
def work_lock(workdir: Path, isolation: str) -> str | None:
    """Serialise in-place jobs in one work tree: ``git:<realpath of its top level>``."""
    if isolation != "inplace":
        return None
    repo = find_repo(workdir)
    return None if repo is None else f"git:{repo.top}"


@hookimpl
def checkpoint(stage: str, ctx: CheckpointContext) -> dict[str, str] | None:
    """Create or resume ``aq/wip/<id>`` at ``prepare``; snapshot the work tree onto it at ``commit``."""
    job_id, workdir, result, meta, log = ctx.job_id, ctx.workdir, ctx.result, ctx.meta, ctx.log
    isolation, protected = ctx.isolation, ctx.protected
    repo = find_repo(Path(workdir))
    if repo is None:
        if stage == "prepare":
            log("wip: cwd not a git repo")
        elif meta.get("wip_branch"):
            log(f"wip: {workdir} is no longer in a git work tree; nothing committed")
        return None
    branch = WIP_PREFIX + job_id
    # Nothing but refs/heads/aq/wip/* is ever written (see _set_ref), so main, master and the protected
    # names are safe by construction; a work branch that is itself protected is left alone too.
    if not _branch_ok(job_id) or branch in protected:
        log(f"wip: {branch!r} cannot be used as a work branch; no checkpoint")
        return None
    out: dict[str, str] = {}
    try:
        if stage == "prepare":
            _prepare(repo, branch, job_id, Path(workdir), meta, isolation, log, out)
        elif stage == "commit":
            _commit(repo, branch, job_id, result, meta, log, out)
        elif stage == "finish":
            _remove_worktree(repo, job_id, Path(workdir), log, out)
        else:
            return None
    except (GitFailed, OSError) as exc:
        # Never raise for an unusual work tree: report it and return what was recorded so far.
        log(f"wip: {stage}: {exc}")
    return out or None


# --- prepare -------------------------------------------------------------------------------------


def _prepare(
    repo: Repo,
    branch: str,
    job_id: str,
    cwd: Path,
    meta: Mapping[str, str],
    isolation: str,
    log: Callable[[str], None],
    out: dict[str, str],
) -> None:
    ref = "refs/heads/" + branch
    prefix = Path(os.path.realpath(cwd)).relative_to(repo.top)
    worktree = repo.common_dir / "aq-worktrees" / job_id
    head, head_tree, tip = repo.resolve("HEAD^{commit}", "HEAD^{tree}", ref)
    head_ref = repo.head_ref()
    out["wip_branch"] = branch
    out["workdir"] = str(cwd)

    if tip is not None:  # resume: the job continues from its checkpoint
        out["wip_base"] = meta.get("wip_base") or tip
        if meta.get("wip_pre"):
            out["wip_pre"] = meta["wip_pre"]
        short = tip[:10]
        if (worktree / ".git").exists():
            if _use_worktree(repo, branch, worktree, prefix, out, log, fresh=False):
                log(f"wip: resuming {branch} at {short} in its worktree {worktree}")
        elif head_ref == ref:
            log(f"wip: resuming {branch} at {short}")
        elif isolation == "worktree":
            if _use_worktree(repo, branch, worktree, prefix, out, log):
                log(f"wip: resuming {branch} at {short} in worktree {worktree}")
        elif (busy := repo.in_progress()) is not None:
            log(
                f"wip: repo is in the middle of {busy}: HEAD left as is; snapshots go to {branch} via a temporary index"
            )
        elif _dirty(repo):
            # Everything aq made is committed on the branch, so these are the user's: never mix or overwrite them.
            if _use_worktree(repo, branch, worktree, prefix, out, log):
                log(
                    f"wip: {repo.top} has uncommitted changes aq did not make; "
                    f"this attempt runs in worktree {worktree} on {branch} (at {short})"
                )
        else:
            try:  # refuses rather than overwrite anything, ignored files included
                with _worktrees_locked(repo):
                    repo.git("switch", "-q", "--no-guess", "--no-overwrite-ignore", branch)
                log(f"wip: resuming {branch} at {short} (checked out)")
            except GitFailed:
                if _use_worktree(repo, branch, worktree, prefix, out, log):
                    log(f"wip: checking out {branch} would overwrite files; this attempt runs in worktree {worktree}")
        return

    # Fresh start: the branch begins at HEAD (an empty root commit when the repo has none yet).
    if head is None:
        empty = repo.git("mktree", stdin="").strip()
        head = _commit_tree(repo, empty, [], f"aq wip: {job_id} (start)")
        head_tree = empty
        _set_ref(repo, ref, head, None, f"aq: start {branch} (repo had no commit)")
        log(f"wip: the repo has no commit yet; {branch} starts from an empty root commit")
        created = True
    else:
        created = False
    out["wip_base"] = head
    assert head_tree is not None
    if isolation == "worktree":
        out["wip_pre"] = head_tree
        if _use_worktree(repo, branch, worktree, prefix, out, log, base=None if created else head):
            log(f"wip: this job runs in worktree {worktree} on {branch}")
        return
    # What the user had uncommitted is the job's starting point, not its work: record it to subtract later.
    if _dirty(repo):
        pre, index = _snapshot(repo, job_id, log)
        index.unlink(missing_ok=True)
        out["wip_pre"] = pre
    else:
        out["wip_pre"] = head_tree
    if not created:
        _set_ref(repo, ref, head, None, f"aq: start {branch}")
    if (busy := repo.in_progress()) is not None:
        log(f"wip: repo is in the middle of {busy}: HEAD left as is; snapshots go to {branch} via a temporary index")
        return
    # Same commit, so pointing HEAD at the new branch leaves the index and the files exactly as they are.
    repo.git("symbolic-ref", "-m", f"aq: start {branch}", "HEAD", ref)


def _use_worktree(
    repo: Repo,
    branch: str,
    path: Path,
    prefix: Path,
    out: dict[str, str],
    log: Callable[[str], None],
    *,
    fresh: bool = True,
    base: str | None = None,
) -> bool:
    """Run the job in aq's own worktree on ``branch`` (created, or reused when it exists).

    When that fails, the engine must not run in the user's checkout instead: record ``wip_error``
    (the runner does not start the engine) and return False.
    """
    try:
        with _worktrees_locked(repo):
            if fresh or not (path / ".git").exists():
                _add_worktree(repo, branch, path, base)
            else:
                wt = find_repo(path)
                if wt is not None and wt.head_ref() != "refs/heads/" + branch:
                    with contextlib.suppress(GitFailed):  # snapshots still land on the branch if this refuses
                        wt.git("switch", "-q", "--no-guess", "--no-overwrite-ignore", branch)
        workdir = path / prefix
        workdir.mkdir(parents=True, exist_ok=True)  # the job's subdirectory may hold no tracked file
    except (GitFailed, OSError) as exc:
        out["wip_error"] = f"cannot set up worktree {path} on {branch}: {exc}"
        log(f"wip: {out['wip_error']}; the engine must not run in {repo.top}")
        return False
    out["workdir"] = str(workdir)
    return True


def _add_worktree(repo: Repo, branch: str, path: Path, base: str | None) -> None:
    args = ["worktree", "add", "-q"]
    args += ["-b", branch, str(path), base] if base else [str(path), branch]
    try:
        repo.git(*args)
    except GitFailed as exc:
        if "missing but already registered" not in exc.stderr:
            raise
        # aq's worktree was registered earlier and its directory deleted: only --force re-adds it.
        # (Never for a branch checked out elsewhere: that refusal stands.)
        repo.git("worktree", "add", "-q", "-f", str(path), branch)


@contextlib.contextmanager
def _worktrees_locked(repo: Repo) -> Iterator[None]:
    """Hold aq's per-repository lock while worktrees are added or branches checked out.

    ``git worktree add`` and ``git switch`` read every worktree's admin dir; one being created by
    another runner at that moment makes them fail ("failed to read .../commondir").
    """
    fd = os.open(repo.common_dir / "aq-worktrees.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_worktree(repo: Repo, job_id: str, workdir: Path, log: Callable[[str], None], out: dict[str, str]) -> None:
    """Remove aq's own worktree of a finished job: every change is committed on its branch."""
    worktree = repo.common_dir / "aq-worktrees" / job_id
    if not worktree.exists() or workdir.resolve() != worktree.resolve():
        return  # in place, or a worktree aq did not make: nothing of ours to remove
    with _worktrees_locked(repo):
        repo.git("worktree", "remove", "--force", str(worktree))
    log(f"wip: removed the job's worktree; its work is on {WIP_PREFIX}{job_id}")
    out["worktree_removed"] = "1"


def _dirty(repo: Repo) -> bool:
    """Whether the work tree differs from HEAD (tracked changes or untracked, not ignored, files)."""
    return bool(repo.git("status", "--porcelain", "-z", "--untracked-files=normal", "--no-renames"))


# --- commit --------------------------------------------------------------------------------------


def _commit(
    repo: Repo,
    branch: str,
    job_id: str,
    result: str | None,
    meta: Mapping[str, str],
    log: Callable[[str], None],
    out: dict[str, str],
) -> None:
    ref = "refs/heads/" + branch
    base = meta.get("wip_base") or "HEAD"
    pre = meta.get("wip_pre") or base
    tip, tip_tree, base_commit, pre_tree = repo.resolve(ref, ref + "^{tree}", base + "^{commit}", pre + "^{tree}")
    head_ref = repo.head_ref()
    on_branch = head_ref == ref
    tree, index = _snapshot(repo, job_id, log)
    try:
        if tree == tip_tree:
            new = tip
        else:
            parent = tip or base_commit  # the agent may have deleted the branch: start it again from the base
            message = f"aq wip: {job_id} ({result or 'checkpoint'})"
            new = _commit_tree(repo, tree, [parent] if parent else [], message)
            _set_ref(repo, ref, new, tip, message)
        if on_branch:
            _install_index(repo, index, log)
    finally:
        index.unlink(missing_ok=True)
    assert new is not None
    files, added, deleted = _numstat(repo, pre_tree or tip_tree or tree, tree)
    out.update(wip_commit=new, files_changed=str(files), lines_added=str(added), lines_deleted=str(deleted))

    if not on_branch:
        where = f"on {head_ref.removeprefix('refs/heads/')}" if head_ref else "detached"
        busy = repo.in_progress()
        why = f"repo is in the middle of {busy}; " if busy else ""
        log(f"wip: {why}HEAD is {where}, not on {branch}: snapshot committed through a temporary index, HEAD not moved")
    if new == tip:
        log(f"wip: nothing new to commit; {branch} stays at {new[:10]}")
    else:
        log(f"wip: committed {new[:10]} to {branch} ({files} file{'' if files == 1 else 's'}, +{added} -{deleted})")


def _snapshot(repo: Repo, job_id: str, log: Callable[[str], None]) -> tuple[str, Path]:
    """Write the work tree (tracked and untracked, not ignored) as a tree through a temporary index.

    The temporary index starts as a copy of the real one, so unchanged files are not hashed again
    and the real index is never touched. Returns the tree id and the temporary index (caller removes).
    """
    _sweep_indexes(repo.git_dir)
    index = repo.git_dir / f"aq-index.{job_id}.{os.getpid()}.{secrets.token_hex(4)}"
    real = repo.git_dir / "index"
    if real.exists():
        shutil.copyfile(real, index)
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        # --ignore-errors: an unreadable file must not cost the snapshot of every other file.
        code, _, err = repo.run("add", "-A", "--ignore-errors", env=env, ok=(0, 1))
        if code:
            skipped = [line for line in err.splitlines() if line.startswith("error:")]
            log(f"wip: some files could not be read and are not in the snapshot: {'; '.join(skipped) or err}")
        tree = repo.git("write-tree", env=env).strip()
    except BaseException:
        index.unlink(missing_ok=True)
        raise
    return tree, index


def _sweep_indexes(git_dir: Path) -> None:
    """Remove temporary indexes left by an aq process that was killed (its pid is gone)."""
    for leftover in git_dir.glob("aq-index.*"):
        try:
            pid = int(leftover.name.removesuffix(".lock").rsplit(".", 2)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except (ValueError, IndexError, OSError):
            continue  # not ours to judge, or alive (possibly a reused pid): leave it


def _install_index(repo: Repo, index: Path, log: Callable[[str], None]) -> None:
    """Make the snapshot's index the real one, so ``git status`` on the branch shows it clean.

    Takes ``index.lock`` as git does; if someone holds it, the real index is left alone.
    """
    lock = repo.git_dir / "index.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        log("wip: index.lock is held; the index was not refreshed (the files and the commit are complete)")
        return
    try:
        os.replace(index, repo.git_dir / "index")
    finally:
        os.close(fd)
        lock.unlink()


def _commit_tree(repo: Repo, tree: str, parents: list[str], message: str) -> str:
    """Create a commit object (no hooks, no signing) with the user's identity, else aq's."""
    args = ["commit-tree", "--no-gpg-sign", tree]
    for parent in parents:
        args += ["-p", parent]
    try:
        return repo.git(*args, stdin=message + "\n").strip()
    except GitFailed as exc:
        if "identity unknown" not in exc.stderr and "ident name" not in exc.stderr:
            raise
    fallback = {k: v for k, v in FALLBACK_IDENTITY.items() if not os.environ.get(k)}
    return repo.git(*args, stdin=message + "\n", env=fallback).strip()


def _set_ref(repo: Repo, ref: str, new: str, old: str | None, message: str) -> None:
    """Move a work branch, only if it is still at ``old`` (``None``: only if it does not exist)."""
    if not ref.startswith("refs/heads/" + WIP_PREFIX):  # the one place aq writes a branch
        raise GitFailed(f"refusing to move {ref}: aq only writes refs/heads/{WIP_PREFIX}*")
    repo.git("update-ref", "-m", message, ref, new, old or "")


def _numstat(repo: Repo, old: str, new: str) -> tuple[int, int, int]:
    """Count files changed and lines added/deleted between two trees (renames once, binary as 0 lines)."""
    if old == new:
        return 0, 0, 0
    out = repo.git("diff-tree", "-r", "-z", "--numstat", "-M", old, new)
    files = added = deleted = 0
    fields = iter(out.split("\0"))
    for field in fields:
        if "\t" not in field:
            continue
        plus, minus, path = field.split("\t", 2)
        if not path:  # a rename: the old and new paths follow as their own fields
            next(fields, None)
            next(fields, None)
        files += 1
        added += int(plus) if plus.isdigit() else 0
        deleted += int(minus) if minus.isdigit() else 0
    return files, added, deleted
