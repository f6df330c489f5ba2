"""Generate large, realistic attempt logs for each engine (the shapes of each plugin's tests/fixtures/).

Each generator writes about ``size`` bytes and returns the figures ``parse_usage`` should find, so the
benchmark also checks that the parser read the whole log. Text comes from slices of one random corpus
(building every word with ``random.choice`` would make 200 MB take a minute).

- claude: ``claude -p --output-format stream-json --verbose``: one assistant line per content block
  (thinking, text, tool_use; each repeats the message's usage), user lines with tool results (file
  reads, command output, mirrored in ``tool_use_result``), every 7th turn in a subagent, a final
  ``result`` (as ``stream-success.log``).
- codex: ``codex exec --json``: reasoning items, command items started/completed with their output,
  agent messages, ``turn.completed`` with cumulative usage (as ``exec_json_full_run.log``).
- copilot: ``copilot -p --output-format json`` with OpenTelemetry spans appended to the same log:
  turn events, message deltas, tool starts/outputs/completions, ``chat <model>`` spans carrying the
  tokens, background-task noise, the final ``result`` (as ``real-json-otel-tool.log``).
- devin: ``devin -p`` prints only the answer (no usage at all: ``parse_usage`` does not read it); the
  figures are in the ATIF export ``<log>.atif.json`` beside it (one JSON document, as
  ``atif-export.log.atif.json``), generated separately.
"""

from __future__ import annotations

import json
import random
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
    "retry",
    "backoff",
    "pytest",
    "assertion",
    "module",
    "config",
    "cache",
    "eviction",
    "request",
    "response",
    "handler",
    "session",
    "token",
    "async",
    "await",
    "yield",
    "lambda",
    "None",
    "True",
    "False",
    "raise",
    "except",
    "finally",
    "with",
    "open",
    "read",
    "write",
]
CLAUDE_MODEL = "claude-sonnet-4-5-20250929"
SESSION = "3f6c1a2b-0000-4000-8000-000000000001"
THREAD = "019f9f3b-baa5-7412-a501-658c0f1e1cf2"
COPILOT_MODEL = "claude-sonnet-4.5"


