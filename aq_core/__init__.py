"""aq: the agent queue. Runs AI coding agents unattended from a queue of Markdown job files."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]


def __getattr__(name: str) -> object:
    # pluggy is imported on first use so that `aq --version` and `aq status` stay instant.
    if name == "hookimpl":
        from aq_core.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'aq_core' has no attribute {name!r}")
