"""``aq show ID`` (one screen per job) and ``aq diff ID`` (the job's work as a diff in its repository)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aq_core.errors import AqError, UsageError

TAIL_BLOCK = 1 << 16
MAX_TAIL = 10_000


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``aq show`` and ``aq diff`` to the command line."""
    p = sub.add_parser("show", help="one job on one screen: figures, work branch, failure, log tail")
    p.add_argument("job", metavar="JOB")
    p.add_argument(
        "--log", type=int, default=20, metavar="N", help="last lines of the final attempt's log (default 20)"
    )
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("diff", help="the job's work as a diff (wip_base..wip_commit) in its repository")
    p.add_argument("job", metavar="JOB")
    p.add_argument("--stat", action="store_true", help="only the diffstat")
    p.set_defaults(func=cmd_diff)


def _located(args: argparse.Namespace) -> tuple[Any, Any]:
    from aq_core.store_open import open_store

    store = open_store(args.root, url=args.store)
    state = store.locate(args.job)
    if state is None:
        raise UsageError(f"no job {args.job!r} in {store.describe()}")
    return store, state


def failure_of(record: Mapping[str, Any], last: Mapping[str, str]) -> dict[str, Any] | None:
    """The job's failure class and what it said, or None for a job that has not failed.

    ``class`` is the result (``retries_exhausted``, ``budget_exceeded``: with ``last_failure``);
    ``detail`` is what the engine's classifier found, else aq's own error line.
    """
    result = record.get("result")
    last_failure = record.get("last_failure")
    if result in (None, "ok", "queued", "running") and not (record["state"] == "inbox" and last_failure):
        return None
    if result in (None, "queued"):
        result = last_failure
    runs = record.get("runs") or []
    detail = next((r["detail"] for r in reversed(runs) if r.get("detail")), None) or record.get("error")
    failure = {"class": result, "last_failure": last_failure if last_failure != result else None, "detail": detail}
    if last.get("failed_dependency"):
        failure["failed_dependency"] = last["failed_dependency"]
    return failure


def describe_failure(failure: Mapping[str, Any]) -> str:
    text = str(failure["class"])
    if failure.get("last_failure"):
        text += f" (last failure: {failure['last_failure']})"
    if failure.get("failed_dependency"):
        text += f" (dependency {failure['failed_dependency']} failed)"
    if failure.get("detail"):
        text += f": {failure['detail']}"
    return text


def tail_lines(path: Path, count: int) -> list[str]:
    """Return the last ``count`` lines of ``path``, reading backwards (logs can be hundreds of MB)."""
    if count <= 0:
        return []
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        pos = fh.tell()
        data = b""
        while pos > 0 and data.count(b"\n") <= count:
            step = min(TAIL_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:]


def render_show(store: Any, job_id: str, state: Any, log_lines: int) -> str:
    """The text of ``aq show``: the insights figures, the work, the failure, the PR, the log tail."""
    from aq_core.insights import job_record, render_job
    from aq_core.workdiff import diffstat, work_of

    meta = store.read_meta(job_id)
    last = meta.last
    record = job_record(job_id, state, meta)
    out = [render_job(record), ""]
    try:
        work = work_of(job_id, last)
        stat = diffstat(work)
        out.append(f"work: {work.branch or '(no branch)'} {work.range} in {work.repo}")
        out.append(stat if stat else "  (no changes)")
    except AqError as exc:
        out.append(f"work: {str(exc).removeprefix(f'job {job_id!r} ')}")
    failure = failure_of(record, last)
    if failure:
        out.append(f"failure: {describe_failure(failure)}")
    if last.get("pr_url"):
        out.append(f"pull request: {last['pr_url']}")
    elif last.get("pr_error"):
        out.append(f"pull request: not opened: {last['pr_error']}")
    attempt = meta.integer("attempts")
    if log_lines > 0 and attempt > 0:
        path = store.files.log_path(job_id, attempt)
        out.append("")
        try:
            lines = tail_lines(path, min(log_lines, MAX_TAIL))
        except FileNotFoundError:
            out.append(f"no log of attempt {attempt} on this host")
        except OSError as exc:
            out.append(f"cannot read the log of attempt {attempt}: {exc.strerror}")
        else:
            if lines:
                out.append(
                    f"last {len(lines)} line{'s' if len(lines) != 1 else ''} of attempt {attempt}'s log ({path}):"
                )
                out.extend(lines)
            else:
                out.append(f"attempt {attempt}'s log is empty ({path})")
    return "\n".join(out)


def cmd_show(args: argparse.Namespace) -> int:
    if args.log < 0:
        raise UsageError(f"--log: {args.log}: expected 0 or more lines")
    store, state = _located(args)
    print(render_show(store, args.job, state, args.log))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    import subprocess

    from aq_core.workdiff import diff_argv, work_of

    store, _ = _located(args)
    work = work_of(args.job, store.read_meta(args.job).last)
    sys.stdout.flush()
    try:
        code = subprocess.run(diff_argv(work, args.stat), cwd=work.repo).returncode
    except FileNotFoundError:
        raise AqError("git is not installed (not found on PATH)") from None
    # A reader that stopped early (``aq diff ID | head``) is not a failure.
    return 0 if code in (0, -13, 141) else 1
