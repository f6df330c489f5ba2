"""aq's own errors: each prints as one line, never a traceback."""

from __future__ import annotations


class AqError(Exception):
    """An operational failure (exit 1): shown to the user as ``aq: <message>``."""

    exit_code = 1


class UsageError(AqError):
    """Bad usage or bad input (exit 2)."""

    exit_code = 2


class JobInvalid(UsageError):
    """A job file failed validation; ``problems`` lists every problem, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ConfigInvalid(UsageError):
    """The queue's ``config.yaml`` failed validation; ``problems`` lists every problem, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class UnknownEngine(UsageError):
    """No installed plugin provides the engine a job asked for."""


class StoreUnavailable(AqError):
    """A shared store (PostgreSQL) could not be reached for a while; it may come back."""


def shown(text: object) -> str:
    """``text`` as it is safe to print on one line (a path or id with control characters escaped)."""
    value = str(text)
    return value if value.isprintable() else repr(value)[1:-1]
