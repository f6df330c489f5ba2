"""The aq plugin contract: one function per hook; each docstring is what a plugin author relies on.

A plugin is a module (or object) with functions marked ``@aq_core.hookimpl`` whose names are the
hooks below, registered under the entry point group ``aq``::

    [project.entry-points.aq]
    myengine = "aq_myengine"

Hooks are called with keyword arguments only; an implementation may accept a subset of them, so
adding an argument here is safe for existing plugins. Every hook answers one question about one
engine or work tree: they are ``firstresult`` hooks, and a plugin returns ``None`` for anything that
is not its own (``if engine != "myengine": return None``). Pluggy calls the most recently
registered plugin first; the core's own fallbacks are ``trylast`` and run only when no plugin
answered.

Plugin settings: whatever ``config.yaml`` holds under ``plugins: {<engine or distribution name>:
{...}}`` reaches the hooks as a read-only mapping (``ctx.settings`` in ``launch``, ``settings`` in
``parse_usage`` and ``classify_failure``, ``config.plugins`` in ``notify``); aq does not check it.

Failures: a hook that raises is reported as one line naming the plugin's distribution and the hook,
never as a traceback; what follows is said under each hook. ``AQ_TRACE_PLUGINS=1`` reports every
call (hook, plugin, duration, whether it answered). Prices: an engine declares its models' prices in
``Engine.prices``; the core only multiplies.

The helpers every engine parser needs (streamed JSON lines, safe loads, numbers, reset times, one-line
details) are in ``aq_core.enginekit``. Run the contract test kit against your plugin (see
``aq_core.testing.EngineContract``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aq_core.checkpoint import CheckpointContext
    from aq_core.config import QueueConfig
    from aq_core.engine import Engine, Failure, LaunchContext, LaunchSpec, Outcome
    from aq_core.usage import Usage

hookspec = pluggy.HookspecMarker("aq")
hookimpl = pluggy.HookimplMarker("aq")


@hookspec
def register_engines() -> list[Engine]:
    """Return the engines this plugin provides (an empty list or ``None`` for none).

    Called once per process when the plugins load. Every plugin's list is collected. When two
    plugins provide the same name, the most recently registered one wins and ``aq engines`` and
    ``aq run`` print a warning naming both distributions. Declare your models' list prices in
    ``Engine.prices`` (``{model-id prefix: ModelPrice(...)}``) so that aq can estimate a cost your
    engine does not print. A plugin that raises here provides no engines.
    ``aq run`` print a warning naming both distributions.

    Declare in ``Engine.state_dirs`` every file or directory the engine writes outside the work
    tree (its login and session state: ``("~/.myengine",)``): a ``sandbox: true`` job runs the
    engine with everything else read-only but its work tree and a private ``TMPDIR``. Side files
    at ``<LaunchContext.log_path>.<suffix>`` named in argv or env are made writable too.
    """


@hookspec(firstresult=True)
def launch(engine: str, ctx: LaunchContext) -> LaunchSpec | None:
    """Return how to start ``engine`` for one attempt, or ``None`` if ``engine`` is not yours.

    Called once per attempt, after the work tree is checkpointed and before the process starts.
    Stops at first non-None result.

    :param engine: the engine name the job asked for.
    :param ctx: the job, the attempt number, the resolved executable (``ctx.executable``, from
        ``AQ_<ENGINE>_BIN``, then the queue config, then ``PATH``), the working directory, the
        path of the private prompt file, the engine session to resume (``ctx.session_id``) and
        your settings from ``config.yaml`` (``ctx.settings``).
    :return: a ``LaunchSpec``: ``argv[0]`` must be ``ctx.executable``. Run headless, in the
        engine's machine-readable output mode where one exists. Honour ``ctx.job.yolo`` (run
        without permission prompts) and ``ctx.job.model`` (pass it with the engine's model flag).
        Deliver the prompt on stdin where the engine accepts it, else through ``ctx.prompt_file``;
        the prompt must never appear in argv unless the engine offers no other way. When
        ``ctx.executable`` is ``None`` (not installed), raise ``aq_core.errors.AqError`` with one line
        saying so: the job becomes ``invalid``. Any other exception is reported as a plugin failure
        and the attempt ends as a ``crash`` (the job's retry policy applies).

    The core spawns the process in its own process group with the environment plus ``env`` plus
    ``AQ_JOB_ID`` and ``AQ_ATTEMPT``, streams stdout and stderr to the attempt's log, enforces the
    timeout (TERM to the group, a grace period, KILL) and never lets the plugin supervise.
    """


@hookspec(firstresult=True)
def parse_usage(engine: str, log_path: Path, settings: Mapping[str, Any]) -> Usage | None:
    """Return the usage in this attempt's log, or ``None`` if ``engine`` is not yours.

    Called once after every attempt (also a failed, killed or timed-out one); its figures are
    recorded in the job's meta. Stops at first non-None result.

    :param engine: the engine that ran the attempt.
    :param log_path: the attempt's log: the engine's stdout and stderr interleaved, plus lines the
        core wrote that start with ``aq:``. It may be hundreds of MB and may end in a torn line.
    :param settings: your settings from ``config.yaml`` (read-only; accept it only if you need it).
    :return: a ``Usage`` whose seven fields (``model``, ``tokens_in``, ``tokens_out``,
        ``tokens_cached``, ``cost_usd``, ``turns``, ``tool_calls``) are filled only from what the
        log says: a figure the log does not contain stays ``None``, never 0 and never a guess.
        ``tokens_in`` includes cache reads and writes; ``tokens_cached`` is cache reads only;
        ``tokens_out`` includes reasoning; ``cost_usd`` is only a USD figure the engine printed.
        Put the engine's session id in ``extra["session_id"]`` and raw figures in ``extra``.

    Must stream the file in constant memory (``aq_core.enginekit.iter_lines`` or ``iter_json``),
    must not raise on any input (garbage, binary, truncation), and must trust only top-level records
    of the engine's own format: text the agent printed (a fake summary, JSON inside a tool result)
    must not count. If it raises anyway, the failure is reported and the attempt has no figures.
    """


@hookspec(firstresult=True)
def classify_failure(engine: str, outcome: Outcome, settings: Mapping[str, Any]) -> Failure | None:
    """Name how an attempt ended, or return ``None`` to let the core decide.

    Called after every engine exit (before ``verify`` runs). Stops at first non-None result; the
    core's fallback answers last: ``timeout`` if the timeout ended it, ``crash`` for a non-zero
    exit, ``ok`` otherwise.

    :param engine: the engine that ran the attempt.
    :param outcome: the exit code, whether the timeout ended it, the log path and the end time.
    :param settings: your settings from ``config.yaml`` (read-only; accept it only if you need it).
    :return: a ``Failure`` whose ``cls`` is ``ok``, one of the core classes (``timeout``,
        ``verify_failed``, ``crash``) or one this engine declared in ``Engine.failure_classes``
        (for example ``auth_error``, ``rate_limited``, ``usage_limit``). For limits, set
        ``reset_at`` (epoch seconds) when the engine printed when the limit resets
        (``aq_core.enginekit.reset_at``). Keep ``detail`` one short line
        (``aq_core.enginekit.detail``). Return ``None`` for outcomes you do not recognise. Read the
        log streaming, as ``parse_usage``.

    The class drives what happens next: retry (``retry.on``), an engine pause (limits) or failure.
    If it raises, the failure is reported and the core's own classes apply.
    """


@hookspec(firstresult=True)
def checkpoint(stage: str, ctx: CheckpointContext) -> dict[str, str] | None:
    """Preserve the work in ``ctx.workdir``; return the meta keys to record, or ``None`` if not yours.

    Stops at first non-None result. The built-in git plugin answers for work trees inside a git
    repository; a plugin for another VCS answers for its own and returns ``None`` otherwise.

    :param stage: ``prepare``: before the engine starts (create or resume the job's work branch;
        may return ``workdir``, a different directory to run the engine in, such as a worktree).
        ``commit``: after the engine stopped, on every exit path (success, failure, timeout,
        cancel, a stop of the runner, orphan recovery): save everything the engine changed.
        ``finish``: the job reached ``done/`` (after its last ``commit``): clean up what ``prepare``
        made that is no longer needed (the git plugin removes its own worktree; the branch stays).
    :param ctx: a ``aq_core.checkpoint.CheckpointContext``: ``job_id`` (names the work branch, e.g.
        ``aq/wip/<id>``); ``workdir`` (the job's ``cwd`` at ``prepare``, where the engine ran at
        ``commit``); ``result`` (the attempt's class at ``commit``: ``ok``, ``timeout``,
        ``stopped``, ``orphaned``, ...; ``None`` at ``prepare``); ``meta`` (the job's meta so far,
        last value of each key: earlier attempts' ``wip_branch``, ``wip_base``, ``workdir``, so a
        retried job resumes from its checkpoint); ``isolation`` (``inplace`` or ``worktree``);
        ``protected`` (branch names that must never be committed to, reset or moved); ``log`` (call
        with one line to report something: it goes to the runner's output and the job's log);
        ``settings`` (your own settings, ``plugins: {<your entry point name>: {...}}`` in
        ``config.yaml``; an empty mapping when there are none). New fields may be added to the
        context; existing ones keep their meaning.
    :return: meta to append, e.g. ``wip_branch``, ``wip_base``, ``workdir`` at prepare;
        ``wip_commit``, ``files_changed``, ``lines_added``, ``lines_deleted`` at commit. Never
        raise for a work tree in an unusual state: log what was skipped and return what you have.
    """


@hookspec(firstresult=True)
def work_lock(workdir: Path, isolation: str) -> str | None:
    """Return a lock name that serialises jobs sharing this work tree, or ``None``.

    Called before a job is picked. Jobs that run in place in the same repository must not run at
    the same time (each leaves HEAD on its own work branch), so the git plugin returns a name
    derived from the repository's top level for ``isolation == "inplace"``. Stops at first
    non-None result.

    The lock holds among the runners of this host only: a work tree is a path, and the same path
    on another host (runners sharing a PostgreSQL store) is another tree. aq scopes the name itself
    (``aq_core.store.host_lock``); return the plain name.
    """


@hookspec
def notify(event: str, record: Mapping[str, object], config: QueueConfig, log: Callable[[str], None]) -> None:
    """Tell the outside world something happened; every plugin that implements it is called.

    Called by the runner on a background thread (never blocking a job), once per event:

    - ``job_finished``: a job reached ``done/`` or ``failed/``; ``record`` is its ``aq insights JOB
      --json`` object plus ``"event"``.
    - ``engine_paused``: an engine hit a usage or rate limit; ``record`` has ``event``, ``engine``,
      ``until`` (epoch seconds), ``reason`` (the class) and ``job`` (the id that hit it).
    - ``engine_resumed``: a pause ended or was lifted by ``aq resume``; same keys as above.
    - ``queue_drained``: ``aq run --once`` emptied the queue and ``config.yaml`` has
      ``report_on_drain: true``; ``record`` is the ``aq report --json`` object for the jobs finished
      during that run, plus ``markdown`` (the same report as ``aq report --markdown``).

    The record never contains the prompt. :param config: the queue's settings; a plugin's own
    settings live under ``plugins: {<its name>: {...}}`` in ``config.yaml`` (``config.plugins``),
    which aq does not check. :param log: report one line (it goes to
    the runner's output). Return nothing; an exception is reported in one line and ignored. Work longer than a few
    seconds must honour ``config.notify_timeout``: ``aq run --once`` waits that long for pending
    notifications before it exits.
    """
