"""aq engine plugin for OpenAI Codex CLI (``codex exec``): launch, usage parsing and failure classes."""

from __future__ import annotations

from pathlib import Path

from aq_core.engine import Engine, Failure, LaunchContext, LaunchSpec, Outcome
from aq_core.hookspecs import hookimpl
from aq_core.usage import Usage

NAME = "codex"


@hookimpl
def register_engines() -> list[Engine]:
    from aq_codex.prices import PRICES

    return [
        Engine(
            name=NAME,
            binary="codex",
            failure_classes=("auth_error", "rate_limited", "usage_limit"),
            resumes_sessions=True,
            prices=PRICES,
            state_dirs=("~/.codex",),
        )
    ]


@hookimpl
def launch(engine: str, ctx: LaunchContext) -> LaunchSpec | None:
    if engine != NAME:
        return None
    from aq_codex.argv import build

    return build(ctx)


@hookimpl
def parse_usage(engine: str, log_path: Path) -> Usage | None:
    if engine != NAME:
        return None
    from aq_codex.usage import parse

    return parse(log_path)


@hookimpl
def classify_failure(engine: str, outcome: Outcome) -> Failure | None:
    if engine != NAME:
        return None
    from aq_codex.failure import classify

    return classify(outcome)
