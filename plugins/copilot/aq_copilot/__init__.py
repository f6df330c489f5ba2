"""The aq engine plugin for the GitHub Copilot CLI (``copilot``): launch, usage and failure classes."""

from __future__ import annotations

from pathlib import Path

from aq_core.engine import Engine, Failure, LaunchContext, LaunchSpec, Outcome
from aq_core.hookspecs import hookimpl
from aq_core.usage import Usage

NAME = "copilot"


@hookimpl
def register_engines() -> list[Engine]:
    from aq_copilot.prices import PRICES

    return [
        Engine(
            name=NAME,
            binary="copilot",
            failure_classes=("auth_error", "rate_limited", "usage_limit"),
            resumes_sessions=True,
            prices=PRICES,
            state_dirs=("~/.copilot",),
        )
    ]


@hookimpl
def launch(engine: str, ctx: LaunchContext) -> LaunchSpec | None:
    if engine != NAME:
        return None
    # The submodule is not called ``launch``: importing it would replace this hook on the package.
    from aq_copilot.launcher import build

    return build(ctx)


@hookimpl
def parse_usage(engine: str, log_path: Path) -> Usage | None:
    if engine != NAME:
        return None
    from aq_copilot.usage import parse
    from aq_copilot.usage_file import merge

    # Tokens: the usage file beside the log when Copilot wrote one, else what the log holds (OTel spans).
    return merge(parse(log_path), log_path)


@hookimpl
def classify_failure(engine: str, outcome: Outcome) -> Failure | None:
    if engine != NAME:
        return None
    from aq_copilot.failure import classify

    return classify(outcome)
