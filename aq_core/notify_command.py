"""The built-in notifier: runs the queue config's ``notify:`` command with the record as JSON on stdin."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Mapping

from aq_core.config import QueueConfig
from aq_core.hookspecs import hookimpl


@hookimpl
def notify(event: str, record: Mapping[str, object], config: QueueConfig, log: Callable[[str], None]) -> None:
    command = config.notify
    if not command:
        return
    argv = list(command) if isinstance(command, list) else ["/bin/sh", "-c", command]
    env = dict(os.environ, AQ_EVENT=event)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # so a timeout ends the notifier's children too
        )
    except OSError as exc:
        log(f"notify: cannot run {argv[0]!r}: {exc.strerror}")
        return
    try:
        _, err = proc.communicate(json.dumps(record).encode(), timeout=config.notify_timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log(f"notify: {event} notifier timed out after {config.notify_timeout:g}s and was killed")
        return
    except BrokenPipeError:
        proc.wait()
        err = b""
    if proc.returncode != 0:
        last = (err or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
        log(f"notify: {event} notifier exited {proc.returncode}" + (f": {last[0][:200]}" if last[0] else ""))
