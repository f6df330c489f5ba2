"""Pull requests, the human gate: push ``aq/wip/<id>`` and open a pull request with the GitHub CLI.

``aq pr ID`` does it by hand; a job with ``pr: draft`` or ``pr: ready`` has it done when it ends
``ok`` (``after_done``, called as the job's ``job_finished`` notification is sent, on the
notifier's background threads, so it never holds up the runner). Only the job's own branch is
pushed, with an explicit refspec and never with force; aq never merges. The body holds the
job's figures and diffstat, never its prompt. ``pr_url`` (or ``pr_error``) is appended to meta;
a failure is one logged line and the job stays where it is.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from aq_core.errors import AqError, UsageError

PUSH_TIMEOUT = 300.0
GH_TIMEOUT = 300.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``aq pr`` to the command line."""
    p = sub.add_parser("pr", help="push the job's aq/wip/<id> branch and open a pull request (gh)")
    p.add_argument("job", metavar="JOB")
    p.add_argument("--draft", action="store_true", help="open it as a draft")
    p.add_argument("--base", metavar="BRANCH", help="the branch to merge into (default: the repository's default)")
    p.add_argument("--remote", default="origin", metavar="NAME", help="the git remote to push to (default origin)")
    p.set_defaults(func=cmd_pr)


def cmd_pr(args: argparse.Namespace) -> int:
    from aq_core.journal import Journal
    from aq_core.store import State
    from aq_core.store_open import open_store

    for option, value in (("--remote", args.remote), ("--base", args.base)):
        if value is not None and (not value or value.startswith("-") or any(c.isspace() for c in value)):
            raise UsageError(f"{option}: {value!r}: not a {'remote' if option == '--remote' else 'branch'} name")
    store = open_store(args.root, url=args.store)
    state = store.locate(args.job)
    if state is None:
        raise UsageError(f"no job {args.job!r} in {store.describe()}")
    if state not in (State.DONE, State.FAILED):
        raise AqError(f"job {args.job!r} is in {state.value}/: a pull request is opened for a finished job")
    with open(os.devnull, "w") as quiet:  # the line goes to the job's log; the user sees it on stderr
        journal = Journal(store, out=quiet)
        url, note = open_pr(
            store, args.job, draft=args.draft, base=args.base, remote=args.remote, log=journal.for_job(args.job)
        )
    print(f"{url}{f' ({note})' if note else ''}")
    return 0


def gh_binary() -> str | None:
    """The GitHub CLI: ``AQ_GH_BIN``, else ``gh`` on ``PATH``."""
    import shutil

    configured = os.environ.get("AQ_GH_BIN")
    return shutil.which(configured) if configured else shutil.which("gh")


def open_pr(
    store: Any,
    job_id: str,
    *,
    draft: bool,
    base: str | None = None,
    remote: str = "origin",
    log: Callable[[str], None],
) -> tuple[str, str]:
    """Push the job's branch and open its pull request; return (url, note).

    A pull request already recorded is not opened twice: the branch is pushed again (new commits
    reach it) and its URL returned. Any failure appends ``pr_error``, logs one line and raises
    ``AqError`` with that line.
    """
    import subprocess

    from aq_core.workdiff import work_of

    def fail(message: str) -> AqError:
        store.append_meta(job_id, {"pr_error": message})
        log(f"pr: {message}")
        return AqError(f"pr: {job_id}: {message}")

    last = store.read_meta(job_id).last
    try:
        work = work_of(job_id, last)
    except AqError as exc:
        raise fail(str(exc).removeprefix(f"job {job_id!r}").lstrip(": ")) from None
    branch = f"aq/wip/{job_id}"
    if work.branch != branch:
        raise fail(f"its work branch is {work.branch!r}, not {branch!r}: aq pushes only its own aq/wip/ branches")
    pushed = _push(work.repo, remote, branch)
    if pushed:
        raise fail(f"git push {remote} {branch} failed: {pushed}")
    if last.get("pr_url"):
        store.append_meta(job_id, {"pr_pushed": work.commit, "pr_error": ""})
        log(f"pr: pushed {branch} to {remote}; its pull request is {last['pr_url']}")
        return last["pr_url"], "already open; branch pushed"
    gh = gh_binary()
    if gh is None:
        where = os.environ.get("AQ_GH_BIN") or "gh"
        raise fail(f"the GitHub CLI ({where}) is not installed: install gh or set AQ_GH_BIN")
    argv = [gh, "pr", "create", "--head", branch, "--title", f"aq: {job_id}", "--body-file", "-"]
    argv += ["--draft"] if draft else []
    argv += ["--base", base] if base else []
    try:
        proc = subprocess.run(
            argv,
            cwd=work.repo,
            input=pr_body(store, job_id, work),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=GH_TIMEOUT,
            env=dict(os.environ, GH_PROMPT_DISABLED="1", NO_COLOR="1", GIT_TERMINAL_PROMPT="0"),
        )
    except subprocess.TimeoutExpired:
        raise fail(f"gh pr create took more than {GH_TIMEOUT:g}s") from None
    except OSError as exc:
        raise fail(f"cannot run {gh}: {exc.strerror}") from None
    url = next((w for w in reversed(proc.stdout.split()) if w.startswith(("https://", "http://"))), None)
    if proc.returncode != 0 or url is None:
        from aq_core.workdiff import first_line

        said = first_line(proc.stderr) if proc.stderr.strip() else "it printed no pull request URL"
        raise fail(f"gh pr create exited {proc.returncode}: {said}")
    store.append_meta(job_id, {"pr_url": url, "pr_draft": draft, "pr_pushed": work.commit, "pr_error": ""})
    log(f"pr: opened {url} ({'draft' if draft else 'ready for review'}) from {branch}")
    return url, ""


