"""The job model: a Markdown file with YAML frontmatter, validated into one ``Job``."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aq_core.durations import parse_duration
from aq_core.errors import JobInvalid, shown
from aq_core.retry import CORE_FAILURE_CLASSES, ENGINE_FAILURE_CLASSES, NO_RETRY, RetryPolicy

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_JOB_BYTES = 10 << 20  # the one job size limit: stores read no more than this (and a byte)

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
)
RETRY_KEYS = ("max", "backoff", "factor", "max_backoff", "jitter", "on")
ISOLATIONS = ("inplace", "worktree")
ON_LIMIT = ("wait", "fail")
PR_MODES = ("draft", "ready")
DEFAULT_GRACE = 10.0


@dataclass(frozen=True)
class Job:
    """A validated job. ``prompt`` is never logged, recorded in meta or put in argv."""

    id: str
    engines: tuple[str, ...]
    cwd: Path
    prompt: str = field(repr=False)
    timeout: float | None = None
    lock: str | None = None
    yolo: bool = False
    model: str | None = None
    verify: str | None = None
    retry: RetryPolicy = NO_RETRY
    command: tuple[str, ...] | str | None = None
    isolation: str = "inplace"
    grace: float = DEFAULT_GRACE
    on_limit: str | None = None
    max_cost_usd: float | None = None
    pr: str | None = None  # open a pull request when the job ends ok: draft or ready (aq_core.pr)
    sandbox: bool | None = None  # None: the queue config's ``sandbox``
    stall_timeout: float | None = None

    @property
    def engine(self) -> str:
        """The first engine asked for (the others are fallbacks)."""
        return self.engines[0]


def job_id_for(path: Path) -> str:
    """Return the job id for a file name, or raise ``JobInvalid`` when the stem is not a valid id."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    if not JOB_ID.fullmatch(stem):
        raise JobInvalid(
            [
                f"{shown(path)}: bad job id {stem!r} (the file name must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}} plus .md)"
            ]
        )
    return stem


def split_frontmatter(text: str) -> tuple[str, str] | None:
    """Return (frontmatter, body) of a ``---`` delimited file, or None when there is none."""
    if not text.startswith("---"):
        return None
    first_nl = text.find("\n")
    if first_nl == -1 or text[:first_nl].strip() != "---":
        return None
    end = re.search(r"^---[ \t]*\r?$", text[first_nl + 1 :], re.MULTILINE)
    if not end:
        return None
    front = text[first_nl + 1 : first_nl + 1 + end.start()]
    body = text[first_nl + 1 + end.end() :]
    return front, body.lstrip("\r\n")


def _near(key: str, choices: Collection[str]) -> str:
    match = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decode_job_bytes(data: bytes) -> str:
    """Return the text of a job file, or raise ``ValueError`` naming why it is not one."""
    if not data.strip():
        raise ValueError("empty file")
    if len(data) > MAX_JOB_BYTES:
        raise ValueError(f"file too large (over {MAX_JOB_BYTES} bytes, the limit)")
    if b"\x00" in data:
        raise ValueError("binary file (contains NUL bytes), not a Markdown job")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (bad byte at offset {exc.start})") from None