class Corpus:
    """Random text: ``text(n)`` returns about ``n`` characters of words (and newlines when ``lines``)."""

    def __init__(self, seed: int, size: int = 1 << 22) -> None:
        rng = random.Random(seed)
        words = rng.choices(WORDS, k=size // 5)
        for i in range(0, len(words), 12):  # code-like output: a line every dozen words
            words[i] = "\n" + words[i]
        self.body = " ".join(words)
        self.rng = rng

    def text(self, n: int) -> str:
        n = min(n, len(self.body) - 1)
        start = self.rng.randrange(0, len(self.body) - n)
        return self.body[start : start + n]


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


# -- claude ----------------------------------------------------------------------------------------


def claude_log(path: Path, size: int, seed: int = 7) -> dict[str, object]:
    corpus = Corpus(seed)
    rng = corpus.rng
    turns = tools = written = 0
    with open(path, "w") as out:
        init = {
            "type": "system",
            "subtype": "init",
            "cwd": "/home/dev/repo",
            "session_id": SESSION,
            "tools": ["Task", "Bash", "Edit", "Read", "Write"],
            "model": CLAUDE_MODEL,
            "permissionMode": "bypassPermissions",
            "claude_code_version": "2.1.197",
        }
        out.write(_dump(init))
        while written < size:
            turns += 1
            usage = {
                "input_tokens": 3,
                "cache_creation_input_tokens": rng.randint(100, 5000),
                "cache_read_input_tokens": rng.randint(10000, 90000),
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": rng.randint(1, 20),
                "service_tier": "standard",
            }
            parent = None if turns % 7 else f"toolu_parent{turns}"
            blocks: list[dict] = [
                {"type": "thinking", "thinking": corpus.text(rng.randint(100, 1200)), "signature": "Eq" + "x" * 200},
                {"type": "text", "text": corpus.text(rng.randint(50, 500))},
            ]
            calls = rng.randint(1, 3)
            for _ in range(calls):
                tools += 1
                if rng.random() < 0.6:
                    tool_input = {"command": corpus.text(60), "description": "Run tests"}
                else:
                    tool_input = {"file_path": "/home/dev/repo/m.py", "content": corpus.text(rng.randint(500, 15000))}
                blocks.append({"type": "tool_use", "id": f"toolu_{tools:024d}", "name": "Bash", "input": tool_input})
            for block in blocks:
                message = {
                    "model": CLAUDE_MODEL,
                    "id": f"msg_{turns:020d}",
                    "type": "message",
                    "role": "assistant",
                    "content": [block],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage,
                }
                line = _dump(
                    {
                        "type": "assistant",
                        "message": message,
                        "parent_tool_use_id": parent,
                        "session_id": SESSION,
                        "uuid": f"u-{turns}-{rng.getrandbits(32):08x}",
                    }
                )
                out.write(line)
                written += len(line)
            for k in range(calls):
                content = corpus.text(rng.randint(300, 60000))
                block = {"tool_use_id": f"toolu_{tools - k:024d}", "type": "tool_result", "content": content}
                line = _dump(
                    {
                        "type": "user",
                        "message": {"role": "user", "content": [block]},
                        "parent_tool_use_id": parent,
                        "session_id": SESSION,
                        "uuid": f"r-{tools - k}",
                        "tool_use_result": {"stdout": content, "stderr": "", "interrupted": False},
                    }
                )
                out.write(line)
                written += len(line)
        model_usage = {CLAUDE_MODEL: {"inputTokens": 1, "outputTokens": 2, "cacheReadInputTokens": 3, "costUSD": 1.5}}
        result = {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "num_turns": turns,
            "session_id": SESSION,
            "total_cost_usd": 1.5,
            "modelUsage": model_usage,
        }
        out.write(_dump(result))
    return {"turns": turns, "tool_calls": tools}


# -- codex -----------------------------------------------------------------------------------------


def codex_log(path: Path, size: int, seed: int = 7) -> dict[str, object]:
    corpus = Corpus(seed)
    rng = corpus.rng
    written = n = tokens = commands = 0
    with open(path, "w") as out:
        out.write("Reading prompt from stdin...\n")
        out.write(_dump({"type": "thread.started", "thread_id": THREAD}) + _dump({"type": "turn.started"}))
        while written < size:
            lines = [
                _dump(
                    {
                        "type": "item.completed",
                        "item": {"id": f"item_{n}", "type": "reasoning", "text": corpus.text(80)},
                    }
                )
            ]
            n += 1
            cmd = f"/bin/bash -lc 'rg -n {rng.choice(WORDS)} src'"
            output = corpus.text(rng.randint(0, 6000))
            item = {"id": f"item_{n}", "type": "command_execution", "command": cmd}
            lines.append(
                _dump(
                    {
                        "type": "item.started",
                        "item": {**item, "aggregated_output": "", "exit_code": None, "status": "in_progress"},
                    }
                )
            )
            lines.append(
                _dump(
                    {
                        "type": "item.completed",
                        "item": {**item, "aggregated_output": output, "exit_code": 0, "status": "completed"},
                    }
                )
            )
            n += 1
            commands += 1
            if rng.random() < 0.2:
                message = {"id": f"item_{n}", "type": "agent_message", "text": corpus.text(300)}
                lines.append(_dump({"type": "item.completed", "item": message}))
                n += 1
            if rng.random() < 0.02:
                tokens += 50000
                usage = {"input_tokens": tokens, "cached_input_tokens": tokens // 2, "output_tokens": tokens // 50}
                lines += [_dump({"type": "turn.completed", "usage": usage}), _dump({"type": "turn.started"})]
            block = "".join(lines)
            out.write(block)
            written += len(block)
        tokens += 1
        usage = {"input_tokens": tokens, "cached_input_tokens": tokens // 2, "output_tokens": tokens // 50}
        out.write(_dump({"type": "turn.completed", "usage": usage}))
    return {"tool_calls": commands, "tokens_in": tokens}


# -- copilot ---------------------------------------------------------------------------------------


def _event(kind: str, data: dict, rng: random.Random, ephemeral: bool = False) -> str:
    obj: dict[str, object] = {"type": kind, "data": data}
    if ephemeral:
        obj["ephemeral"] = True
    obj["id"] = f"{rng.getrandbits(128):032x}"
    obj["timestamp"] = "2026-11-26T13:07:14.832Z"
    obj["parentId"] = f"{rng.getrandbits(128):032x}"
    return _dump(obj)


def copilot_log(path: Path, size: int, seed: int = 7) -> dict[str, object]:
    corpus = Corpus(seed)
    rng = corpus.rng
    written = turns = tools = tokens_in = 0
    interaction = "9e0a6846-1c8e-4845-9538-520f9555dc92"
    with open(path, "w") as out:
        out.write(_event("session.tools_updated", {"model": COPILOT_MODEL}, rng, True))
        out.write(_event("user.message", {"content": "Fix the tests\n", "interactionId": interaction}, rng))
        while written < size:
            turn = str(turns)
            turns += 1
            lines = [
                _event("assistant.turn_start", {"turnId": turn, "interactionId": interaction}, rng),
                _event("model.call_start", {"turnId": turn, "model": COPILOT_MODEL}, rng, True),
            ]
            message_id = f"{rng.getrandbits(128):032x}"
            for _ in range(rng.randint(1, 6)):
                delta = {"messageId": message_id, "deltaContent": corpus.text(rng.randint(5, 80))}
                lines.append(_event("assistant.message_delta", delta, rng, True))
            calls = []
            for _ in range(rng.randint(0, 3)):
                tools += 1
                if rng.random() < 0.7:
                    args = {"command": corpus.text(50), "description": "run tests", "mode": "sync", "initial_wait": 10}
                    name = "bash"
                else:
                    args = {"path": "/home/dev/repo/app.py", "file_text": corpus.text(rng.randint(500, 12000))}
                    name = "create"
                calls.append((f"call_{tools:08x}", name, args))
            requests = [{"toolCallId": c, "name": n, "arguments": a, "type": "function"} for c, n, a in calls]
            message = {
                "messageId": message_id,
                "model": COPILOT_MODEL,
                "content": corpus.text(rng.randint(20, 600)),
                "toolRequests": requests,
                "interactionId": interaction,
                "turnId": turn,
            }
            lines.append(_event("assistant.message", message, rng))
            for call_id, name, args in calls:
                start = {"toolCallId": call_id, "toolName": name, "arguments": args, "turnId": turn}
                lines.append(_event("tool.execution_start", start, rng))
                output = corpus.text(rng.randint(100, 30000))
                for _ in range(rng.randint(2, 10)):
                    lines.append(_event("session.background_tasks_changed", {}, rng, True))
                shell = {"toolCallId": call_id, "stream": "stdout", "text": output, "sequence": 0}
                lines.append(_event("tool.shell_output", shell, rng, True))
                lines.append(
                    _event("tool.execution_partial_result", {"toolCallId": call_id, "partialOutput": output}, rng, True)
                )
                result = {"content": output, "detailedContent": output}
                done = {
                    "toolCallId": call_id,
                    "model": COPILOT_MODEL,
                    "turnId": turn,
                    "success": True,
                    "result": result,
                }
                lines.append(_event("tool.execution_complete", done, rng))
            prompt_tokens = rng.randint(2000, 90000)
            tokens_in += prompt_tokens
            span = {
                "type": "span",
                "traceId": f"{rng.getrandbits(128):032x}",
                "spanId": f"{rng.getrandbits(64):016x}",
                "parentSpanId": "5d44aad8ed51924c",
                "name": f"chat {COPILOT_MODEL}",
                "kind": 2,
                "attributes": {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "github",
                    "gen_ai.request.model": COPILOT_MODEL,
                    "gen_ai.usage.input_tokens": prompt_tokens,
                    "gen_ai.usage.output_tokens": rng.randint(10, 3000),
                    "gen_ai.usage.cache_read.input_tokens": prompt_tokens // 2,
                    "gen_ai.response.model": COPILOT_MODEL,
                    "github.copilot.cost": 0.0,
                    "github.copilot.turn_id": turn,
                },
                "status": {"code": 0},
                "events": [],
                "resource": {"attributes": {"service.version": "1.0.102", "service.name": "github-copilot"}},
            }
            lines.append(_dump(span))
            lines.append(_event("assistant.turn_end", {"turnId": turn}, rng))
            block = "".join(lines)
            out.write(block)
            written += len(block)
        usage = {"premiumRequests": 1, "totalApiDurationMs": 50, "sessionDurationMs": 469}
        result = {"type": "result", "sessionId": SESSION, "exitCode": 0, "usage": usage}
        out.write(_dump(result))
    return {"turns": turns, "tool_calls": tools, "tokens_in": tokens_in}


# -- devin -----------------------------------------------------------------------------------------


def devin_plain_log(path: Path, size: int, seed: int = 7) -> dict[str, object]:
    """The answer ``devin -p`` prints: prose and code blocks, nothing else (no usage: every figure absent)."""
    corpus = Corpus(seed)
    written = 0
    with open(path, "w") as out:
        while written < size:
            block = corpus.text(4000) + "\n\n```python\n" + corpus.text(2000) + "\n```\n\n"
            out.write(block)
            written += len(block)
    return {}


def _indented(step: dict) -> str:
    return "    " + json.dumps(step, indent=2).replace("\n", "\n    ")


def devin_atif_export(path: Path, size: int, seed: int = 7) -> dict[str, object]:
    """An ATIF trajectory (``devin -p --export``): one pretty-printed JSON document of ``size`` bytes."""
    corpus = Corpus(seed)
    rng = corpus.rng
    written = steps = prompt = completion = cached = 0
    head = {
        "schema_version": "ATIF-v1.7",
        "session_id": "b7c1e9d2-4f0a-4c57-9a1e-2f6d8e3a5b10",
        "agent": {"name": "devin", "version": "3000.11.1", "model_name": "claude-sonnet-4-5"},
    }
    with open(path, "w") as out:
        out.write(json.dumps(head, indent=2)[:-2] + ',\n  "steps": [\n')
        user = {"step_id": 1, "source": "user", "message": "Fix the flaky test.", "metadata": {"is_user_input": True}}
        out.write(_indented(user))
        steps = 1
        while written < size:
            steps += 1
            call_id = f"toolu_{steps:08d}"
            metrics = {
                "prompt_tokens": rng.randint(2000, 90000),
                "completion_tokens": rng.randint(10, 3000),
                "cached_tokens": 0,
                "extra": {"cache_creation_input_tokens": rng.randint(0, 5000)},
            }
            metrics["cached_tokens"] = metrics["prompt_tokens"] // 2
            prompt += metrics["prompt_tokens"]
            completion += metrics["completion_tokens"]
            cached += metrics["cached_tokens"]
            step = {
                "step_id": steps,
                "timestamp": "2026-11-20T10:00:12.000Z",
                "source": "agent",
                "model_name": "claude-sonnet-4-5",
                "message": corpus.text(rng.randint(50, 800)),
                "tool_calls": [
                    {"tool_call_id": call_id, "function_name": "exec", "arguments": {"command": corpus.text(60)}}
                ],
                "observation": {
                    "results": [{"source_call_id": call_id, "content": corpus.text(rng.randint(200, 30000))}]
                },
                "metrics": metrics,
                "metadata": {"generation_model": "claude-sonnet-4-5-20250929", "committed_credit_cost": 0.12},
            }
            text = ",\n" + _indented(step)
            out.write(text)
            written += len(text)
        final = {
            "total_prompt_tokens": prompt,
            "total_completion_tokens": completion,
            "total_cached_tokens": cached,
            "total_steps": steps,
        }
        out.write('\n  ],\n  "final_metrics": ' + json.dumps(final, indent=2).replace("\n", "\n  ") + "\n}\n")
    return {"tokens_in": prompt, "tool_calls": steps - 1}


GENERATORS = {
    "claude": claude_log,
    "codex": codex_log,
    "copilot": copilot_log,
    "devin": devin_plain_log,
}
