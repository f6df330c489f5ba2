"""``aq add`` and ``aq validate``: job files (or a ``--prompt``) checked, their plan checked, queued.

Every file of one ``aq add`` is checked first, its ``after:`` ids against the queue and the other
files of the call (``aq_core.plan``); a file with a problem (or one waiting for such a file) is
reported, one line per problem, and not queued.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from aq_core.errors import ConfigInvalid, JobInvalid, UsageError, shown

# `aq add` is the start of every job's pick-up: this module, and what it imports on the way to the
# store, stays off typing, dataclasses (inspect), PyYAML for simple frontmatter, pluggy and plugins.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_SLUG_WORDS = 6
_SLUG_CHARS = 40


class Checked:
    """A job file that passed ``job.check_job``: its id and the ``Job`` fields it sets (what ``aq add``
    records and plans with; the ``Job`` itself, a dataclass, is the runner's to build)."""

    __slots__ = ("id", "values")

    def __init__(self, job_id: str, values: dict[str, Any]) -> None:
        self.id = job_id
        self.values = values

    @property
    def engines(self) -> tuple[str, ...]:
        return self.values["engines"]  # check_job refuses a job without one

    @property
    def after(self) -> tuple[str, ...]:
        return self.values.get("after", ())


def _err(message: str) -> None:
    print(f"aq: {message}", file=sys.stderr, flush=True)


def _profiles(args: argparse.Namespace) -> tuple[dict[str, dict[str, Any]], Path | None]:
    """The queue's profiles and root (none when the queue root does not exist yet)."""
    from aq_core.config import load_settings
    from aq_core.store import default_root

    root = Path(args.root) if args.root else default_root()
    return (load_settings(root).get("profiles", {}), root) if root.is_dir() else ({}, None)


_FACTS: dict[tuple[Path | None, str | None], tuple[list[str], set[str]]] = {}


def engine_facts(root: Path | None) -> tuple[list[str], set[str]]:
    """The installed engines' names and the failure classes (from the queue's plugin index when it can)."""
    key = (root, os.environ.get("AQ_LOAD_PLUGINS"))  # as the plugin manager: one per plugin selection
    if key not in _FACTS:
        from aq_core.plugin_index import engine_facts as indexed

        _FACTS[key] = indexed(root)
    return _FACTS[key]


def validate_file(
    path: Path, default_cwd: Path, profiles: dict[str, dict[str, Any]], root: Path | None = None
) -> tuple[Checked | None, list[str], bytes]:
    """Return (job, problems, data) for one file; problems are one line each (``root``: the queue's,
    whose plugin index names the installed engines)."""
    from aq_core.store import read_regular_file

    try:
        if path.is_dir():
            return None, [f"{shown(path)}: is a directory, not a job file"], b""
        data = read_regular_file(path, follow=True)
    except FileNotFoundError:
        return None, [f"{shown(path)}: no such file"], b""
    except OSError as exc:
        return None, [f"{shown(path)}: cannot read ({exc.strerror})"], b""
    except ValueError:
        return None, [f"{shown(path)}: not a regular file (a FIFO, device or socket is not a job)"], b""
    return _parse(path, data, default_cwd, profiles, root=root)


def _parse(
    path: Path, data: bytes, default_cwd: Path, profiles: dict, job_id: str | None = None, root: Path | None = None
) -> tuple[Checked | None, list[str], bytes]:
    from aq_core.job import check_job

    engines, classes = engine_facts(root)
    try:
        job_id, _, values = check_job(
            path,
            data,
            engines=engines,
            failure_classes=classes,
            default_cwd=default_cwd,
            job_id=job_id,
            profiles=profiles,
        )
    except JobInvalid as exc:
        return None, exc.problems, data
    return Checked(job_id, values), [], data


def engine_warnings(job: Checked, root: Path | None = None) -> list[str]:
    installed = engine_facts(root)[0]
    return [
        f"{job.id}: engine {name!r} is not installed; it will be skipped"
        for name in job.engines
        if name not in installed
    ]


def cmd_validate(args: argparse.Namespace) -> int:
    status = 0
    profiles, root = _profiles(args)
    for name in args.files:
        job, problems, _ = validate_file(Path(name), Path.cwd(), profiles, root)
        if problems:
            for problem in problems:
                _err(problem)
            status = 2
            continue
        for warning in engine_warnings(job, root):
            _err(f"warning: {warning}")
        print(f"{name}: ok (job {job.id}, engine {', '.join(job.engines)})")
    return status


def add_meta(job: Checked, here: Path) -> dict[str, Any]:
    """The first meta lines of a job: what ``aq status`` and the claim need without parsing its file."""
    values = job.values
    return {
        "added": round(time.time(), 3),
        "add_dir": str(here),
        "engine": job.engines[0],
        "lock": values.get("lock"),
        "after": ",".join(job.after) or None,
        "priority": values.get("priority") or None,
        "not_before": values.get("not_before"),
        "profile": values.get("profile"),
    }


def cmd_add(args: argparse.Namespace) -> int:
    from aq_core.store_open import open_store

    if not args.files and args.prompt is None:
        raise UsageError("aq add: give job files, or --prompt TEXT (--prompt - reads it from stdin)")
    if args.prompt is None and (args.engine or args.profile or args.id or args.cwd):
        raise UsageError("aq add: --engine, --profile, --id and --cwd go with --prompt")
    store = open_store(args.root, url=args.store)
    try:
        profiles = store.files.profiles()
    except ConfigInvalid as exc:  # one line per problem, as for a job file; nothing queued
        return _report(exc.problems)
    here = Path.cwd()
    status = 0
    checked: list[tuple[str, Checked, bytes]] = []  # (the name to report, job, data)
    for name in args.files:
        job, problems, data = validate_file(Path(name), here, profiles, store.files.root)
        status = _report(problems) or status
        if job is not None:
            checked.append((name, job, data))
    if args.prompt is not None:
        job, problems, data = _prompt_job(args, here, profiles, store.files.root)
        status = _report(problems) or status
        if job is not None:
            checked.append(("--prompt", job, data))
    refused = _plan_problems(store, checked)
    queued = False
    for name, job, data in _parents_first(checked):
        if job.id in refused:
            status = _report([f"{shown(name)}: {line}" for line in refused[job.id]]) or status
            continue
        for warning in engine_warnings(job, store.files.root):
            _err(f"warning: {warning}")
        try:
            store.add(job.id, data, add_meta(job, here))
        except UsageError as exc:
            _err(f"{shown(name)}: {exc}")
            status = 2
            continue
        except OSError as exc:  # e.g. a planted symlink in meta/: refused, and the next file goes on
            _err(f"{shown(name)}: cannot queue it: {exc.strerror or exc}")
            status = 1 if status == 0 else status
            continue
        print(job.id)
        queued = True
    if queued:
        store.coord.poke()  # idle runners start it now, not at their next look at inbox/
    return status


def _report(problems: list[str]) -> int:
    for problem in problems:
        _err(problem)
    return 2 if problems else 0


def _plan_problems(store: Any, checked: list[tuple[str, Checked, bytes]]) -> dict[str, list[str]]:
    """The ``after:`` problems of the jobs being added, by job id; a job waiting for a refused one is
    refused too (it would wait for a job that is not in the queue)."""
    from aq_core.plan import check_after

    known: dict[str, bool] = {}
    ids = {job.id for _, job, _ in checked}
    for _, job, _ in checked:
        for dep in job.after:
            if dep not in known and dep not in ids:
                known[dep] = store.locate(dep) is not None
    queue = {name for name, there in known.items() if there}
    new = {job.id: list(job.after) for _, job, _ in checked}
    refused: dict[str, list[str]] = {}
    while True:
        problems = check_after(new, queue)
        for job_id, lines in problems.items():
            refused.setdefault(job_id, []).extend(line for line in lines if line not in refused.get(job_id, []))
        gone = [job_id for job_id in problems if job_id in new]
        if not gone:
            return refused
        for job_id in gone:
            del new[job_id]


def _parents_first(checked: list[tuple[str, Checked, bytes]]) -> list[tuple[str, Checked, bytes]]:
    """The jobs in an order where each comes after the jobs of this call it waits for: a runner never
    sees a job whose dependency is not queued yet (it would fail it as gone)."""
    by_id = {item[1].id: item for item in checked}
    done: set[str] = set()
    ordered: list[tuple[str, Checked, bytes]] = []

    def visit(item: tuple[str, Checked, bytes], path: set[str]) -> None:
        job = item[1]
        if job.id in done or job.id in path:
            return
        path.add(job.id)
        for dep in job.after:
            if dep in by_id:
                visit(by_id[dep], path)
        done.add(job.id)
        ordered.append(item)

    for item in checked:
        if item[1].id not in done:
            visit(item, set())
    # Two files of one id: the second is refused by the store, as before.
    ordered += [item for item in checked if not any(item is o for o in ordered)]
    return ordered


def _prompt_job(
    args: argparse.Namespace, here: Path, profiles: dict, root: Path
) -> tuple[Checked | None, list[str], bytes]:
    """A job from ``--prompt``: its file is written by aq (the prompt stays out of argv, meta and logs)."""
    import yaml

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        return None, ["--prompt: the prompt is empty"], b""
    profile = profiles.get(args.profile) if args.profile else None
    if not args.engine and not (profile and "engine" in profile) and not (args.profile and profile is None):
        raise UsageError("aq add --prompt: no engine: give --engine NAME or a --profile that sets engine:")
    front: dict[str, Any] = {}
    if args.engine:
        front["engine"] = args.engine
    if args.profile:
        front["profile"] = args.profile
    if args.cwd:
        front["cwd"] = str((here / os.path.expanduser(args.cwd)).resolve())
    job_id = args.id or prompt_slug(prompt)
    from aq_core.job import JOB_ID

    if not JOB_ID.fullmatch(job_id):
        return None, [f"--id: {job_id!r}: not a job id (expected [A-Za-z0-9][A-Za-z0-9._-]{{0,127}})"], b""
    text = "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n" + prompt
    if not text.endswith("\n"):
        text += "\n"
    return _parse(Path(f"{job_id}.md"), text.encode(), here, profiles, job_id=job_id, root=root)


def prompt_slug(prompt: str) -> str:
    """An id from the prompt's first words plus a short unique suffix: ``fix-the-login-bug-3f9a1c``."""
    words = re.findall(r"[A-Za-z0-9]+", prompt.lower())[:_SLUG_WORDS]
    slug = "-".join(words)[:_SLUG_CHARS].strip("-") or "job"
    return f"{slug}-{os.urandom(3).hex()}"


def register(sub: Any) -> None:
    """The ``add`` and ``validate`` subcommands."""
    p = sub.add_parser("add", help="validate job files (or a --prompt) and queue them")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--prompt", metavar="TEXT", help="queue a job without a file; - reads the prompt from stdin")
    p.add_argument("--profile", metavar="NAME", help="with --prompt: start from this profile of config.yaml")
    p.add_argument("--engine", metavar="NAME", help="with --prompt: the engine")
    p.add_argument("--id", metavar="ID", help="with --prompt: the job id (default: from the prompt's first words)")
    p.add_argument("--cwd", metavar="DIR", help="with --prompt: the working directory (default: here)")
    p.set_defaults(func=cmd_add)
    p = sub.add_parser("validate", help="check job files without queueing them")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate)
