"""The value types that cross the plugin contract: engine descriptions, launch specs, outcomes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aq_core.retry import CORE_FAILURE_CLASSES, ENGINE_FAILURE_CLASSES, LIMIT_CLASSES  # noqa: F401 (the contract's)

if TYPE_CHECKING:
    from aq_core.job import Job


PromptDelivery = Literal["stdin", "file", "argv"]


@dataclass(frozen=True)
class ModelPrice:
    """A model's list prices in US dollars per million tokens, for estimating a cost the engine did not print.

    :param input: uncached input tokens.
    :param cached: input tokens read from the prompt cache.
    :param output: output tokens (reasoning included).
    :param cache_write: input tokens written to the cache, when the engine reports them apart
        (``Usage.extra["tokens_cache_write"]``); ``None`` charges them as ``input``.
    """

    input: float
    cached: float
    output: float
    cache_write: float | None = None


@dataclass(frozen=True)
class Engine:
    """An engine a plugin provides.

    :param name: the value of ``engine:`` in a job file (``[a-z][a-z0-9_-]*``).
    :param binary: the executable looked up on ``PATH`` when neither ``AQ_<NAME>_BIN`` nor the queue
        config names one; ``None`` when the job itself names the program (the ``command`` engine).
    :param failure_classes: extra failure classes ``classify_failure`` may return for this engine.
    :param resumes_sessions: True when ``launch`` honours ``LaunchContext.session_id``.
    :param prices: the list prices of the models this engine runs, by model-id prefix (the longest
        matching prefix wins; ``"acme-2"`` matches ``acme-2`` and ``acme-2-20260101``, not ``acme-2.5``).
        They estimate ``cost_usd`` when the engine prints tokens but no cost; ``config.yaml``
        ``prices:`` overrides them. Empty: no estimates for this engine.
    :param state_dirs: the files and directories the engine itself writes outside the work tree
        (its login and session state), as ``~/...`` or absolute paths, never ``/`` or ``~``
        alone: in a ``sandbox: true`` job they are the only places outside the work tree and the
        private temporary directory the engine may write. Ones that do not exist when an attempt
        starts stay read-only in it (the user logs in outside the sandbox first).
    """

    name: str
    binary: str | None = None
    failure_classes: tuple[str, ...] = ()
    resumes_sessions: bool = False
    prices: Mapping[str, ModelPrice] = field(default_factory=dict, hash=False)
    state_dirs: tuple[str, ...] = ()

    @property
    def env_var(self) -> str:
        """The environment variable that overrides the executable, e.g. ``AQ_CLAUDE_BIN``."""
        return "AQ_" + self.name.upper().replace("-", "_") + "_BIN"

    def resolve(self, configured: str | None = None) -> str | None:
        """Return the executable: ``AQ_<NAME>_BIN``, then the queue config's value, then ``PATH``."""
        override = os.environ.get(self.env_var) or configured
        if override:
            return os.path.expanduser(override)
        if self.binary is None:
            return None
        return shutil.which(self.binary)

    def available(self, configured: str | None = None) -> bool:
        """True when the engine can start here: no executable needed, or the resolved one exists."""
        if self.binary is None:
            return True
        exe = self.resolve(configured)
        return exe is not None and shutil.which(exe) is not None


@dataclass(frozen=True)
class LaunchContext:
    """What the core knows about one attempt when it asks a plugin how to start the engine.

    :param job: the validated job (its ``prompt`` must not be put in argv when stdin works).
    :param attempt: 1 for the first start of the engine for this job, 2 for the next, ...
    :param executable: the resolved executable (``Engine.resolve``); ``None`` when not found.
    :param workdir: where the engine runs (the job's ``cwd``, or its worktree).
    :param prompt_file: where the core writes the prompt (mode 0600) when the spec asks for ``file``.
    :param session_id: the engine's own session to continue, when a previous attempt left one.
    :param max_cost_usd: the job's budget for this attempt, for engines with a budget flag.
    :param log_path: the attempt's log (what ``parse_usage`` will read); an engine that can write a
        usage side file may put it at ``<log_path>.<suffix>`` and read it back in ``parse_usage``.
    :param settings: this plugin's own settings, ``plugins: {<name>: {...}}`` in ``config.yaml`` (the
        plugin's engine or distribution name; empty when none); aq does not check them.
    """

    job: Job
    attempt: int
    executable: str | None
    workdir: Path
    prompt_file: Path
    session_id: str | None = None
    max_cost_usd: float | None = None
    log_path: Path | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LaunchSpec:
    """How to start an engine process. The core spawns and supervises it.

    :param argv: the full command line; ``argv[0]`` is the executable. Never the prompt when
        ``prompt`` is ``stdin`` or ``file``: argv is visible to every user through ``ps``.
    :param env: variables added to the runner's environment.
    :param prompt: ``stdin`` (the core writes the prompt to the process's stdin, then closes it),
        ``file`` (the core writes ``LaunchContext.prompt_file`` before the start and removes it after;
        argv refers to that path), or ``argv`` (the prompt is in argv: only for an engine that offers
        nothing else, and said in the plugin's README).
    :param prompt_text: what the engine is sent instead of the job's prompt (a short continuation
        prompt on a resumed session); ``None`` sends the job's prompt.
    """

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    prompt: PromptDelivery = "stdin"
    prompt_text: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How an engine process ended, given to ``classify_failure``.

    :param exit_code: the process's exit status (negative: killed by that signal); ``None`` if unknown.
    :param timed_out: aq ended the process: the job's ``timeout``, or its ``stall_timeout`` (the
        log stopped growing; the core then names the class ``stalled`` unless the engine names a
        cause of its own, such as a usage limit).
    :param log_path: the attempt's log (stdout and stderr of the engine, interleaved).
    :param finished_at: epoch seconds when the process ended (reset times count from it).
    """

    exit_code: int | None
    timed_out: bool
    log_path: Path
    finished_at: float


@dataclass(frozen=True)
class Failure:
    """A classified outcome: ``cls`` is ``ok``, a core class or one the engine declared.

    :param reset_at: epoch seconds when a ``usage_limit``/``rate_limited`` engine may be used again,
        when the engine printed it; ``None`` otherwise.
    :param detail: one short line for the user (never the prompt).
    :param session_lost: the engine could not continue the session it was asked to resume (it no
        longer exists): the next attempt starts a new one.
    """

    cls: str
    reset_at: float | None = None
    detail: str | None = None
    session_lost: bool = False

    @property
    def ok(self) -> bool:
        return self.cls == "ok"