def parse_job(
    path: Path,
    data: bytes,
    *,
    engines: Collection[str] | None = None,
    failure_classes: Collection[str] = (),
    default_cwd: Path | None = None,
    job_id: str | None = None,
    check_cwd: bool = True,
) -> Job:
    """Validate a job file into a ``Job``; raise ``JobInvalid`` listing every problem found.

    :param engines: installed engine names (``None`` skips the check).
    :param failure_classes: classes ``retry.on`` may name beyond the core's.
    :param default_cwd: the cwd when the file sets none (where ``aq add`` ran).
    :param job_id: the id when it is not the file's stem (the queue knows it).
    """
    where = shown(path)
    problems: list[str] = []

    def bad(key: str | None, message: str) -> None:
        problems.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")

    if job_id is None:
        try:
            job_id = job_id_for(path)
        except JobInvalid as exc:
            problems.extend(exc.problems)
            job_id = "invalid"
    try:
        text = decode_job_bytes(data)
    except ValueError as exc:
        bad(None, str(exc))
        raise JobInvalid(problems) from None
    parts = split_frontmatter(text)
    if parts is None:
        bad(None, "no YAML frontmatter (the file must start with a '---' line and close it with another)")
        raise JobInvalid(problems)
    front_text, prompt = parts
    front = _load_yaml(front_text, bad)
    if front is None:
        raise JobInvalid(problems)
    if not prompt.strip():
        bad(None, "the prompt (the text after the frontmatter) is empty")

    for key in front:
        if key not in KEYS:
            bad(None, f"unknown key {_short(key)}{_near(str(key), KEYS)}")

    values: dict[str, Any] = {}
    engine_names = _engines(front.get("engine"), engines, bad)
    values["engines"] = engine_names

    if "command" in front:
        values["command"] = _command(front["command"], bad)
    if engine_names and "command" in engine_names and "command" not in front:
        bad("command", "required when engine is 'command' (a string or a list: the program to run)")

    values["cwd"] = _cwd(front.get("cwd"), path, default_cwd, check_cwd, bad)
    for key in ("timeout", "grace", "stall_timeout"):
        if key in front and front[key] is not None:
            try:
                seconds = parse_duration(front[key])
            except ValueError as exc:
                bad(key, f"{_short(front[key])}: {exc}")
            else:
                if seconds <= 0:
                    bad(key, f"{_short(front[key])}: must be more than zero")
                values[key] = seconds
    for key in ("lock", "model", "verify"):
        if key in front and front[key] is not None:
            value = front[key]
            if not isinstance(value, str) or not value.strip():
                bad(key, f"{_short(value)}: expected a non-empty string")
            elif "\n" in value and key != "verify":
                bad(key, f"{_short(value)}: must be one line")
            else:
                values[key] = value.strip()
    for key in ("yolo", "sandbox"):
        if key in front:
            if not isinstance(front[key], bool):
                bad(key, f"{_short(front[key])}: expected true or false")
            else:
                values[key] = front[key]
    for key, choices in (("isolation", ISOLATIONS), ("on_limit", ON_LIMIT), ("pr", PR_MODES)):
        if key in front:
            value = front[key]
            if value not in choices:
                bad(key, f"{_short(value)}: expected one of {', '.join(choices)}{_near(str(value), choices)}")
            else:
                values[key] = value
    if "max_cost_usd" in front:
        value = front["max_cost_usd"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value <= 1_000_000  # also keeps a 400-digit int away from float()
        ):
            bad("max_cost_usd", f"{_short(value)}: expected a positive number of US dollars (at most 1000000)")
        else:
            values["max_cost_usd"] = float(value)
    if "retry" in front and front["retry"] is not None:
        values["retry"] = parse_retry(front["retry"], failure_classes, bad)

    if problems:
        raise JobInvalid(problems)
    return Job(id=job_id, prompt=prompt, **values)


_LOADER: Any = None


