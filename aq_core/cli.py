"""The ``aq`` command line: one function per subcommand, each returning the exit code."""

from __future__ import annotations

import argparse
import os
import sys

from aq_core import __version__
from aq_core.errors import AqError, UsageError

# Only what every command needs is imported here (json, time, pathlib where used): `aq add` and
# `aq status` start with this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as every other bad input
        raise UsageError(message)

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse asks shutil for the width (shutil imports bz2, lzma and zlib); each add_argument
        # makes a formatter, so every command would pay for it.
        return self.formatter_class(prog=self.prog, width=_terminal_width() - 2)


def _terminal_width() -> int:
    """``shutil.get_terminal_size().columns``: ``$COLUMNS``, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _store(args: argparse.Namespace):
    from aq_core.store_open import open_store

    return open_store(args.root, url=args.store)


def _err(message: str) -> None:
    print(f"aq: {message}", file=sys.stderr, flush=True)


# -- run / stop / recover ------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from aq_core.runner_procs import run

    return run(lambda: _store(args), workers=args.workers, once=args.once, processes=args.processes)


# -- status / logs / engines ---------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    import gc

    from aq_core.views import print_status

    gc.disable()  # a read-only command building many small dicts: collection passes only cost time
    print_status(_store(args), as_json=args.json)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    import time

    from aq_core.store import State

    store = _store(args)
    state = store.locate(args.job)
    if state is None:
        raise UsageError(f"no job {args.job!r} in {store.describe()}")
    meta = store.read_meta(args.job)
    attempt = args.attempt or meta.integer("attempts")
    if attempt < 1:
        aq_log = store.files.aq_log_path(args.job)
        if aq_log.exists():
            sys.stdout.write(aq_log.read_text(errors="replace"))
            return 0
        raise AqError(f"job {args.job!r} has not started yet (in {state.value}/)")
    path = store.files.log_path(args.job, attempt)
    if not path.exists():
        from aq_core.store import host_id

        hosts = [v for k, v in meta.pairs if k == "host"]
        if hosts and hosts[-1] != host_id():
            raise AqError(
                f"job {args.job!r}: the logs of attempt {attempt} are on host {hosts[-1]!r} (in its queue root's logs/)"
            )
        raise AqError(f"job {args.job!r}: no log for attempt {attempt}")
    out = sys.stdout.buffer
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 16)
            if chunk:
                out.write(chunk)
                continue
            out.flush()
            if not args.follow:
                return 0
            now_state = store.locate(args.job)
            if now_state is not State.BUILDING or store.read_meta(args.job).integer("attempts") != attempt:
                rest = fh.read()
                out.write(rest)
                out.flush()
                return 0
            time.sleep(0.2)


def cmd_engines(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from aq_core import plugins
    from aq_core.config import load_config
    from aq_core.store import default_root

    root = Path(args.root) if args.root else default_root()
    config = load_config(root) if root.is_dir() else None
    rows = []
    for name, item in sorted(plugins.installed_engines().items()):
        configured = config.engine_bins.get(name) if config else None
        exe = item.engine.resolve(configured)
        found = exe is not None and item.engine.available(configured)
        rows.append(
            {
                "name": name,
                "distribution": item.distribution,
                "version": item.version,
                "executable": exe if exe else (None if item.engine.binary is None else None),
                "found": bool(found) if item.engine.binary is not None or exe else None,
            }
        )
    for name, dists in plugins.duplicate_engines().items():
        _err(f"warning: engine {name!r} is provided by {' and '.join(dists)}; {dists[0]} wins")
    if args.json:
        print(json.dumps({"engines": rows}))
        return 0
    from tabulate import tabulate

    table = []
    for r in rows:
        if r["found"] is None:
            where = "(the job's command:)"
        elif r["found"]:
            where = r["executable"]
        else:
            where = f"not found ({r['executable']})" if r["executable"] else "not found"
        table.append([r["name"], r["distribution"], r["version"], where])
    print(tabulate(table, headers=["ENGINE", "DISTRIBUTION", "VERSION", "EXECUTABLE"]))
    return 0


def cmd_insights(args: argparse.Namespace) -> int:
    import gc
    import json

    from aq_core import insights

    gc.disable()  # a read-only command building many small dicts: collection passes only cost time
    store = _store(args)
    if args.job:
        state = store.locate(args.job)
        if state is None:
            raise UsageError(f"no job {args.job!r} in {store.describe()}")
        record = insights.job_record(args.job, state, store.read_meta(args.job))
        print(json.dumps(record) if args.json else insights.render_job(record))
        return 0
    try:
        since = insights.parse_since(args.since) if args.since else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from aq_core import views

    if since is None and args.engine is None:
        if args.json:
            views.print_insights_json(store)
            return 0
        if views.print_insights_text(store, args.limit):
            return 0
    recs = insights.select(views.finished_rows(store), since=since, engine=args.engine)
    engines = insights.rollup(recs)
    if args.json:
        views.write_json_rows(recs, engines)
    else:
        print(insights.render_overview(recs, engines, limit=args.limit))
    return 0


# -- the parser ----------------------------------------------------------------------------------


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only="add"``, just the global options, ``add`` and ``validate``;
    with ``only="status"``, ``status`` and ``insights`` (building every subcommand's parser, and
    importing their modules, costs those commands a fifth of their start-up)."""
    parser = _Parser(
        prog="aq", description="aq, the agent queue: run coding agents unattended from Markdown job files."
    )
    parser.add_argument("--version", action="version", version=f"aq {__version__}")
    parser.add_argument("--root", metavar="DIR", help="queue root (default: $AGENT_QUEUE_ROOT or ~/.aq)")
    parser.add_argument(
        "--store", metavar="URL", help="a shared PostgreSQL queue (postgresql://...; default: $AQ_STORE, else --root)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    if only == "status":
        _register_reads(sub)
        return parser
    from aq_core import cli_add

    cli_add.register(sub)
    if only == "add":
        return parser
    from aq_core import dashboard_cli, explain, pr, report, show
    from aq_core.cli_control import cmd_cancel, cmd_recover, cmd_resume, cmd_retry, cmd_stop

    explain.register(sub)
    p = sub.add_parser("run", help="run queued jobs")
    p.add_argument("--once", action="store_true", help="drain the queue (waiting out backoffs), then exit")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="jobs run at once (default 1)")
    p.add_argument(
        "--processes",
        type=int,
        metavar="P",
        help="runner processes the workers are spread over (default: one per usable CPU, at most N)",
    )
    p.set_defaults(func=cmd_run)
    _register_reads(sub)
    dashboard_cli.register(sub)
    p = sub.add_parser("logs", help="show a job's engine output")
    p.add_argument("job", metavar="JOB")
    p.add_argument("-f", "--follow", action="store_true", help="follow while the job runs")
    p.add_argument("--attempt", type=int, metavar="N", help="which attempt (default: the latest)")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("recover", help="put orphaned jobs back in the queue")
    p.set_defaults(func=cmd_recover)
    p = sub.add_parser("retry", help="re-queue a failed job")
    p.add_argument("job", metavar="JOB")
    p.set_defaults(func=cmd_retry)
    p = sub.add_parser("cancel", help="cancel a waiting or running job")
    p.add_argument("job", metavar="JOB")
    p.set_defaults(func=cmd_cancel)
    p = sub.add_parser("resume", help="lift an engine's limit pause by hand")
    p.add_argument("engine", metavar="ENGINE")
    p.set_defaults(func=cmd_resume)
    p = sub.add_parser("stop", help="stop the running runners cleanly")
    p.add_argument("--wait", type=float, default=30.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_stop)
    from aq_core.store_cli import register as register_store_commands

    register_store_commands(sub)
    from aq_core.cli_plugins import register as register_plugin_commands

    register_plugin_commands(sub)
    from aq_core import completion, install_cli

    install_cli.register(sub)
    completion.register(sub)
    p = sub.add_parser("engines", help="installed engines and their executables")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_engines)
    show.register(sub)
    report.register(sub)
    pr.register(sub)
    return parser


