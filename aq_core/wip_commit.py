"""The git plugin's commit stage: a snapshot of the work tree committed to ``aq/wip/<id>`` through a
temporary index, with the fewest git processes (one ``git status`` when the agent changed nothing)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from aq_core.git_repo import FALLBACK_IDENTITY, GitFailed, Repo

__all__ = ["WIP_PREFIX", "commit_tree", "commit_work", "set_wip_ref", "snapshot"]

WIP_PREFIX = "aq/wip/"


def commit_work(
    repo: Repo,
    branch: str,
    job_id: str,
    result: str | None,
    meta: Mapping[str, str],
    log: Callable[[str], None],
    out: dict[str, str],
) -> None:
    """Commit everything in the work tree (tracked and untracked, not ignored) to ``branch``; record
    ``wip_commit`` and the job's figures against where it started (``wip_pre``, else ``wip_base``)."""
    ref = "refs/heads/" + branch
    base = meta.get("wip_base") or "HEAD"
    pre = meta.get("wip_pre") or base
    head_ref = repo.head_ref()
    on_branch = head_ref == ref
    status = None
    if on_branch:
        with contextlib.suppress(GitFailed):  # git could not tell: take the snapshot, which may still work
            status = repo.status(submodule_files=False)
    if status is not None and status.head is not None and status.clean:
        # HEAD is on the branch and the work tree is its tip's tree: nothing to commit, index untouched.
        tip = status.head
        _record(repo, out, pre, tip, fallback=tip, same=tip == base and pre == base)
        log(f"wip: nothing new to commit; {branch} stays at {tip[:10]}")
        return
    if status is not None and status.head is not None and status.surely_changed():
        tip, tip_tree, base_commit = status.head, None, None  # a new commit on the tip: no tree to compare
    else:
        tip, tip_tree, base_commit = repo.resolve(ref, ref + "^{tree}", base + "^{commit}")
    tree, index, complete = snapshot(repo, job_id, log)
    try:
        if tip is not None and tip_tree is None and not complete:
            (tip_tree,) = repo.resolve(tip + "^{tree}")  # an unreadable file may leave the tree as it was
        if tree == tip_tree:
            new = tip
        else:
            parent = tip or base_commit  # the agent may have deleted the branch: start it again from the base
            message = f"aq wip: {job_id} ({result or 'checkpoint'})"
            new = commit_tree(repo, tree, [parent] if parent else [], message)
            set_wip_ref(repo, ref, new, tip, message)
        if on_branch:
            _install_index(repo, index, log)
    finally:
        index.unlink(missing_ok=True)
    assert new is not None
    files = _record(repo, out, pre, tree, fallback=tip_tree or tip or tree, wip_commit=new)

    if not on_branch:
        where = f"on {head_ref.removeprefix('refs/heads/')}" if head_ref else "detached"
        busy = repo.in_progress()
        why = f"repo is in the middle of {busy}; " if busy else ""
        log(f"wip: {why}HEAD is {where}, not on {branch}: snapshot committed through a temporary index, HEAD not moved")
    if new == tip:
        log(f"wip: nothing new to commit; {branch} stays at {new[:10]}")
    else:
        added, deleted = out["lines_added"], out["lines_deleted"]
        log(f"wip: committed {new[:10]} to {branch} ({files} file{'' if files == 1 else 's'}, +{added} -{deleted})")


def _record(
    repo: Repo,
    out: dict[str, str],
    pre: str,
    new: str,
    *,
    fallback: str,
    same: bool = False,
    wip_commit: str | None = None,
) -> int:
    """Record ``wip_commit`` and the figures of ``pre``..``new`` (``same``: known equal, no git); return files."""
    out["wip_commit"] = wip_commit or new  # first: the commit is made, whatever counting it costs
    try:
        files, added, deleted = (0, 0, 0) if same else _numstat(repo, pre, new)
    except GitFailed:  # where the job started is gone (e.g. pruned): count from the last checkpoint
        files, added, deleted = _numstat(repo, fallback, new)
    out.update(files_changed=str(files), lines_added=str(added), lines_deleted=str(deleted))
    return files


def snapshot(repo: Repo, job_id: str, log: Callable[[str], None]) -> tuple[str, Path, bool]:
    """Write the work tree (tracked and untracked, not ignored) as a tree through a temporary index.

    The temporary index starts as a copy of the real one, so unchanged files are not hashed again
    and the real index is never touched. Returns the tree id, the temporary index (the caller
    removes it) and whether every file could be read.
    """
    _sweep_indexes(repo.git_dir)
    index = repo.git_dir / f"aq-index.{job_id}.{os.getpid()}.{secrets.token_hex(4)}"
    real = repo.git_dir / "index"
    if real.exists():
        # With the index's own time: git trusts an entry whose file matches its size and times unless
        # the entry is as new as the index file. A newer copy would hide a file rewritten at the same
        # size in the second of its last ``git add``, and the snapshot would keep its old content.
        shutil.copy2(real, index)
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
    return tree, index, code == 0


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


def commit_tree(repo: Repo, tree: str, parents: list[str], message: str) -> str:
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


def set_wip_ref(repo: Repo, ref: str, new: str, old: str | None, message: str) -> None:
    """Move a work branch, only if it is still at ``old`` (``None``: only if it does not exist)."""
    if not ref.startswith("refs/heads/" + WIP_PREFIX):  # the one place aq writes a branch
        raise GitFailed(f"refusing to move {ref}: aq only writes refs/heads/{WIP_PREFIX}*")
    repo.git("update-ref", "-m", message, ref, new, old or "")


def _numstat(repo: Repo, old: str, new: str) -> tuple[int, int, int]:
    """Count files changed and lines added/deleted between two tree-ish (renames once, binary as 0 lines)."""
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
