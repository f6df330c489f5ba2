#!/usr/bin/env python3
"""A scripted stand-in for a coding agent, driven by its arguments (tests and the demo use it).

    stub_agent.py [--record FILE] [--write NAME=TEXT]... [--sleep S] [--exit N]
                  [--grandchild-ignores-term PIDFILE] [--print TEXT] [--stdin-to FILE]
                  [--fail-first N] [--count FILE]

It reads the whole prompt from stdin (as a real agent does), then acts.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--record", help="append 'start <job> <attempt> <t>' and 'end ...' lines here")
    p.add_argument("--write", action="append", default=[], help="NAME=TEXT: write a file in the cwd")
    p.add_argument("--append", action="append", default=[], help="NAME=TEXT: append a line to a file in the cwd")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--exit", type=int, default=0)
    p.add_argument("--grandchild-ignores-term", metavar="PIDFILE")
    p.add_argument("--print", action="append", default=[], dest="prints")
    p.add_argument("--stdin-to", metavar="FILE", help="save the prompt here (outside the queue)")
    p.add_argument("--fail-first", type=int, default=0, help="exit 1 on attempts up to N")
    p.add_argument("--ignore-term", action="store_true")
    args = p.parse_args()

    prompt = sys.stdin.read()
    job, attempt = os.environ.get("AQ_JOB_ID", "?"), os.environ.get("AQ_ATTEMPT", "?")
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.record:
        with open(args.record, "a") as fh:
            fh.write(f"start {job} {attempt} {time.time():.6f} {os.getpid()}\n")
    if args.stdin_to:
        with open(args.stdin_to, "w") as fh:
            fh.write(prompt)
    for spec in args.write:
        name, _, text = spec.partition("=")
        with open(name, "w") as fh:
            fh.write(text + "\n")
    for spec in args.append:
        name, _, text = spec.partition("=")
        with open(name, "a") as fh:
            fh.write(text + "\n")
    for text in args.prints:
        print(text, flush=True)
    if args.grandchild_ignores_term:
        child = subprocess.Popen(
            [sys.executable, "-c", "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]
        )
        with open(args.grandchild_ignores_term, "w") as fh:
            fh.write(str(child.pid))
    if args.sleep:
        time.sleep(args.sleep)
    code = args.exit
    if args.fail_first and attempt.isdigit() and int(attempt) <= args.fail_first:
        code = 1
    if args.record:
        with open(args.record, "a") as fh:
            fh.write(f"end {job} {attempt} {time.time():.6f} {os.getpid()}\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