def _register_reads(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="jobs by state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("insights", help="what jobs cost: per job, per attempt, per engine")
    p.add_argument("job", nargs="?", metavar="JOB")
    p.add_argument("--json", action="store_true")
    p.add_argument("--since", metavar="WHEN", help="finished within a duration (24h, 7d) or since a date")
    p.add_argument("--engine", metavar="NAME", help="only jobs run on this engine")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="rows in the recent-jobs table")
    p.set_defaults(func=cmd_insights)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser(_only(sys.argv[1:] if argv is None else argv)).parse_args(argv)
        if not getattr(args, "func", None):
            build_parser().print_help()
            return 2
        return args.func(args)
    except AqError as exc:
        _err(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug must still be one line; the traceback goes to a file
        return _internal_error(exc)


def _only(argv: Sequence[str]) -> str | None:
    """The part of the parser the command needs: ``add`` for ``add`` and ``validate``, ``status`` for
    ``status`` and ``insights`` (after the global options), else None (the whole parser)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("add", "validate"):
            return "add"
        if arg in ("status", "insights"):
            return "status"
        name = arg.split("=", 1)[0]
        if len(name) < 3 or not name.startswith("--") or not ("--root".startswith(name) or "--store".startswith(name)):
            return None  # --version, --help, another command or a mistake: the whole parser answers
        i += 1 if "=" in arg else 2  # the option and its value
    return None


def _internal_error(exc: Exception) -> int:
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="aq-crash-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        traceback.print_exc(file=fh)
    _err(f"internal error: {type(exc).__name__}: {exc} (details in {path})")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
