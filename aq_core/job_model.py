"""The ``Job`` value: a validated job, as the runner and the engines see it (``job.parse_job`` makes it).

Its own module so that ``aq add``, which checks job files but builds no ``Job``, imports no
``dataclasses`` (with ``inspect``, a tenth of its start-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aq_core.retry import NO_RETRY, RetryPolicy

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
    after: tuple[str, ...] = ()  # runs only once every job named here is done
    priority: int = 0  # higher runs first; equal priorities oldest first
    not_before: float | None = None  # epoch seconds: not eligible before
    profile: str | None = None  # the config's profile its keys started from

    @property
    def engine(self) -> str:
        """The first engine asked for (the others are fallbacks)."""
        return self.engines[0]
