"""The ``QueueConfig`` value: a queue's checked settings (``config.load_config`` makes it).

Its own module so that ``aq add``, which needs only the config's ``profiles:``, imports no
``dataclasses`` (with ``inspect``, a tenth of its start-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aq_core.engine import ModelPrice


@dataclass(frozen=True)
class QueueConfig:
    """Settings for every job of one queue."""

    engine_bins: dict[str, str] = field(default_factory=dict)
    protected_branches: tuple[str, ...] = ("main", "master")
    notify: str | list[str] | None = None
    notify_timeout: float = 30.0
    on_limit: str = "wait"
    limit_hold: float = 300.0
    limit_hold_max: float = 6 * 3600.0
    limit_margin: float = 60.0
    estimate_cost: bool = True
    report_on_drain: bool = False  # `run --once` sends `queue_drained` with the report (aq_core.report)
    plugins: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, float] = field(default_factory=dict)
    prices: dict[str, ModelPrice] = field(default_factory=dict)
    sandbox: bool = False  # the default of the job key ``sandbox:``
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> job keys (``profile:``)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def plugin_settings(self, *names: str) -> dict[str, Any]:
        """Return the settings under ``plugins:`` for the first of ``names`` that has some (else empty)."""
        for name in names:
            settings = self.plugins.get(name)
            if settings is not None:
                return settings
        return {}
