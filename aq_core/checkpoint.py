"""The ``checkpoint`` hook's context: what a VCS plugin is told about the work it preserves."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CheckpointContext:
    """One job's work tree at one stage of one attempt (see the ``checkpoint`` hook).

    :param job_id: the job's id (names the work branch, e.g. ``aq/wip/<id>``).
    :param workdir: the job's ``cwd`` (at ``prepare``) or where the engine ran (at ``commit``, ``finish``).
    :param result: the attempt's class at ``commit`` (``ok``, ``timeout``, ``stopped``, ``orphaned``,
        ...) and ``ok`` at ``finish``; ``None`` at ``prepare``.
    :param meta: the job's meta so far (last value of each key): earlier attempts' ``wip_branch``,
        ``wip_base``, ``workdir``, so a retried job resumes from its checkpoint.
    :param isolation: ``inplace`` or ``worktree`` (the job's ``isolation:``).
    :param protected: branch names that must never be committed to, reset or moved.
    :param log: call with one line to report something (the runner's output and the job's log).
    :param settings: this plugin's own settings, ``plugins: {<its name>: {...}}`` in ``config.yaml``
        (its entry point name); an empty mapping when there are none. aq does not check them.
    :param base_commit: at ``prepare``, a checkpoint this job should build on when it starts fresh:
        the ``wip_commit`` of the one job it waits for (``after:``); a plugin starts the work there
        when that commit is in the job's repository, and ignores it otherwise. None: start as usual.
    """

    job_id: str
    workdir: Path
    result: str | None
    meta: Mapping[str, str]
    isolation: str
    protected: tuple[str, ...]
    log: Callable[[str], None]
    settings: Mapping[str, Any] = field(default_factory=dict)
    base_commit: str | None = None
