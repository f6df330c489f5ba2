"""The echo engine: an example third-party aq plugin, written only against the documented contract."""

from __future__ import annotations

import re
from pathlib import Path

from aq_core.engine import Engine, LaunchContext, LaunchSpec
from aq_core.errors import AqError
from aq_core.hookspecs import hookimpl
from aq_core.usage import Usage, iter_lines

NAME = "echo"
# The agent prints one summary line of its own, e.g. ``echo-usage: in=12 out=3``.
USAGE_LINE = re.compile(rb"echo-usage: in=(\d+) out=(\d+)")


@hookimpl
def register_engines() -> list[Engine]:
    return [Engine(name=NAME, binary="aq-echo-agent")]


@hookimpl
def launch(engine: str, ctx: LaunchContext) -> LaunchSpec | None:
    if engine != NAME:
        return None
    if ctx.executable is None:
        raise AqError("echo: aq-echo-agent not found (set AQ_ECHO_BIN or put it on PATH)")
    argv = [ctx.executable]
    if ctx.job.yolo:
        argv.append("--yolo")
    if ctx.job.model:
        argv += ["--model", ctx.job.model]
    return LaunchSpec(argv=argv, prompt="stdin")


@hookimpl
def parse_usage(engine: str, log_path: Path) -> Usage | None:
    if engine != NAME:
        return None
    usage = Usage()
    for line in iter_lines(log_path):
        match = USAGE_LINE.fullmatch(line.rstrip(b"\r"))
        if match:  # the last summary wins: it covers the whole run
            usage.tokens_in, usage.tokens_out = int(match[1]), int(match[2])
    return usage
