"""``aq dashboard`` on the command line: its options, and the token from ``AQ_DASHBOARD_TOKEN``."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``aq dashboard`` to the command line."""
    p = sub.add_parser("dashboard", help="a read-only live web page of the queue")
    p.add_argument("--port", type=int, default=8765, metavar="P", help="default 8765; 0 picks a free port")
    p.add_argument(
        "--bind",
        "--host",
        dest="bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to listen on (default 127.0.0.1: this machine only; any other needs a token)",
    )
    p.add_argument(
        "--token",
        metavar="TOKEN",
        help="every request must carry it (Bearer header or ?token=); default: $AQ_DASHBOARD_TOKEN",
    )
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from aq_core.dashboard import TOKEN_ENV, serve
    from aq_core.store_open import open_store

    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    return serve(open_store(args.root, url=args.store), host=args.bind, port=args.port, token=token)
