"""What the user sees of plugin hook calls: one line per plugin failure, and every call with ``AQ_TRACE_PLUGINS=1``.

Every hook implementation is wrapped on its first call. A plugin that raises (anything but
``AqError``, which is a plugin's deliberate one-line answer) is reported as one line naming its
distribution and the hook, and the call raises ``PluginError``; the core's wrapper for that hook
decides what follows (``aq_core.plugins``). Lines go to stderr, which is the runner's output too.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence

from aq_core.errors import AqError

# `aq add` reads ``tracing()`` (through the plugin index): it must not pay for typing or threading.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import pluggy

TRACE_ENV = "AQ_TRACE_PLUGINS"
_MARK = "_aq_traced"
_lock = _thread.allocate_lock()  # threading.Lock() is this same lock


class PluginError(Exception):
    """A plugin's hook raised; the one line about it was already written."""

    def __init__(self, hook: str, plugin: str, cause: BaseException) -> None:
        self.hook, self.plugin, self.cause = hook, plugin, cause
        super().__init__(f"plugin {plugin}: {hook} failed: {describe(cause)}")


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, never a traceback."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


#: Lines written so far by this process (the plugin index is not written after a plugin failed).
reported = 0


def say(line: str) -> None:
    global reported
    reported += 1
    # A closed or broken stderr must not turn a report into a crash.
    with contextlib.suppress(OSError, ValueError):
        print(f"aq: {line}", file=sys.stderr, flush=True)


# The environment as the interpreter keeps it (bytes on POSIX; ``os.environ`` writes through to it):
# ``os.environ.get`` encodes the name and decodes the value at each call, and a runner asks these
# questions about thirty times a job.
_ENVIRON = getattr(os.environ, "_data", None)
_RAW = os.name == "posix" and isinstance(_ENVIRON, dict)


def env(name: str) -> str | None:
    """``os.environ.get(name)`` for an ASCII ``name``, read without encoding it where the environment is bytes."""
    if not _RAW:
        return os.environ.get(name)
    value = _ENVIRON.get(name.encode())  # type: ignore[union-attr]
    return None if value is None else os.fsdecode(value)


def tracing() -> bool:
    return env(TRACE_ENV) not in (None, "", "0")


def install(pm: pluggy.PluginManager) -> None:
    """Wrap every hook implementation of ``pm`` before its first call (also plugins registered later)."""

    def before(hook_name: str, impls: Sequence[Any], kwargs: dict[str, Any]) -> None:
        instrument(pm, hook_name, impls)

    def after(outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: dict[str, Any]) -> None:
        return None

    pm.add_hookcall_monitoring(before, after)


def instrument(pm: pluggy.PluginManager, hook: str, impls: Sequence[Any]) -> None:
    """Wrap the implementations in ``impls`` that are not wrapped yet."""
    if all(getattr(impl.function, _MARK, False) for impl in impls):
        return
    with _lock:
        for impl in impls:
            if not getattr(impl.function, _MARK, False):
                impl.function = _wrap(hook, label(pm, impl.plugin, impl.plugin_name), impl.function)


def label(pm: pluggy.PluginManager, plugin: object, name: str) -> str:
    """``aq-claude (claude)``: the distribution, and the plugin's entry point name when it differs."""
    dist = next((d.project_name for p, d in pm.list_plugin_distinfo() if p is plugin), None)
    return name if dist is None or dist == name else f"{dist} ({name})"


def _wrap(hook: str, who: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def traced(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            result = function(*args)
        except AqError as exc:
            if tracing():
                _trace(hook, who, started, f"answered with an error: {describe(exc)}")
            raise
        except Exception as exc:
            say(f"plugin {who}: {hook} failed: {describe(exc)}")
            raise PluginError(hook, who, exc) from exc
        if tracing():
            _trace(hook, who, started, "no answer" if result is None else "answered")
        return result

    setattr(traced, _MARK, True)
    traced.__name__ = getattr(function, "__name__", hook)
    traced.__doc__ = function.__doc__
    return traced


def _trace(hook: str, who: str, started: float, what: str) -> None:
    say(f"trace: {hook} {who} {(time.perf_counter() - started) * 1000:.1f} ms: {what}")
