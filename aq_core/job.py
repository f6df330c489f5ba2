"""The job model: a Markdown file with YAML frontmatter, validated into one ``Job``."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path

from aq_core.errors import JobInvalid, shown
from aq_core.job_keys import (
    ISOLATIONS,
    KEYS,
    ON_LIMIT,
    PR_MODES,
    PROFILE_KEYS,
    RETRY_KEYS,
    check_keys,
    parse_retry,
    short,
)

TYPE_CHECKING = False  # typing itself costs `aq add` milliseconds: only type checkers read these
if TYPE_CHECKING:
    from typing import Any

    from aq_core.job_model import Job

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_JOB_BYTES = 10 << 20  # the one job size limit: stores read no more than this (and a byte)

__all__ = [
    "ISOLATIONS",
    "KEYS",
    "ON_LIMIT",
    "PR_MODES",
    "PROFILE_KEYS",
    "RETRY_KEYS",
    "Job",
    "check_job",
    "parse_job",
    "parse_retry",
]


def __getattr__(name: str) -> object:
    # ``Job`` and ``DEFAULT_GRACE`` live in ``job_model``, imported on first use: a dataclass costs
    # `aq add` (which only checks jobs) a tenth of its start-up.
    if name in ("Job", "DEFAULT_GRACE"):
        from aq_core import job_model

        return getattr(job_model, name)
    raise AttributeError(f"module 'aq_core.job' has no attribute {name!r}")


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
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
) -> Job:
    """Validate a job file into a ``Job``; raise ``JobInvalid`` listing every problem found.

    :param engines: installed engine names (``None`` skips the check).
    :param failure_classes: classes ``retry.on`` may name beyond the core's.
    :param default_cwd: the cwd when the file sets none (where ``aq add`` ran).
    :param job_id: the id when it is not the file's stem (the queue knows it).
    :param profiles: the queue config's ``profiles:`` (``None``: a ``profile:`` key is not looked up).
    """
    from aq_core.job_model import Job

    job_id, prompt, values = check_job(
        path,
        data,
        engines=engines,
        failure_classes=failure_classes,
        default_cwd=default_cwd,
        job_id=job_id,
        check_cwd=check_cwd,
        profiles=profiles,
    )
    return Job(id=job_id, prompt=prompt, **values)


def check_job(
    path: Path,
    data: bytes,
    *,
    engines: Collection[str] | None = None,
    failure_classes: Collection[str] = (),
    default_cwd: Path | None = None,
    job_id: str | None = None,
    check_cwd: bool = True,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """Validate a job file as ``parse_job`` does; return (its id, its prompt, the ``Job`` fields it
    sets: the others take the ``Job``'s defaults) without building the ``Job`` (``aq add``'s way)."""
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

    common = {"path": path, "default_cwd": default_cwd, "check_cwd": check_cwd}
    values: dict[str, Any] = {}
    if "profile" in front and profiles is not None:
        values = _profile_values(front["profile"], profiles, engines, failure_classes, common, problems)
    own = check_keys(front, bad, engines=engines, failure_classes=failure_classes, **common)
    values.update(own)  # a job's key wins whole over its profile's (a retry mapping replaces the profile's)
    if "engines" not in values:
        bad("engine", "missing (required: the name of an installed engine)")
    engine_names = values.get("engines", ())
    if engine_names and "command" in engine_names and "command" not in values:
        bad("command", "required when engine is 'command' (a string or a list: the program to run)")
    if "cwd" not in values:
        values["cwd"] = _default_cwd(default_cwd, bad)

    if problems:
        raise JobInvalid(problems)
    return job_id, prompt, values


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
    from aq_core.frontmatter import read_simple

    simple = read_simple(front_text)  # most job files: no PyYAML import at all
    if simple is not None:
        return simple
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


def _default_cwd(default: Path | None, bad: Any) -> Path:
    if default is None:
        bad("cwd", "missing (set cwd: to the directory the agent works in)")
        return Path(".")
    return default


def _profile_values(
    name: Any,
    profiles: Mapping[str, Mapping[str, Any]],
    engines: Collection[str] | None,
    failure_classes: Collection[str],
    common: dict[str, Any],
    problems: list[str],
) -> dict[str, Any]:
    """The values of the profile a job names, checked like the job's own keys (problems name the profile)."""
    if not isinstance(name, str) or name.strip() not in profiles:
        if isinstance(name, str) and name.strip():
            listing = ", ".join(sorted(profiles)) or "none (add profiles: to the queue's config.yaml)"
            where = shown(common["path"])
            problems.append(f"{where}: profile: {short(name)}: no such profile (profiles: {listing})")
        return {}
    label = f"config.yaml: profiles.{name.strip()}"

    def bad(key: str | None, message: str) -> None:
        problems.append(f"{label}: {key}: {message}" if key else f"{label}: {message}")

    return check_keys(
        profiles[name.strip()],
        bad,
        engines=engines,
        failure_classes=failure_classes,
        allowed=PROFILE_KEYS,
        **common,
    )
