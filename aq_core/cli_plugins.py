"""``aq plugins [--json]``: every loaded plugin, built-ins included, and the hooks each implements."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``aq plugins`` to the command line."""
    p = sub.add_parser("plugins", help="installed plugins (built-in too) and the hooks each implements")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)


def cmd_plugins(args: argparse.Namespace) -> int:
    from aq_core import plugins

    rows = [
        {
            "name": item.name,
            "distribution": item.distribution,
            "version": item.version,
            "builtin": item.builtin,
            "hooks": list(item.hooks),
            "engines": list(item.engines),
        }
        for item in plugins.installed_plugins()
    ]
    if args.json:
        print(json.dumps({"plugins": rows}))
        return 0
    from tabulate import tabulate

    table = [
        [
            r["name"],
            r["distribution"],
            r["version"],
            "yes" if r["builtin"] else "no",
            ", ".join(r["hooks"]) or "-",
            ", ".join(r["engines"]) or "-",
        ]
        for r in rows
    ]
    print(tabulate(table, headers=["PLUGIN", "DISTRIBUTION", "VERSION", "BUILT-IN", "HOOKS", "ENGINES"]))
    return 0
