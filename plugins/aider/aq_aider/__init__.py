"""aq engine plugin for aider (``aider --message-file``, text output): launch, usage parsing and failure classes."""

from __future__ import annotations

from pathlib import Path

from aq_core.engine import Engine, Failure, LaunchContext, LaunchSpec, Outcome
from aq_core.hookspecs import hookimpl
from aq_core.usage import Usage

NAME = "aider"


@hookimpl
def register_engines() -> list[Engine]:
    from aq_aider.prices import PRICES

    return [
        Engine(
            name=NAME,
            binary="aider",
            failure_classes=("auth_error", "rate_limited", "usage_limit"),
            prices=PRICES,
        )
    ]


@hookimpl
def launch(engine: str, ctx: LaunchContext) -> LaunchSpec | None:
    if engine != NAME:
        return None
    # The submodule is not called ``launch``: importing it would replace this hook on the package.
    from aq_aider.argv import build

    return build(ctx)


@hookimpl
def parse_usage(engine: str, log_path: Path) -> Usage | None:
    if engine != NAME:
        return None
    from aq_aider.usage import parse

    return parse(log_path)


@hookimpl
def classify_failure(engine: str, outcome: Outcome) -> Failure | None:
    if engine != NAME:
        return None
    from aq_aider.failure import classify

    return classify(outcome)
