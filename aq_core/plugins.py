"""The plugin manager: loads built-in and installed plugins the same way, and wraps each hook.

Each wrapper decides what a plugin's failure means for its hook (``plugin_trace`` reports it): a
``launch`` that raises ends the attempt as a crash, a ``parse_usage`` that raises leaves the figures
unknown, a ``classify_failure`` that raises lets the core's own classes apply, an engine list that
cannot be read provides no engines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aq_core.errors import AqError, UnknownEngine
from aq_core.plugin_trace import PluginError, describe, env, install, instrument, say

if TYPE_CHECKING:
    import pluggy

    from aq_core.checkpoint import CheckpointContext
    from aq_core.config import QueueConfig
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
    return _manager(env("AQ_LOAD_PLUGINS"))


@cache
def _manager(allowed_env: str | None) -> pluggy.PluginManager:
    import pluggy

    from aq_core import hookspecs

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    install(pm)
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
    impls = list(reversed(pm.hook.register_engines.get_hookimpls()))
    instrument(pm, "register_engines", impls)
    for impl in impls:
        try:
            engines = impl.function() or []
        except PluginError:  # reported; a plugin whose list cannot be read provides no engines
            continue
        dist = dists.get(id(impl.plugin))
        name = dist.project_name if dist is not None else "(unknown)"
        version = dist.version if dist is not None else ""
        for engine in engines:
            found.setdefault(engine.name, []).append(InstalledEngine(engine, name, version))
    return found


@dataclass(frozen=True)
class InstalledPlugin:
    """A loaded plugin (for ``aq plugins``): its entry point name, distribution and the hooks it implements."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    engines: tuple[str, ...]

    @property
    def builtin(self) -> bool:
        return _norm(self.distribution) == CORE_DIST


def installed_plugins() -> list[InstalledPlugin]:
    """Return every loaded plugin, built-ins included: built-ins first, then by distribution and name."""
    pm = plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    impls = pm.hook.register_engines.get_hookimpls()
    instrument(pm, "register_engines", impls)
    found = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked by AQ_LOAD_PLUGINS
            continue
        dist = dists.get(id(plugin))
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))
        engines: list[str] = []
        for impl in impls:
            if impl.plugin is plugin:
                with contextlib.suppress(PluginError):  # reported; it provides no engines
                    engines += [engine.name for engine in impl.function() or ()]
        distribution = dist.project_name if dist is not None else "(unknown)"
        version = dist.version if dist is not None else ""
        found.append(InstalledPlugin(name, distribution, version, hooks, tuple(sorted(engines))))
    return sorted(found, key=lambda p: (not p.builtin, p.distribution, p.name))


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


def settings(engine: str, config: QueueConfig) -> Mapping[str, Any]:
    """Return the settings ``config.yaml`` gives the plugin of ``engine`` (read-only; empty when none).

    They are ``plugins: {<name>: {...}}`` under the engine's name, else under the name of the
    distribution that provides it (``aq-claude``).
    """
    names = [engine]
    installed = installed_engines().get(engine)
    if installed is not None:
        names.append(installed.distribution)
    return MappingProxyType(config.plugin_settings(*names))


def launch(engine: str, ctx: LaunchContext) -> LaunchSpec:
    """Return the launch spec for ``engine``; raise ``UnknownEngine`` when no plugin answers.

    A plugin that raises ``AqError`` (not installed) makes the job invalid; any other exception is
    reported and raises ``PluginError``: the attempt ends as a crash.
    """
    spec = plugin_manager().hook.launch(engine=engine, ctx=ctx)
    if spec is None:
        raise UnknownEngine(f"engine {engine!r}: no installed plugin can launch it")
    return spec


def parse_usage(engine: str, log_path: Path, settings: Mapping[str, Any] | None = None) -> Usage:
    """Return the usage in an attempt's log (all figures absent when no plugin knows the engine)."""
    from aq_core.usage import Usage

    try:
        usage = plugin_manager().hook.parse_usage(engine=engine, log_path=log_path, settings=_frozen(settings))
    except Exception as exc:  # a plugin must never raise here; if it does, the figures are unknown
        _report("parse_usage", exc)
        usage = None
    return usage if usage is not None else Usage()


def classify_failure(engine: str, outcome: Outcome, settings: Mapping[str, Any] | None = None) -> Failure:
    """Return the class of an attempt's outcome (the core's fallback always answers)."""
    try:
        return plugin_manager().hook.classify_failure(engine=engine, outcome=outcome, settings=_frozen(settings))
    except Exception as exc:  # a plugin that raises gives no answer: the core's own classes apply
        _report("classify_failure", exc)
        from aq_core.fallbacks import classify_failure as core_classify

        return core_classify(engine=engine, outcome=outcome)


def _frozen(settings: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType({}) if settings is None else settings


def _report(hook: str, exc: Exception) -> None:
    if not isinstance(exc, PluginError):  # a plugin's own failure was reported where it happened
        say(f"{hook}: {describe(exc)}")


def checkpoint(stage: str, ctx: CheckpointContext, settings: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Run the ``checkpoint`` hook; return the meta it wants recorded (empty when none answered).

    ``settings`` is ``config.yaml``'s ``plugins:`` mapping: each implementation is called with a
    context whose ``settings`` are its own (by its plugin name), so the calls are made here, in
    pluggy's order (most recently registered first), stopping at the first answer.
    """
    from dataclasses import replace

    pm = plugin_manager()
    impls = list(reversed(pm.hook.checkpoint.get_hookimpls()))
    instrument(pm, "checkpoint", impls)  # called here, not through pluggy: traced and reported all the same
    answer = None
    for impl in impls:
        own = (settings or {}).get(impl.plugin_name)
        mine = replace(ctx, settings=own if isinstance(own, Mapping) else {})
        args = {"stage": stage, "ctx": mine}
        answer = impl.function(*[args[name] for name in impl.argnames])
        if answer is not None:
            break
    return dict(answer or {})


def work_lock(workdir: Path, isolation: str) -> str | None:
    """Return the implicit lock for jobs sharing ``workdir`` (``None`` when none applies)."""
    return plugin_manager().hook.work_lock(workdir=workdir, isolation=isolation)
