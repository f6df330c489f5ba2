#!/usr/bin/env python3
"""A stand-in for a real engine CLI (pointed at by AQ_<ENGINE>_BIN), replaying a plan of calls.

FAKE_PLAN is a JSON file: a list, one entry per call (the last entry repeats), each with
``lines`` (printed to stdout; ``{reset+N}`` becomes the epoch N seconds from now, ``{session}`` the
plan's session id), ``stderr`` (lines for stderr), ``files`` (written in the cwd), ``exit`` and
``sleep``. Every call appends {"argv", "attempt", "t", "saw"} to FAKE_RECORD.
"""

import json
import os
import re
import sys
import time


def main() -> int:
    with open(os.environ["FAKE_PLAN"]) as fh:
        plan = json.load(fh)
    record = os.environ["FAKE_RECORD"]
    calls = 0
    if os.path.exists(record):
        with open(record) as fh:
            calls = sum(1 for _ in fh)
    step = plan["calls"][min(calls, len(plan["calls"]) - 1)]
    prompt = sys.stdin.read()
    saw = sorted(n for n in os.listdir(".") if n.endswith(".txt"))
    with open(record, "a") as fh:
        fh.write(
            json.dumps(
                {
                    "argv": sys.argv[1:],
                    "attempt": os.environ.get("AQ_ATTEMPT"),
                    "t": time.time(),
                    "saw": saw,
                    "prompt_chars": len(prompt),
                }
            )
            + "\n"
        )
    for name, text in step.get("files", {}).items():
        with open(name, "w") as fh:
            fh.write(text + "\n")
    now = time.time()

    def fill(line: str) -> str:
        line = re.sub(r"\{reset\+(\d+(?:\.\d+)?)\}", lambda m: str(int(now + float(m.group(1)))), line)
        return line.replace("{session}", plan.get("session", "s-1"))

    for line in step.get("lines", []):
        print(fill(line), flush=True)
    for line in step.get("stderr", []):
        print(fill(line), file=sys.stderr, flush=True)
    time.sleep(step.get("sleep", 0))
    return step.get("exit", 0)


if __name__ == "__main__":
    raise SystemExit(main())
