"""WIP checkpoints in git (the built-in ``git`` plugin): the job's work is committed to
``aq/wip/<id>`` on every exit path; in-place jobs in one work tree are serialised."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aq_core.git_repo import GitFailed, Repo, Status, find_repo
from aq_core.git_switch import clear_stale_locks, switch_new
from aq_core.hookspecs import hookimpl
from aq_core.wip_commit import WIP_PREFIX, commit_tree, commit_work, set_wip_ref, snapshot

# The folder (in the repository's common git dir) that holds aq's own worktrees, one per job.
WORKTREES = "aq-worktrees"

if TYPE_CHECKING:
    from aq_core.checkpoint import CheckpointContext

__all__ = ["WIP_PREFIX", "checkpoint", "find_repo", "work_lock"]


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
    if stage == "finish" and f"/{WORKTREES}/{job_id}" not in os.fspath(workdir):
        return None  # only aq's own worktree is removed at the end; a job that ran in place needs no look
    repo = find_repo(Path(workdir))
    if repo is None:
        if stage == "prepare":
            log("wip: cwd not a git repo")
        elif meta.get("wip_branch"):
            log(f"wip: {workdir} is no longer in a git work tree; nothing committed")
        return None
    branch = WIP_PREFIX + job_id
    # Nothing but refs/heads/aq/wip/* is ever written (see set_wip_ref), so main, master and the protected
    # names are safe by construction; a work branch that is itself protected is left alone too.
    if not _branch_ok(job_id) or branch in protected:
        log(f"wip: {branch!r} cannot be used as a work branch; no checkpoint")
        return None
    out: dict[str, str] = {}
    try:
        if stage == "prepare":
            _prepare(repo, branch, job_id, Path(workdir), meta, isolation, log, out, ctx.base_commit)
        elif stage == "commit":
            commit_work(repo, branch, job_id, result, meta, log, out)
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
    base_commit: str | None = None,
) -> None:
    ref = "refs/heads/" + branch
    worktree = repo.common_dir / WORKTREES / job_id
    status: Status | None = None
    if isolation == "inplace":  # whether the user's checkout has changes decides how the job starts
        clear_stale_locks(repo, branch)
        status = repo.status()
        head = status.head
        tip = repo.resolve(ref)[0] if repo.may_have_ref(ref) else None
    else:
        head, tip = repo.resolve("HEAD^{commit}", ref)
    head_ref = repo.head_ref()
    out["wip_branch"] = branch
    out["workdir"] = str(cwd)

    if tip is not None:  # resume: the job continues from its checkpoint
        out["wip_base"] = meta.get("wip_base") or tip
        if meta.get("wip_pre"):
            out["wip_pre"] = meta["wip_pre"]
        short = tip[:10]
        if (worktree / ".git").exists():
            if _use_worktree(repo, branch, worktree, cwd, out, log, fresh=False):
                log(f"wip: resuming {branch} at {short} in its worktree {worktree}")
        elif head_ref == ref:
            log(f"wip: resuming {branch} at {short}")
        elif isolation == "worktree":
            if _use_worktree(repo, branch, worktree, cwd, out, log):
                log(f"wip: resuming {branch} at {short} in worktree {worktree}")
        elif (busy := repo.in_progress()) is not None:
            log(
                f"wip: repo is in the middle of {busy}: HEAD left as is; snapshots go to {branch} via a temporary index"
            )
        elif status is not None and not status.clean:
            # Everything aq made is committed on the branch, so these are the user's: never mix or overwrite them.
            if _use_worktree(repo, branch, worktree, cwd, out, log):
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
                if _use_worktree(repo, branch, worktree, cwd, out, log):
                    log(f"wip: checking out {branch} would overwrite files; this attempt runs in worktree {worktree}")
        return

    # Building on a parent's work: its checkpoint, when that commit is in this repository.
    parent = repo.resolve(base_commit + "^{commit}")[0] if base_commit else None
    if parent is not None and parent != head:
        _start_from(repo, branch, ref, worktree, cwd, parent, status, log, out)
        return
    # Fresh start: the branch begins at HEAD (an empty root commit when the repo has none yet).
    if head is None:
        empty = repo.git("mktree", stdin="").strip()
        head = commit_tree(repo, empty, [], f"aq wip: {job_id} (start)")
        set_wip_ref(repo, ref, head, None, f"aq: start {branch} (repo had no commit)")
        log(f"wip: the repo has no commit yet; {branch} starts from an empty root commit")
        created = True
    else:
        created = False
    out["wip_base"] = head
    if status is None:  # in aq's own worktree: the job starts from the commit alone
        out["wip_pre"] = head
        if _use_worktree(repo, branch, worktree, cwd, out, log, base=None if created else head):
            log(f"wip: this job runs in worktree {worktree} on {branch}")
        return
    # What the user had uncommitted is the job's starting point, not its work: record it to subtract later.
    if not status.clean:
        pre, index, _ = snapshot(repo, job_id, log)
        index.unlink(missing_ok=True)
        out["wip_pre"] = pre
    else:
        out["wip_pre"] = head  # a commit: the job's figures need no tree of it (see wip_commit)
    names = repo.git_dir_names()  # listed once for both questions below
    if (busy := repo.in_progress(names)) is not None:
        if not created:
            set_wip_ref(repo, ref, head, None, f"aq: start {branch}")
        log(f"wip: repo is in the middle of {busy}: HEAD left as is; snapshots go to {branch} via a temporary index")
        return
    if not created:
        # Creates the branch at HEAD (never an existing one) and points HEAD at it. The commit is the
        # same, so neither the index nor the files are read or written: on the files ref backend aq
        # writes the two refs and their reflog lines as git does; elsewhere one git does it.
        if switch_new(repo, branch, head, names):
            return
        with contextlib.suppress(GitFailed):
            repo.git("switch", "-q", "--no-track", "-c", branch)
            return
        if not repo.may_have_ref(ref):  # a git without `switch`, or a lock held: the same in two steps
            set_wip_ref(repo, ref, head, None, f"aq: start {branch}")
    # Same commit, so pointing HEAD at the new branch leaves the index and the files exactly as they are.
    repo.git("symbolic-ref", "-m", f"aq: start {branch}", "HEAD", ref)


def _start_from(
    repo: Repo,
    branch: str,
    ref: str,
    worktree: Path,
    cwd: Path,
    start: str,
    status: Status | None,
    log: Callable[[str], None],
    out: dict[str, str],
) -> None:
    """Start ``branch`` at ``start`` (the job it builds on left its work there), in a worktree or checked out.

    ``status`` is the user's checkout's, for an in-place job; ``None`` for a worktree job.
    """
    out["wip_base"] = start
    out["wip_pre"] = start
    short = start[:10]
    if status is None:
        if _use_worktree(repo, branch, worktree, cwd, out, log, base=start):
            log(f"wip: this job runs in worktree {worktree} on {branch}, from {short} (the work of the job it follows)")
        return
    set_wip_ref(repo, ref, start, None, f"aq: start {branch} from {short}")
    if repo.in_progress() is None and status.clean:
        try:  # refuses rather than overwrite anything, ignored files included
            with _worktrees_locked(repo):
                repo.git("switch", "-q", "--no-guess", "--no-overwrite-ignore", branch)
            log(f"wip: {branch} starts from {short} (the work of the job it follows), checked out")
            return
        except GitFailed:
            pass
    # The user's checkout is busy or has changes aq did not make: never switch it under them.
    if _use_worktree(repo, branch, worktree, cwd, out, log, fresh=False):
        log(f"wip: {branch} starts from {short} (the work of the job it follows) in worktree {worktree}")


def _use_worktree(
    repo: Repo,
    branch: str,
    path: Path,
    cwd: Path,
    out: dict[str, str],
    log: Callable[[str], None],
    *,
    fresh: bool = True,
    base: str | None = None,
) -> bool:
    """Run the job in aq's own worktree on ``branch`` (created, or reused when it exists), in the
    folder that is ``cwd``'s in the user's checkout.

    When that fails, the engine must not run in the user's checkout instead: record ``wip_error``
    (the runner does not start the engine) and return False.
    """
    # Here, not for every job: resolving cwd costs an lstat a level, and only a worktree needs it.
    prefix = Path(os.path.realpath(cwd)).relative_to(repo.top)
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
    fd = os.open(repo.common_dir / f"{WORKTREES}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_worktree(repo: Repo, job_id: str, workdir: Path, log: Callable[[str], None], out: dict[str, str]) -> None:
    """Remove aq's own worktree of a finished job: every change is committed on its branch."""
    worktree = repo.common_dir / WORKTREES / job_id
    if not worktree.exists() or workdir.resolve() != worktree.resolve():
        return  # in place, or a worktree aq did not make: nothing of ours to remove
    with _worktrees_locked(repo):
        repo.git("worktree", "remove", "--force", str(worktree))
    log(f"wip: removed the job's worktree; its work is on {WIP_PREFIX}{job_id}")
    out["worktree_removed"] = "1"
