"""Measure aq-claude's parse_usage on a generated ~200 MB stream-json log: MB/s and peak RSS.

    python plugins/claude/benchmarks/bench_parse_usage.py [--mb 200] [--mix typical|assistant-heavy]

The log is written to a temporary directory and removed afterwards. ``typical`` is dominated by tool results
(file reads, command output), as real Claude Code logs are; ``assistant-heavy`` has small tool results and large
tool inputs (file writes), the worst case for the parser because assistant frames must be read. The parse runs
in a fresh child process so that its peak RSS is its own. SPEC §10 target: >= 200 MB/s, < 100 MB.
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
    "def",
    "class",
    "return",
    "import",
    "self",
    "value",
    "data",
    "result",
    "error",
    "file",
    "path",
]
MODEL = "claude-sonnet-4-5-20250929"
SESSION = "3f6c1a2b-0000-4000-8000-000000000001"


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def generate(path: Path, megabytes: int, mix: str) -> tuple[int, int]:
    """Write the log; return (turns, tool calls)."""
    rng = random.Random(7)
    result_words = (50, 12000) if mix == "typical" else (5, 300)
    target = megabytes << 20
    turns = tools = written = 0
    with open(path, "w") as out:
        init = {
            "type": "system",
            "subtype": "init",
            "session_id": SESSION,
            "model": MODEL,
            "claude_code_version": "2.1.197",
        }
        out.write(_dump(init))
        while written < target:
            turns += 1
            usage = {
                "input_tokens": 3,
                "cache_creation_input_tokens": rng.randint(100, 5000),
                "cache_read_input_tokens": rng.randint(10000, 90000),
                "output_tokens": rng.randint(1, 20),
            }
            parent = None if turns % 7 else f"toolu_parent{turns}"
            blocks: list[dict] = [
                {"type": "thinking", "thinking": _text(rng, rng.randint(20, 200)), "signature": "x" * 200},
                {"type": "text", "text": _text(rng, rng.randint(10, 80))},
            ]
            calls = rng.randint(1, 3)
            for _ in range(calls):
                tools += 1
                if rng.random() < 0.6:
                    tool_input = {"command": _text(rng, 8)}
                else:
                    tool_input = {"file_path": "/repo/m.py", "content": _text(rng, rng.randint(100, 3000))}
                blocks.append({"type": "tool_use", "id": f"toolu_{tools:024d}", "name": "Bash", "input": tool_input})
            for block in blocks:
                message = {
                    "model": MODEL,
                    "id": f"msg_{turns:020d}",
                    "role": "assistant",
                    "content": [block],
                    "usage": usage,
                }
                line = _dump(
                    {"type": "assistant", "message": message, "parent_tool_use_id": parent, "session_id": SESSION}
                )
                out.write(line)
                written += len(line)
            for k in range(calls):
                content = _text(rng, rng.randint(*result_words))
                block = {"type": "tool_result", "tool_use_id": f"toolu_{tools - k:024d}", "content": content}
                line = _dump({"type": "user", "message": {"role": "user", "content": [block]}, "session_id": SESSION})
                out.write(line)
                written += len(line)
        model_usage = {MODEL: {"inputTokens": 1, "outputTokens": 2, "cacheReadInputTokens": 3, "costUSD": 1.5}}
        out.write(
            _dump(
                {
                    "type": "result",
                    "subtype": "success",
                    "num_turns": turns,
                    "total_cost_usd": 1.5,
                    "modelUsage": model_usage,
                }
            )
        )
    return turns, tools


_CHILD = """
import resource, sys, time
from pathlib import Path
from aq_claude.usage import parse_log
start = time.perf_counter()
usage = parse_log(Path(sys.argv[1]))
elapsed = time.perf_counter() - start
print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, usage.turns, usage.tool_calls)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--mix", choices=("typical", "assistant-heavy"), default="typical")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "claude.log"
        turns, tools = generate(log, args.mb, args.mix)
        size = log.stat().st_size / 1e6
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, "-c", _CHILD, str(log)], capture_output=True, text=True, check=True)
            elapsed, rss_kb, got_turns, got_tools = out.stdout.split()
            assert (int(got_turns), int(got_tools)) == (turns, tools), "the parser disagrees with the generator"
            rate = size / float(elapsed)
            print(
                f"{args.mix}: {size:.0f} MB in {float(elapsed):.2f} s = {rate:.0f} MB/s, peak RSS {int(rss_kb) / 1024:.0f} MB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
