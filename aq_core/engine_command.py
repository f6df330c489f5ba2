"""The built-in ``command`` engine: runs any CLI the job names, with the prompt on stdin."""

from __future__ import annotations

import os
from pathlib import Path

from aq_core.engine import Engine, LaunchContext, LaunchSpec
from aq_core.hookspecs import hookimpl
from aq_core.usage import Usage

NAME = "command"


@hookimpl
def register_engines() -> list[Engine]:
    return [Engine(name=NAME, binary=None)]


@hookimpl
def launch(engine: str, ctx: LaunchContext) -> LaunchSpec | None:
    if engine != NAME:
        return None
    command = ctx.job.command
    if isinstance(command, str):
        # A string is a shell command line, as a user would type it.
        argv = [os.environ.get("SHELL_FOR_AQ", "/bin/sh"), "-c", command]
    else:
        argv = list(command or ())
    env = {"AQ_MODEL": ctx.job.model} if ctx.job.model else {}
    if ctx.job.yolo:
        env["AQ_YOLO"] = "1"
    return LaunchSpec(argv=argv, env=env, prompt="stdin")


@hookimpl
def parse_usage(engine: str, log_path: Path) -> Usage | None:
    if engine != NAME:
        return None
    # An arbitrary program prints no usage aq can trust: every figure is honestly absent.
    return Usage()
