#!/usr/bin/env python3
"""A stand-in for the GitHub CLI (``AQ_GH_BIN``): records each call and prints a pull request URL.

Every call appends {"argv", "cwd", "body"} (the body is what came on stdin) to FAKE_GH_RECORD.
FAKE_GH_FAIL=1 makes it fail as gh does when GitHub refuses (exit 1, a message on stderr).
"""

import json
import os
import sys


def main() -> int:
    body = sys.stdin.read()
    record = os.environ["FAKE_GH_RECORD"]
    calls = 0
    if os.path.exists(record):
        with open(record) as fh:
            calls = sum(1 for _ in fh)
    with open(record, "a") as fh:
        fh.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "body": body}) + "\n")
    if os.environ.get("FAKE_GH_FAIL"):
        print("pull request create failed: GraphQL: Head sha can't be blank (createPullRequest)", file=sys.stderr)
        return 1
    print("Creating pull request into main\n")
    print(f"https://github.com/example/project/pull/{calls + 1}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
