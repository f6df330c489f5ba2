"""The plugin index: the installed engines' names and failure classes, cached so ``aq add`` checks a
job without importing pluggy or any plugin.

The index is a ``marshal`` file in the queue root's ``cache/`` folder, one per interpreter and
``sys.path``. It is used only while nothing that decides what the plugins provide has changed: the
interpreter, ``sys.path``, ``AQ_LOAD_PLUGINS``, every distribution's metadata folder on ``sys.path``
(name and modification time: installing, upgrading or removing a distribution changes them) and
every module file the plugins were loaded from (size and modification time: an edited plugin).
Anything else, or any doubt, loads the plugins as before and writes the index again; a plugin that
failed while loading (its one line was printed) is never indexed, so the line is printed every time.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import sys
from pathlib import Path

TYPE_CHECKING = False  # typing costs `aq add` milliseconds: only type checkers read these
if TYPE_CHECKING:
    from typing import Any

FORMAT = 1
_METADATA = (".dist-info", ".egg-info")


def engine_facts(root: Path | None) -> tuple[list[str], set[str]]:
    """Return (the installed engines' names, sorted; every failure class they and the core produce)."""
    from aq_core.plugin_trace import tracing

    path = index_path(root) if root is not None and not tracing() else None
    if path is not None:
        cached = _read(path)
        if cached is not None:
            return cached
    from aq_core import plugin_trace, plugins

    reported = plugin_trace.reported
    names, classes = plugins.engine_names(), plugins.failure_classes()
    if path is not None and plugin_trace.reported == reported:
        with contextlib.suppress(OSError, ValueError):
            _write(path, names, classes, _plugin_files(plugins.plugin_manager()))
    return names, classes


def index_path(root: Path) -> Path:
    """The index of this interpreter and ``sys.path`` in the queue root ``root``."""
    return root / "cache" / f"plugins-{FORMAT}-{_fnv(repr((sys.executable, sys.path)).encode()):016x}.marshal"


def _fnv(data: bytes) -> int:
    """FNV-1a, 64 bits: a stable name without importing hashlib (OpenSSL takes milliseconds to load)."""
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def _environment() -> tuple[Any, ...]:
    """What decides which plugins load, apart from their own files."""
    dists: list[tuple[str, str, int]] = []
    for entry in sys.path:
        folder = entry or "."
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.endswith(_METADATA):
                with contextlib.suppress(OSError):
                    dists.append((entry, name, os.stat(os.path.join(folder, name)).st_mtime_ns))
    return (FORMAT, sys.version, sys.executable, tuple(sys.path), os.environ.get("AQ_LOAD_PLUGINS"), tuple(dists))


def _stamps(files: list[str]) -> tuple[tuple[int, int] | None, ...]:
    stamps: list[tuple[int, int] | None] = []
    for name in files:
        try:
            st = os.stat(name)
            stamps.append((st.st_mtime_ns, st.st_size))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def _read(path: Path) -> tuple[list[str], set[str]] | None:
    try:
        with open(path, "rb") as fh:
            data = marshal.loads(fh.read())
        if data["environment"] != _environment() or data["stamps"] != _stamps(data["files"]):
            return None
        return list(data["names"]), set(data["classes"])
    except Exception:  # missing, unreadable, of another layout: load the plugins instead
        return None


def _write(path: Path, names: list[str], classes: set[str], files: list[str]) -> None:
    data = {
        "environment": _environment(),
        "files": files,
        "stamps": _stamps(files),
        "names": list(names),
        "classes": sorted(classes),
    }
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(marshal.dumps(data))
    os.replace(tmp, path)  # readers see the old index or the new one, never half of one


def _plugin_files(pm: Any) -> list[str]:
    """Every loaded module file of the plugins' packages (the core's own included: its built-ins)."""
    tops = {"aq_core"}
    for _, plugin in pm.list_name_plugin():
        name = getattr(plugin, "__name__", None) or type(plugin).__module__
        tops.add(str(name).split(".")[0])
    files = set()
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in tops:
            file = getattr(module, "__file__", None)
            if file:
                files.add(file)
    return sorted(files)