def _push(repo: Any, remote: str, branch: str) -> str | None:
    """Push exactly ``refs/heads/<branch>`` (fast-forward only, no tags, no submodules); None when it worked."""
    import subprocess

    from aq_core.workdiff import first_line, git_env

    ref = f"refs/heads/{branch}"
    argv = ["git", "-c", "push.followTags=false", "-c", "push.recurseSubmodules=no", "push", "--no-follow-tags"]
    try:
        proc = subprocess.run(
            [*argv, remote, f"{ref}:{ref}"],
            cwd=repo,
            env=git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PUSH_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"it took more than {PUSH_TIMEOUT:g}s"
    except OSError as exc:
        return f"cannot run git: {exc.strerror}"
    return None if proc.returncode == 0 else first_line(proc.stderr)


def pr_body(store: Any, job_id: str, work: Any) -> str:
    """The pull request's body: the job's figures and diffstat (never the prompt)."""
    from aq_core.insights import job_record
    from aq_core.report import md_text
    from aq_core.store import State
    from aq_core.workdiff import diffstat

    state = store.locate(job_id) or State.DONE
    rec = job_record(job_id, state, store.read_meta(job_id))
    rows = [(name, md_text(value)) for name, value in figure_rows(rec) if value]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    try:
        stat = diffstat(work)
    except AqError as exc:
        stat = f"(no diffstat: {exc})"
    return (
        f"Work of the aq job `{job_id}` on `{work.branch}` ({work.range}), opened for review. "
        "aq never merges: that is yours to decide.\n\n"
        f"| figure | value |\n|---|---|\n{table}\n\n"
        f"```\n{stat.replace('```', '` ` `') or '(no changes)'}\n```\n"
    )


def figure_rows(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """The §8 figures of a job record as (name, text) pairs (empty text: unknown)."""
    from aq_core.durations import format_duration, format_tokens

    est = "cost_usd" in (rec.get("estimated") or [])
    changes = ""
    if rec.get("files_changed") is not None:
        changes = f"{rec['files_changed']} files, +{rec.get('lines_added') or 0} -{rec.get('lines_deleted') or 0}"
    tokens = [format_tokens(rec.get(k)) for k in ("tokens_in", "tokens_cached", "tokens_out")]
    return [
        ("result", rec.get("result") or ""),
        ("engine", ", ".join(rec.get("engines") or []) or rec.get("engine") or ""),
        ("model", rec.get("model") or ""),
        ("attempts", str(rec.get("attempts") or 0)),
        ("duration", format_duration(rec.get("duration_s"))),
        ("tokens in / cached / out", " / ".join(t or "-" for t in tokens) if any(tokens) else ""),
        ("cost", f"${rec['cost_usd']:.2f}{' (estimated)' if est else ''}" if rec.get("cost_usd") is not None else ""),
        ("changes", changes),
    ]


# -- the automatic path -----------------------------------------------------------------------------


def requested_mode(store: Any, job_id: str) -> str | None:
    """The job's ``pr:`` key (``draft`` or ``ready``), read from its file in ``done/``; None when unset."""
    from pathlib import Path

    from aq_core.job import parse_job
    from aq_core.store import State

    try:
        data = store.read_job(job_id, State.DONE)
        job = parse_job(Path(f"{job_id}.md"), data, engines=None, job_id=job_id, check_cwd=False)
    except Exception:  # the file was valid when it ran; a file changed since is no request
        return None
    return getattr(job, "pr", None)


def after_done(store: Any, notifier: Any, job_id: str) -> None:
    """A job reached ``done/``: when it ended ``ok`` and asked for ``pr:``, open its pull request in the background.

    ``pr_requested`` goes to meta first, so a pull request the runner could not open (it was killed
    first) is still listed by ``aq report``, and ``aq pr ID`` opens it.
    """
    from aq_core.journal import Journal

    say = Journal(store).for_job(job_id)  # the runner's output and the job's log
    try:
        last = store.read_meta(job_id).last
        if last.get("result") != "ok" or last.get("pr_url"):
            return
        mode = requested_mode(store, job_id)
        if mode is None:
            return
        store.append_meta(job_id, {"pr_requested": mode})
    except Exception as exc:  # never a reason for the runner to fail a finished job
        say(f"pr: cannot read the job's pr: request: {type(exc).__name__}: {exc}")
        return

    def work() -> None:
        try:
            open_pr(store, job_id, draft=mode == "draft", log=say)
        except AqError:
            pass  # already logged and recorded as pr_error; the job stays done
        except Exception as exc:
            say(f"pr: {type(exc).__name__}: {exc}")

    notifier.submit(work)
