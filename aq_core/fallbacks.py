"""The core's fallback hook implementations, consulted only when no plugin answers."""

from __future__ import annotations

from aq_core.engine import Failure, Outcome
from aq_core.hookspecs import hookimpl


@hookimpl(trylast=True)
def classify_failure(engine: str, outcome: Outcome) -> Failure:
    if outcome.timed_out:
        return Failure("timeout", detail="the job's timeout ended the engine")
    if outcome.exit_code != 0:
        code = outcome.exit_code
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        return Failure("crash", detail=f"engine ended with {how}")
    return Failure("ok")
