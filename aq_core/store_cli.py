"""``aq store init`` and ``aq store migrate``: set up and fill a shared (PostgreSQL) store."""

from __future__ import annotations

import argparse

from aq_core.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``aq store ...`` to the command line."""
    p = sub.add_parser("store", help="set up or fill a shared PostgreSQL store")
    commands = p.add_subparsers(dest="store_command", metavar="STORE_COMMAND")
    init = commands.add_parser("init", help="create or upgrade the schema (versioned)")
    init.set_defaults(func=cmd_init)
    migrate = commands.add_parser("migrate", help="copy a filesystem queue into PostgreSQL")
    migrate.add_argument("--from", dest="source", required=True, metavar="DIR", help="the filesystem queue root")
    migrate.add_argument("--to", dest="target", required=True, metavar="URL", help="postgresql://...")
    migrate.set_defaults(func=cmd_migrate)
    p.set_defaults(func=lambda args: (_ for _ in ()).throw(UsageError("aq store: say init or migrate")))


def cmd_init(args: argparse.Namespace) -> int:
    raise UsageError("aq store init: the PostgreSQL store is not available in this build")


def cmd_migrate(args: argparse.Namespace) -> int:
    raise UsageError("aq store migrate: the PostgreSQL store is not available in this build")
