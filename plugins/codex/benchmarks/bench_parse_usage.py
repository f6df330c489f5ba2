"""Measure aq-codex's parse_usage on a generated ~200 MB log: MB/s and peak RSS.

    python plugins/codex/benchmarks/bench_parse_usage.py [--mb 200] [--mix typical|short-lines|text]

The log is written to a temporary directory and removed afterwards. ``typical`` is an ``exec --json`` run whose
lines are mostly command items carrying their output (about 850 bytes a line); ``short-lines`` has tiny command
outputs (about 190 bytes a line, over a million item lines), the worst case for a per-line parser; ``text`` is
the human output (about 50 bytes a line). The parse runs in a fresh child process so that its peak RSS is its own.
SPEC §10 target: >= 200 MB/s, < 100 MB.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "retry",
    "backoff",
    "cap",
    "pytest",
    "assertion",
    "error",
    "module",
]
THREAD = "019f9f3b-baa5-7412-a501-658c0f1e1cf2"


def _text(rng: random.Random, k: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(k))


def _j(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def write_json_log(path: Path, mb: int, max_output_lines: int) -> None:
    rng = random.Random(7)
    target, size, n, tokens = mb << 20, 0, 0, 0
    with path.open("w") as fh:
        fh.write("Reading prompt from stdin...\n")
        fh.write(_j({"type": "thread.started", "thread_id": THREAD}) + "\n" + _j({"type": "turn.started"}) + "\n")
        while size < target:
            lines = [
                _j({"type": "item.completed", "item": {"id": f"item_{n}", "type": "reasoning", "text": _text(rng, 8)}})
            ]
            n += 1
            cmd = f"/bin/bash -lc 'rg -n {rng.choice(WORDS)} src'"
            out = "\n".join(f"src/m{i}.py:{i}: {_text(rng, 10)}" for i in range(rng.randint(0, max_output_lines)))
            item = {"id": f"item_{n}", "type": "command_execution", "command": cmd}
            lines.append(
                _j({"type": "item.started", "item": {**item, "aggregated_output": "", "status": "in_progress"}})
            )
            lines.append(
                _j(
                    {
                        "type": "item.completed",
                        "item": {**item, "aggregated_output": out, "exit_code": 0, "status": "completed"},
                    }
                )
            )
            n += 1
            if rng.random() < 0.2:
                lines.append(
                    _j(
                        {
                            "type": "item.completed",
                            "item": {"id": f"item_{n}", "type": "agent_message", "text": _text(rng, 30)},
                        }
                    )
                )
                n += 1
            if rng.random() < 0.02:
                tokens += 50000
                usage = {"input_tokens": tokens, "cached_input_tokens": tokens // 2, "output_tokens": tokens // 50}
                lines += [_j({"type": "turn.completed", "usage": usage}), _j({"type": "turn.started"})]
            block = "\n".join(lines) + "\n"
            fh.write(block)
            size += len(block)
        usage = {"input_tokens": tokens + 1, "cached_input_tokens": tokens // 2, "output_tokens": tokens // 50}
        fh.write(_j({"type": "turn.completed", "usage": usage}) + "\n")


def write_text_log(path: Path, mb: int) -> None:
    rng = random.Random(3)
    target, size = mb << 20, 0
    with path.open("w") as fh:
        fh.write(f"OpenAI Codex v0.171.0\n--------\nmodel: gpt-6.2-sol\nsession id: {THREAD}\n--------\nuser\nhi\n")
        while size < target:
            lines = ["thinking", _text(rng, 5), "exec", "/bin/bash -lc 'rg x' in /w", " succeeded in 12ms:"]
            lines += [f"src/m{i}.py:{i}: {_text(rng, 8)}" for i in range(rng.randint(1, 20))]
            lines += ["codex", _text(rng, 30)]
            block = "\n".join(lines) + "\n"
            fh.write(block)
            size += len(block)
        fh.write("codex\nDone.\ntokens used\n1,234,567\nDone.\n")


CHILD = """
import resource, sys, time
from pathlib import Path
from aq_codex.usage import parse
path = Path(sys.argv[1])
start = time.perf_counter()
usage = parse(path)
seconds = time.perf_counter() - start
mb = path.stat().st_size / 1e6
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{mb:.0f} MB in {seconds:.2f} s = {mb / seconds:.0f} MB/s, peak RSS {rss:.1f} MB; {usage.figures()}")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--mix", choices=("typical", "short-lines", "text"), default="typical")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "codex.log"
        if args.mix == "text":
            write_text_log(log, args.mb)
        else:
            write_json_log(log, args.mb, 60 if args.mix == "typical" else 2)
        return subprocess.call([sys.executable, "-c", CHILD, str(log)])


if __name__ == "__main__":
    raise SystemExit(main())
