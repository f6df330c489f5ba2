"""Fake engine executables (pointed at by AQ_<ENGINE>_BIN) printing the engines' real output formats."""

from __future__ import annotations

import json
import stat
import sys
from functools import partial
from pathlib import Path

FAKE = Path(__file__).parent / "agents" / "fake_engine.py"
CLAUDE_MODEL = "claude-sonnet-4-5-20250929"
# Engines print compact JSON; the plugins rely on that layout to skip lines fast.
compact = partial(json.dumps, separators=(",", ":"))


def claude_ok(cost: float = 0.04) -> list[str]:
    return [
        compact(
            {
                "type": "system",
                "subtype": "init",
                "session_id": "{session}",
                "model": CLAUDE_MODEL,
                "claude_code_version": "2.1.197",
            }
        ),
        compact(
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "num_turns": 2,
                "result": "done",
                "session_id": "{session}",
                "total_cost_usd": cost,
                "usage": {
                    "input_tokens": 10,
                    "cache_creation_input_tokens": 50,
                    "cache_read_input_tokens": 1000,
                    "output_tokens": 100,
                },
                "modelUsage": {
                    CLAUDE_MODEL: {
                        "inputTokens": 10,
                        "outputTokens": 100,
                        "cacheReadInputTokens": 1000,
                        "cacheCreationInputTokens": 50,
                        "costUSD": cost,
                    }
                },
            }
        ),
    ]


def claude_limit(reset_in: int) -> list[str]:
    # The shape of a real 2.1.x stream when the plan's window is used up (see the plugin's fixtures).
    text = "You've hit your limit · resets 2pm (America/Toronto)"
    return [
        compact(
            {
                "type": "system",
                "subtype": "init",
                "session_id": "{session}",
                "model": CLAUDE_MODEL,
                "claude_code_version": "2.1.197",
            }
        ),
        compact(
            {
                "type": "rate_limit_event",
                "rate_limit_info": {
                    "status": "rejected",
                    "resetsAt": f"{{reset+{reset_in}}}",
                    "rateLimitType": "five_hour",
                },
                "session_id": "{session}",
            }
        ).replace(f'"{{reset+{reset_in}}}"', f"{{reset+{reset_in}}}"),
        compact(
            {
                "type": "assistant",
                "message": {
                    "model": "<synthetic>",
                    "id": "m-limit",
                    "role": "assistant",
                    "content": [{"type": "text", "text": text}],
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
                "parent_tool_use_id": None,
                "session_id": "{session}",
                "error": "rate_limit",
            }
        ),
        compact(
            {
                "type": "result",
                "subtype": "success",
                "is_error": True,
                "api_error_status": 429,
                "num_turns": 1,
                "result": text,
                "session_id": "{session}",
                "total_cost_usd": 0,
                "usage": {
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
                "modelUsage": {},
            }
        ),
    ]


def codex_ok() -> list[str]:
    return [
        '{"type":"thread.started","thread_id":"019fb0a1-2c3d-7e4f-8a9b-0c1d2e3f4a5b"}',
        '{"type":"turn.started"}',
        '{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"Done."}}',
        '{"type":"turn.completed","usage":{"input_tokens":2000,"cached_input_tokens":1500,"output_tokens":300}}',
    ]


def codex_limit(reset_in: int) -> list[str]:
    message = f"You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in {reset_in} seconds."
    return [
        '{"type":"thread.started","thread_id":"019fb0a1-2c3d-7e4f-8a9b-0c1d2e3f4a5b"}',
        '{"type":"turn.started"}',
        compact({"type": "error", "message": message}),
        compact({"type": "turn.failed", "error": {"message": message}}),
    ]


class Fakes:
    """Fake engine executables (AQ_<ENGINE>_BIN) and what each call of them saw."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "fakes"
        self.dir.mkdir()
        self.env: dict[str, str] = {}

    def engine(self, name: str, calls: list[dict], session: str = "sess-1") -> Path:
        plan = self.dir / f"{name}.plan.json"
        plan.write_text(json.dumps({"calls": calls, "session": session}))
        record = self.dir / f"{name}.calls.jsonl"
        exe = self.dir / name
        exe.write_text(f'#!/bin/sh\nFAKE_PLAN={plan} FAKE_RECORD={record} exec {sys.executable} {FAKE} "$@"\n')
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
        self.env[f"AQ_{name.upper()}_BIN"] = str(exe)
        return record

    def calls(self, name: str) -> list[dict]:
        path = self.dir / f"{name}.calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
