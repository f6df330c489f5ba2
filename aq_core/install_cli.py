"""``aq install`` and ``aq uninstall``: plugin distributions in aq's own environment, through pip.

aq may live in an environment of its own (``pipx``, ``uv tool``), where a plain ``pip install`` would
land somewhere else; these commands run pip with the very interpreter that runs aq, as ``llm install``
does. Names, paths, URLs and ``-e PATH`` pass through to pip unchanged; pip's own output is shown.
"""

from __future__ import annotations

import argparse
import re
import sys

from aq_core.errors import AqError, UsageError

CORE_DIST = "aq-core"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``aq install`` and ``aq uninstall`` to the command line."""
    p = sub.add_parser("install", help="install plugins into aq's own environment (pip)")
    p.add_argument("packages", nargs="*", metavar="NAME", help="a distribution name, requirement, path or URL")
    p.add_argument("-U", "--upgrade", action="store_true", help="upgrade to the newest version")
    p.add_argument(
        "-e", "--editable", action="append", default=[], metavar="PATH", help="install a project from PATH, editable"
    )
    p.add_argument("--force-reinstall", action="store_true", help="reinstall even when up to date")
    p.add_argument("--no-cache-dir", action="store_true", help="do not use pip's cache")
    p.add_argument("--pre", action="store_true", help="include pre-release versions")
    p.set_defaults(func=cmd_install)
    p = sub.add_parser("uninstall", help="uninstall plugins from aq's own environment (pip)")
    p.add_argument("packages", nargs="+", metavar="NAME", help="a distribution name")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_uninstall)


def _canonical(name: str) -> str:
    """The distribution name as PEP 503 compares it (``AQ_Core`` is ``aq-core``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip(verb: str, args: list[str]) -> int:
    """Run ``pip VERB ARGS`` in aq's interpreter, its output on aq's terminal; return 0 or raise."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("pip") is None:
        raise AqError(
            f"aq {verb}: pip is not installed in aq's environment ({sys.executable}); with uv, run "
            f"`uv tool install aq-core --with NAME`; with pipx, `pipx inject aq-core NAME`"
        )
    argv = [sys.executable, "-m", "pip", verb, *args]
    try:
        code = subprocess.run(argv).returncode
    except OSError as exc:
        raise AqError(f"aq {verb}: cannot run pip: {exc.strerror or exc}") from None
    if code != 0:
        raise AqError(f"aq {verb}: pip {verb} failed (exit {code}); see pip's output above")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    if not args.packages and not args.editable:
        raise UsageError("aq install: name a plugin to install (a distribution name, path or URL), or -e PATH")
    options = [
        flag
        for flag, on in (
            ("--upgrade", args.upgrade),
            ("--force-reinstall", args.force_reinstall),
            ("--no-cache-dir", args.no_cache_dir),
            ("--pre", args.pre),
        )
        if on
    ]
    for path in args.editable:
        options += ["--editable", path]
    return _pip("install", [*options, *args.packages])


def cmd_uninstall(args: argparse.Namespace) -> int:
    for name in args.packages:
        if _canonical(name) == CORE_DIST:
            raise UsageError(
                f"aq uninstall: {name!r} is aq itself; remove it with the tool that installed it (pip, pipx, uv tool)"
            )
    return _pip("uninstall", [*args.packages, *(["--yes"] if args.yes else [])])
