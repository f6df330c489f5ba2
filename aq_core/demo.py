"""The demo: a real queue and a real git repo in a temp dir, jobs run by a scripted agent.

Run it with ``python -m aq_core.demo`` (``--keep`` leaves the temp dir for you to look at).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

AGENT = '''\
#!/usr/bin/env python3
"""A scripted agent: reads its prompt on stdin and edits the repo as a real agent would."""
import os, sys, time
prompt = sys.stdin.read()
job, attempt = os.environ["AQ_JOB_ID"], int(os.environ["AQ_ATTEMPT"])
print(f"scripted agent: job {job}, attempt {attempt}, prompt of {len(prompt)} characters")
if job == "add-greeting":
    open("greeting.py", "w").write('print("hello from aq")\\n')
    print("wrote greeting.py")
elif job == "fix-typo":
    text = open("README.md").read().replace("teh", "the")
    open("README.md", "w").write(text)
    print("fixed a typo in README.md")
elif job == "flaky-tests":
    if attempt == 1:
        print("the test server was not ready; giving up this time", file=sys.stderr)
        sys.exit(1)
    open("tests.txt", "w").write("all green\\n")
    print("tests written on the second try")
elif job == "too-slow":
    open("partial.txt", "w").write("half done\\n")
    time.sleep(60)
'''

JOBS = {
    "add-greeting": ("verify: python3 greeting.py\n", "Add a greeting script that prints a friendly hello."),
    "fix-typo": ("", "Fix the typo in README.md."),
    "flaky-tests": (
        "retry:\n  max: 1\n  backoff: 1s\n  on: [crash]\n",
        "Write the tests; the test server may be slow to start.",
    ),
    "too-slow": ("timeout: 2s\ngrace: 1s\n", "Refactor everything (this one will run out of time)."),
}


def sh(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="aq-demo-"))
    try:
        run_demo(base)
    finally:
        if args.keep:
            print(f"\nthe demo's files are in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


def run_demo(base: Path) -> None:
    env = dict(os.environ)
    env.setdefault("GIT_AUTHOR_NAME", "aq demo")
    env.setdefault("GIT_AUTHOR_EMAIL", "demo@aq.invalid")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    root, repo, jobs = base / "queue", base / "repo", base / "jobs"
    repo.mkdir()
    jobs.mkdir()
    (repo / "README.md").write_text("# demo\n\nThis is teh demo project.\n")
    sh("git", "init", "-q", "-b", "main", cwd=repo, env=env)
    sh("git", "add", "-A", cwd=repo, env=env)
    sh("git", "-c", "commit.gpgsign=false", "commit", "-q", "-m", "initial", cwd=repo, env=env)
    agent = base / "agent.py"
    agent.write_text(AGENT)
    agent.chmod(0o755)
    paths = []
    for job_id, (extra, prompt) in JOBS.items():
        path = jobs / f"{job_id}.md"
        front = f"engine: command\ncommand: [{sys.executable!r}, {str(agent)!r}]\ncwd: {repo}\n{extra}"
        path.write_text(f"---\n{front}---\n{prompt}\n")
        paths.append(str(path))

    aq = [sys.executable, "-m", "aq_core", "--root", str(root)]

    def step(title: str, *cmd: str) -> None:
        print(f"\n$ aq {' '.join(cmd)}    # {title}", flush=True)
        subprocess.run([*aq, *cmd], env=env, check=False)

    print(
        textwrap.dedent(f"""\
        aq demo: a queue in {root}
                 a git repo in {repo} (on main)
                 {len(paths)} jobs for a scripted agent, run through the `command` engine""")
    )
    step("queue the jobs", "add", *paths)
    step("run them all (two at a time; jobs in one repo take turns)", "run", "--once", "--workers", "2")
    step("where every job stands", "status")
    step("what each job took, and a rollup per engine", "insights")
    step("the night on one page, ready to paste into a pull request", "report", "--markdown")
    print("\n$ git branch -a    # each job's work is on its own aq/wip/<id> branch; main is untouched", flush=True)
    print(sh("git", "branch", "-a", cwd=repo, env=env), end="")
    print("$ git log --oneline main", flush=True)
    print(sh("git", "log", "--oneline", "main", cwd=repo, env=env), end="")


if __name__ == "__main__":
    raise SystemExit(main())
