"""The plugin manager: loads built-in and installed plugins the same way, and wraps each hook."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aq_core.errors import AqError, UnknownEngine

if TYPE_CHECKING:
    import pluggy

    from aq_core.checkpoint import CheckpointContext
    from aq_core.engine import Engine, Failure, LaunchContext, LaunchSpec, Outcome
    from aq_core.usage import Usage

GROUP = "aq"
CORE_DIST = "aq-core"


@dataclass(frozen=True)
class InstalledEngine:
    """An engine with the distribution that provides it (for ``aq engines``)."""

    engine: Engine
    distribution: str
    version: str


def plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, loading plugins on first use.

    ``AQ_LOAD_PLUGINS`` (comma-separated distribution names) limits which installed distributions
    load; the empty string loads only aq-core's built-ins. Unset loads everything.
    """
    return _manager(os.environ.get("AQ_LOAD_PLUGINS"))


@cache
def _manager(allowed_env: str | None) -> pluggy.PluginManager:
    import pluggy

    from aq_core import hookspecs

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    allowed = None if allowed_env is None else {n.strip() for n in allowed_env.split(",") if n.strip()}
    if allowed is not None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=GROUP):
            dist = ep.dist.name if ep.dist is not None else ""
            if _norm(dist) not in {_norm(a) for a in allowed} | {CORE_DIST}:
                pm.set_blocked(ep.name)
    try:
        pm.load_setuptools_entrypoints(GROUP)
        pm.check_pending()  # a misspelt hook name in a plugin fails here, not silently later
    except Exception as exc:  # a broken third-party plugin must not take the whole CLI down
        raise AqError(f"a plugin failed to load: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return pm


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def installed_engines() -> dict[str, InstalledEngine]:
    """Return every installed engine by name, with the distribution that provides it."""
    return _engines(plugin_manager())


@cache
def _engines(pm: pluggy.PluginManager) -> dict[str, InstalledEngine]:
    return {name: items[0] for name, items in _all_engines(pm).items()}


@cache
def _all_engines(pm: pluggy.PluginManager) -> dict[str, list[InstalledEngine]]:
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    found: dict[str, list[InstalledEngine]] = {}
    for impl in reversed(pm.hook.register_engines.get_hookimpls()):
        engines = impl.function() or []
        dist = dists.get(id(impl.plugin))
        name = dist.project_name if dist is not None else "(unknown)"
        version = dist.version if dist is not None else ""
        for engine in engines:
            found.setdefault(engine.name, []).append(InstalledEngine(engine, name, version))
    return found


def duplicate_engines() -> dict[str, list[str]]:
    """Engine names that more than one plugin provides, with their distributions (the first one wins)."""
    return {n: [i.distribution for i in v] for n, v in _all_engines(plugin_manager()).items() if len(v) > 1}


def engine_names() -> list[str]:
    return sorted(installed_engines())


def get_engine(name: str) -> Engine:
    """Return the installed engine called ``name``; raise ``UnknownEngine`` when there is none."""
    try:
        return installed_engines()[name].engine
    except KeyError:
        listing = ", ".join(engine_names()) or "none"
        raise UnknownEngine(f"engine {name!r} is not installed (installed: {listing})") from None


def failure_classes() -> set[str]:
    """Return every failure class the core and the installed engines can produce."""
    from aq_core.engine import CORE_FAILURE_CLASSES

    classes = set(CORE_FAILURE_CLASSES)
    for item in installed_engines().values():
        classes.update(item.engine.failure_classes)
    return classes


def launch(engine: str, ctx: LaunchContext) -> LaunchSpec:
    """Return the launch spec for ``engine``; raise ``UnknownEngine`` when no plugin answers."""
    spec = plugin_manager().hook.launch(engine=engine, ctx=ctx)
    if spec is None:
        raise UnknownEngine(f"engine {engine!r}: no installed plugin can launch it")
    return spec


def parse_usage(engine: str, log_path: Path) -> Usage:
    """Return the usage in an attempt's log (all figures absent when no plugin knows the engine)."""
    from aq_core.usage import Usage

    try:
        usage = plugin_manager().hook.parse_usage(engine=engine, log_path=log_path)
    except Exception:  # a plugin must never raise here; if it does, the figures are unknown
        usage = None
    return usage if usage is not None else Usage()


def classify_failure(engine: str, outcome: Outcome) -> Failure:
    """Return the class of an attempt's outcome (the core's fallback always answers)."""
    try:
        return plugin_manager().hook.classify_failure(engine=engine, outcome=outcome)
    except Exception:  # a plugin that raises gives no answer: the core's own classes apply
        from aq_core.fallbacks import classify_failure as core_classify

        return core_classify(engine=engine, outcome=outcome)


def checkpoint(stage: str, ctx: CheckpointContext, settings: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Run the ``checkpoint`` hook; return the meta it wants recorded (empty when none answered).

    ``settings`` is ``config.yaml``'s ``plugins:`` mapping: each implementation is called with a
    context whose ``settings`` are its own (by its plugin name), so the calls are made here, in
    pluggy's order (most recently registered first), stopping at the first answer.
    """
    from dataclasses import replace

    pm = plugin_manager()
    answer = None
    for impl in reversed(pm.hook.checkpoint.get_hookimpls()):
        own = (settings or {}).get(impl.plugin_name)
        mine = replace(ctx, settings=own if isinstance(own, Mapping) else {})
        args = {"stage": stage, "ctx": mine}
        answer = impl.function(**{name: args[name] for name in impl.argnames if name in args})
        if answer is not None:
            break
    return dict(answer or {})


def work_lock(workdir: Path, isolation: str) -> str | None:
    """Return the implicit lock for jobs sharing ``workdir`` (``None`` when none applies)."""
    return plugin_manager().hook.work_lock(workdir=workdir, isolation=isolation)
