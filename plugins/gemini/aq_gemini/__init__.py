"""aq engine plugin for Gemini CLI (``gemini -o stream-json``): launch, usage parsing and failure classes."""

from __future__ import annotations

from pathlib import Path

from aq_core.engine import Engine, Failure, LaunchContext, LaunchSpec, Outcome
from aq_core.hookspecs import hookimpl
from aq_core.usage import Usage

NAME = "gemini"
#: ``config_error``: the CLI refused its own set-up (an untrusted folder, an unknown flag or model).
FAILURE_CLASSES = ("auth_error", "rate_limited", "usage_limit", "config_error")


@hookimpl
def register_engines() -> list[Engine]:
    from aq_gemini.prices import PRICES

    return [Engine(name=NAME, binary="gemini", failure_classes=FAILURE_CLASSES, resumes_sessions=True, prices=PRICES)]


@hookimpl
def launch(engine: str, ctx: LaunchContext) -> LaunchSpec | None:
    if engine != NAME:
        return None
    from aq_gemini.argv import build

    return build(ctx)


@hookimpl
def parse_usage(engine: str, log_path: Path) -> Usage | None:
    if engine != NAME:
        return None
    from aq_gemini.usage import parse

    try:
        return parse(log_path)
    except Exception:  # the contract: never raise, whatever the log holds
        return Usage()


@hookimpl
def classify_failure(engine: str, outcome: Outcome) -> Failure | None:
    if engine != NAME:
        return None
    from aq_gemini.failure import classify

    try:
        return classify(outcome)
    except Exception:  # an unreadable log is not ours to judge: the core says timeout/crash/ok
        return None
