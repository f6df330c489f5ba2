"""``aq store init`` and ``aq store migrate``: set up and fill a shared (PostgreSQL) store."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from aq_core.errors import AqError, UsageError

if TYPE_CHECKING:
    from aq_core.store import Store


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``aq store ...`` to the command line."""
    p = sub.add_parser("store", help="set up or fill a shared PostgreSQL store")
    commands = p.add_subparsers(dest="store_command", metavar="STORE_COMMAND")
    init = commands.add_parser("init", help="create or upgrade the schema (versioned)")
    init.add_argument(
        "--store", dest="init_store", metavar="URL", help="postgresql://... (default: aq --store, else $AQ_STORE)"
    )
    init.set_defaults(func=cmd_init)
    migrate = commands.add_parser("migrate", help="copy a filesystem queue into PostgreSQL")
    migrate.add_argument("--from", dest="source", required=True, metavar="DIR", help="the filesystem queue root")
    migrate.add_argument("--to", dest="target", required=True, metavar="URL", help="postgresql://...")
    migrate.set_defaults(func=cmd_migrate)
    p.set_defaults(func=lambda args: (_ for _ in ()).throw(UsageError("aq store: say init or migrate")))


def _url(given: str | None, what: str) -> str:
    url = given or os.environ.get("AQ_STORE")
    if not url:
        raise UsageError(f"{what}: say which database: --store postgresql://... (or set AQ_STORE)")
    if not url.startswith(("postgresql://", "postgres://")):
        raise UsageError(f"{what}: {url.split('@')[-1]!r}: expected a postgresql:// URL")
    return url


def cmd_init(args: argparse.Namespace) -> int:
    from aq_core.store_pg import SCHEMA_VERSION, init_schema, public_url

    url = _url(getattr(args, "init_store", None) or args.store, "aq store init")
    before, after = init_schema(url)
    where = public_url(url)
    if before == 0:
        print(f"{where}: schema created (version {after})")
    elif before == after:
        print(f"{where}: schema is up to date (version {SCHEMA_VERSION})")
    else:
        print(f"{where}: schema migrated from version {before} to {after}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from aq_core import __version__
    from aq_core.store import host_id, write_file
    from aq_core.store_fs import FsStore
    from aq_core.store_pg import migrate_fs, public_url

    url = _url(args.target, "aq store migrate --to")
    root = Path(os.path.abspath(os.path.expanduser(args.source)))
    if not (root / "inbox").is_dir() or not (root / "meta").is_dir():
        raise UsageError(f"aq store migrate --from: {root}: not an aq queue root (no inbox/ and meta/ there)")
    source = FsStore(root, create=False)
    counts = migrate_fs(source, url)
    _carry_rows(source, url, args)
    where = public_url(url)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    states = ", ".join(f"{name} {counts[name]}" for name in ("inbox", "building", "done", "failed"))
    marker = (
        f"migrated to {where}\n"
        f"at {stamp} by aq {__version__} on host {host_id()}\n"
        f"jobs={counts['jobs']} ({states}) meta_lines={counts['meta_lines']} engines={counts['engines']}\n"
        "This folder was left as it was. Run the shared queue with AQ_STORE (or --store) set to that URL;\n"
        "logs, tmp and config.yaml stay in each host's queue root (--root).\n"
    )
    try:
        write_file(root / "MIGRATED", marker.encode(), replace=True)
    except OSError as exc:
        raise AqError(f"copied, but could not mark {root} as migrated: {exc.strerror}") from None
    print(
        f"migrated {counts['jobs']} job(s) ({states}), {counts['meta_lines']} meta line(s) and"
        f" {counts['engines']} engine record(s) from {root} to {where}"
    )
    print(f"{root} is unchanged and marked migrated ({root / 'MIGRATED'})")
    return 0


def _carry_rows(source: Store, url: str, args: argparse.Namespace) -> None:
    """Keep the rows cache warm across the move: this host's cache for the new store, from the source's."""
    import contextlib

    from aq_core.records import carry_over
    from aq_core.status import job_row
    from aq_core.store import default_root
    from aq_core.store_pg import PgStore

    local = Path(os.path.abspath(os.path.expanduser(args.root))) if getattr(args, "root", None) else default_root()
    with contextlib.suppress(Exception), PgStore(url, local=local) as target:  # a convenience, never a failure
        carry_over(source, target, lambda e: job_row(e.id, e.state, source.read_meta(e.id)))