def yaml_loader() -> Any:
    """A safe YAML loader where only true/false are booleans.

    YAML 1.1 reads ``on``, ``yes`` and ``no`` as booleans, which would turn ``retry: {on: [...]}``
    into a ``True`` key and ``yolo: yes`` into a silent true.
    """
    global _LOADER
    if _LOADER is None:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        bool_tag = "tag:yaml.org,2002:bool"
        # Timestamps stay strings too: no job key is a date, and "2001-13-45" must not crash.
        dropped = (bool_tag, "tag:yaml.org,2002:timestamp")

        class Loader(base):  # type: ignore[misc,valid-type]
            pass

        Loader.yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag not in dropped]
            for first, resolvers in base.yaml_implicit_resolvers.items()
        }
        Loader.add_implicit_resolver(bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
        _LOADER = Loader
    return _LOADER


def _load_yaml(front_text: str, bad: Any) -> dict[str, Any] | None:
    import yaml

    try:
        front = yaml.load(front_text, Loader=yaml_loader())  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or "invalid YAML"
        bad(None, f"frontmatter is not valid YAML{where}: {reason}")
        return None
    except RecursionError:
        bad(None, "frontmatter is nested too deeply")
        return None
    except Exception as exc:  # a value YAML itself cannot build (!!bool maybe, a 5000-digit int, ...)
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        bad(None, f"frontmatter is not valid YAML: {reason}")
        return None
    if front is None:
        bad("engine", "missing (the frontmatter is empty)")
        return None
    if not isinstance(front, dict):
        bad(None, f"frontmatter must be a mapping of keys, got {type(front).__name__}")
        return None
    return front


def _engines(value: Any, installed: Collection[str] | None, bad: Any) -> tuple[str, ...]:
    if value is None:
        bad("engine", "missing (required: the name of an installed engine)")
        return ()
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        bad("engine", f"{_short(value)}: expected an engine name or a list of names")
        return ()
    names = [n.strip() for n in names]
    if installed is not None:
        known = [n for n in names if n in installed]
        listing = ", ".join(sorted(installed)) or "none"
        if not known:
            for name in names:
                bad("engine", f"{name!r} is not installed (installed: {listing}){_near(name, installed)}")
            return ()
        if len(names) == 1 and not known:
            return ()
    if len(set(names)) != len(names):
        bad("engine", f"{_short(value)}: an engine is listed twice")
    return tuple(names)


def _command(value: Any, bad: Any) -> tuple[str, ...] | str | None:
    if isinstance(value, str) and value.strip():
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value)
    ):
        return tuple(str(v) for v in value)
    bad("command", f"{_short(value)}: expected a command string or a non-empty list of arguments")
    return None


def _cwd(value: Any, path: Path, default: Path | None, check: bool, bad: Any) -> Path:
    if value is None:
        if default is None:
            bad("cwd", "missing (set cwd: to the directory the agent works in)")
            return Path(".")
        return default
    if not isinstance(value, str) or not value.strip():
        bad("cwd", f"{_short(value)}: expected a directory path")
        return Path(".")
    try:
        cwd = Path(os.path.expanduser(value.strip()))
        if not cwd.is_absolute():
            base = default if default is not None else path.parent
            cwd = (base / cwd).resolve() if base is not None else cwd
        if check and not cwd.is_dir():
            bad("cwd", f"{_short(value)}: no such directory")
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the filesystem
        bad("cwd", f"{_short(value)}: not a usable path ({getattr(exc, 'strerror', None) or exc})")
        return Path(".")
    return cwd


def parse_retry(value: Any, failure_classes: Collection[str], bad: Any) -> RetryPolicy:
    """Validate ``retry:``; report problems through ``bad(key, message)``."""
    if not isinstance(value, Mapping):
        bad("retry", f"{_short(value)}: expected a mapping with max, backoff and on")
        return NO_RETRY
    args: dict[str, Any] = {}
    for key in value:
        if key not in RETRY_KEYS:
            bad("retry", f"unknown key {_short(key)}{_near(str(key), RETRY_KEYS)}")
    if "max" in value:
        m = value["max"]
        if isinstance(m, bool) or not isinstance(m, int) or m < 0 or m > 1000:
            bad("retry.max", f"{_short(m)}: expected a whole number from 0 to 1000")
        else:
            args["max"] = m
    for key in ("backoff", "max_backoff"):
        if key in value and value[key] is not None:
            try:
                args[key] = parse_duration(value[key])
            except ValueError as exc:
                bad(f"retry.{key}", f"{_short(value[key])}: {exc}")
    for key, low, high in (("factor", 1.0, 100.0), ("jitter", 0.0, 1.0)):
        if key in value:
            v = value[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
                bad(f"retry.{key}", f"{_short(v)}: expected a number from {low:g} to {high:g}")
            else:
                args[key] = float(v)
    if "on" in value:
        on = value["on"]
        if isinstance(on, str):
            on = [on]
        known = set(CORE_FAILURE_CLASSES) | set(ENGINE_FAILURE_CLASSES) | set(failure_classes)
        if not isinstance(on, list) or not all(isinstance(c, str) for c in on):
            bad("retry.on", f"{_short(on)}: expected a list of failure classes")
        else:
            for c in on:
                if c not in known:
                    bad("retry.on", f"unknown failure class {c!r}{_near(c, known)} (known: {', '.join(sorted(known))})")
            args["on"] = tuple(on)
    return RetryPolicy(**args)
