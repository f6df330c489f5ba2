"""The checks of each job key, shared by job files and the config's ``profiles:``.

``check_keys`` validates one mapping of job keys (a job's frontmatter, or one profile) and returns the
values a ``Job`` is built from; every problem goes through ``bad(key, message)`` naming the key and the
bad value, so a profile's problems read exactly like a job's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from aq_core.durations import parse_duration

TYPE_CHECKING = False  # typing and the retry policy's dataclass cost `aq add` milliseconds
if TYPE_CHECKING:
    from typing import Any

    from aq_core.retry import RetryPolicy

KEYS = (
    "engine",
    "cwd",
    "timeout",
    "lock",
    "yolo",
    "model",
    "verify",
    "retry",
    "command",
    "isolation",
    "grace",
    "on_limit",
    "max_cost_usd",
    "pr",
    "sandbox",
    "stall_timeout",
    "after",
    "priority",
    "not_before",
    "profile",
)
#: A job's own keys: a profile naming them would make every job of it wait for the same ids.
JOB_ONLY = ("after", "profile")
PROFILE_KEYS = tuple(k for k in KEYS if k not in JOB_ONLY)
RETRY_KEYS = ("max", "backoff", "factor", "max_backoff", "jitter", "on")
ISOLATIONS = ("inplace", "worktree")
ON_LIMIT = ("wait", "fail")
PR_MODES = ("draft", "ready")
PRIORITY_RANGE = 1_000_000

Bad = Callable[[str | None, str], None]


def near(key: str, choices: Collection[str]) -> str:
    import difflib  # only a misspelt name needs it

    match = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_keys(
    front: Mapping[Any, Any],
    bad: Bad,
    *,
    engines: Collection[str] | None,
    failure_classes: Collection[str] | None,
    path: Path,
    default_cwd: Path | None,
    check_cwd: bool,
    allowed: tuple[str, ...] = KEYS,
) -> dict[str, Any]:
    """Validate the keys present in ``front``; return the ``Job`` field values they give.

    :param engines: installed engine names (``None`` skips the check).
    :param failure_classes: classes ``retry.on`` may name beyond the core's (``None``: any name).
    Keys that are absent are left out: the caller fills defaults (and a profile's values).
    """
    values: dict[str, Any] = {}
    for key in front:
        if key not in allowed:
            if key in KEYS:
                bad(None, f"key {key!r} is not allowed here (only in a job file)")
            else:
                bad(None, f"unknown key {short(key)}{near(str(key), allowed)}")
    if "engine" in front:
        values["engines"] = _engines(front["engine"], engines, bad)
    if "command" in front:
        values["command"] = _command(front["command"], bad)
    if "cwd" in front:
        values["cwd"] = _cwd(front["cwd"], path, default_cwd, check_cwd, bad)
    for key in ("timeout", "grace", "stall_timeout"):
        if key in front and front[key] is not None:
            try:
                seconds = parse_duration(front[key])
            except ValueError as exc:
                bad(key, f"{short(front[key])}: {exc}")
            else:
                if seconds <= 0:
                    bad(key, f"{short(front[key])}: must be more than zero")
                values[key] = seconds
    for key in ("lock", "model", "verify"):
        if key in front and front[key] is not None:
            value = front[key]
            if not isinstance(value, str) or not value.strip():
                bad(key, f"{short(value)}: expected a non-empty string")
            elif "\n" in value and key != "verify":
                bad(key, f"{short(value)}: must be one line")
            else:
                values[key] = value.strip()
    for key in ("yolo", "sandbox"):
        if key in front:
            if not isinstance(front[key], bool):
                bad(key, f"{short(front[key])}: expected true or false")
            else:
                values[key] = front[key]
    for key, choices in (("isolation", ISOLATIONS), ("on_limit", ON_LIMIT), ("pr", PR_MODES)):
        if key in front:
            value = front[key]
            if value not in choices:
                bad(key, f"{short(value)}: expected one of {', '.join(choices)}{near(str(value), choices)}")
            else:
                values[key] = value
    if "max_cost_usd" in front:
        value = front["max_cost_usd"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value <= 1_000_000  # also keeps a 400-digit int away from float()
        ):
            bad("max_cost_usd", f"{short(value)}: expected a positive number of US dollars (at most 1000000)")
        else:
            values["max_cost_usd"] = float(value)
    if "retry" in front and front["retry"] is not None:
        values["retry"] = parse_retry(front["retry"], failure_classes, bad)
    _plan_keys(front, bad, values)
    return values


def _plan_keys(front: Mapping[Any, Any], bad: Bad, values: dict[str, Any]) -> None:
    """``after``, ``priority``, ``not_before`` and ``profile``: the keys that place a job in a plan."""
    from aq_core.plan import parse_after

    if "after" in front:
        try:
            values["after"] = parse_after(front["after"])
        except ValueError as exc:
            bad("after", f"{short(front['after'])}: {exc}")
    if "priority" in front:
        value = front["priority"]
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > PRIORITY_RANGE:
            bad("priority", f"{short(value)}: expected a whole number (higher runs first; default 0)")
        else:
            values["priority"] = value
    if "not_before" in front:
        from aq_core.when import parse_when  # here: datetime is slow to import

        try:
            values["not_before"] = parse_when(front["not_before"])
        except ValueError as exc:
            bad("not_before", f"{short(front['not_before'])}: {exc}")
    if "profile" in front:
        value = front["profile"]
        if not isinstance(value, str) or not value.strip():
            bad("profile", f"{short(value)}: expected the name of a profile in config.yaml")
        else:
            values["profile"] = value.strip()


def _engines(value: Any, installed: Collection[str] | None, bad: Bad) -> tuple[str, ...]:
    if value is None:
        bad("engine", "missing (required: the name of an installed engine)")
        return ()
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        bad("engine", f"{short(value)}: expected an engine name or a list of names")
        return ()
    names = [n.strip() for n in names]
    if installed is not None:
        known = [n for n in names if n in installed]
        listing = ", ".join(sorted(installed)) or "none"
        if not known:
            for name in names:
                bad("engine", f"{name!r} is not installed (installed: {listing}){near(name, installed)}")
            return ()
    if len(set(names)) != len(names):
        bad("engine", f"{short(value)}: an engine is listed twice")
    return tuple(names)


def _command(value: Any, bad: Bad) -> tuple[str, ...] | str | None:
    if isinstance(value, str) and value.strip():
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value)
    ):
        return tuple(str(v) for v in value)
    bad("command", f"{short(value)}: expected a command string or a non-empty list of arguments")
    return None


def _cwd(value: Any, path: Path, default: Path | None, check: bool, bad: Bad) -> Path:
    if value is None:
        if default is None:
            bad("cwd", "missing (set cwd: to the directory the agent works in)")
            return Path(".")
        return default
    if not isinstance(value, str) or not value.strip():
        bad("cwd", f"{short(value)}: expected a directory path")
        return Path(".")
    try:
        cwd = Path(os.path.expanduser(value.strip()))
        if not cwd.is_absolute():
            base = default if default is not None else path.parent
            cwd = (base / cwd).resolve() if base is not None else cwd
        if check and not cwd.is_dir():
            bad("cwd", f"{short(value)}: no such directory")
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the filesystem
        bad("cwd", f"{short(value)}: not a usable path ({getattr(exc, 'strerror', None) or exc})")
        return Path(".")
    return cwd


def parse_retry(value: Any, failure_classes: Collection[str] | None, bad: Bad) -> RetryPolicy:
    """Validate ``retry:``; report problems through ``bad(key, message)`` (``failure_classes`` None: any class)."""
    from aq_core.retry import CORE_FAILURE_CLASSES, ENGINE_FAILURE_CLASSES, NO_RETRY, RetryPolicy

    if not isinstance(value, Mapping):
        bad("retry", f"{short(value)}: expected a mapping with max, backoff and on")
        return NO_RETRY
    args: dict[str, Any] = {}
    for key in value:
        if key not in RETRY_KEYS:
            bad("retry", f"unknown key {short(key)}{near(str(key), RETRY_KEYS)}")
    if "max" in value:
        m = value["max"]
        if isinstance(m, bool) or not isinstance(m, int) or m < 0 or m > 1000:
            bad("retry.max", f"{short(m)}: expected a whole number from 0 to 1000")
        else:
            args["max"] = m
    for key in ("backoff", "max_backoff"):
        if key in value and value[key] is not None:
            try:
                args[key] = parse_duration(value[key])
            except ValueError as exc:
                bad(f"retry.{key}", f"{short(value[key])}: {exc}")
    for key, low, high in (("factor", 1.0, 100.0), ("jitter", 0.0, 1.0)):
        if key in value:
            v = value[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
                bad(f"retry.{key}", f"{short(v)}: expected a number from {low:g} to {high:g}")
            else:
                args[key] = float(v)
    if "on" in value:
        on = value["on"]
        if isinstance(on, str):
            on = [on]
        known = set(CORE_FAILURE_CLASSES) | set(ENGINE_FAILURE_CLASSES) | set(failure_classes or ())
        if not isinstance(on, list) or not all(isinstance(c, str) for c in on):
            bad("retry.on", f"{short(on)}: expected a list of failure classes")
        else:
            for c in on:
                if failure_classes is not None and c not in known:
                    bad("retry.on", f"unknown failure class {c!r}{near(c, known)} (known: {', '.join(sorted(known))})")
            args["on"] = tuple(on)
    return RetryPolicy(**args)
