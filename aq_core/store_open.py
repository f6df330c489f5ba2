"""``open_store``: the one factory that picks the store (filesystem or PostgreSQL) a command uses.

It sits above both implementations, so neither they nor the interface import each other.
"""

from __future__ import annotations

import os
from pathlib import Path

from aq_core.errors import UsageError
from aq_core.store import Store, default_root
from aq_core.store_fs import FsStore


def open_store(root: str | Path | None = None, create: bool = True, url: str | None = None) -> Store:
    """Return the store: ``--store URL`` / ``$AQ_STORE`` (PostgreSQL), else the filesystem queue in
    ``--root`` / ``$AGENT_QUEUE_ROOT`` / ``~/.aq`` (which is also where a database store keeps this
    host's logs and config)."""
    local = Path(root) if root else default_root()
    url = url or os.environ.get("AQ_STORE") or None
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise UsageError(f"--store: {url.split('@')[-1]!r}: expected a postgresql:// URL")
        from aq_core.store_pg import PgStore

        return PgStore(url, local=local)
    return FsStore(local, create=create)
