"""The model APIs' wire formats for the scripted model server: reading a request (tools offered, tool results,
the working directory, a JSON schema asked for) and writing an answer (SSE events or a whole JSON body) or a
limit error, for the Anthropic Messages, OpenAI Responses, OpenAI Chat Completions and Gemini APIs."""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: Where each CLI names its working directory in the conversation it sends.
_CWD_PATTERNS = (
    re.compile(r"Primary working directory: ([^\s<]+)"),  # claude
    re.compile(r"<cwd>([^<]+)</cwd>"),  # codex
    re.compile(r"I'm currently working in the directory: ([^\s<]+)"),  # gemini, qwen
    re.compile(r"Working directory: ([^\s<]+)"),  # opencode
    re.compile(r"current working directory(?: is)?:? ([/][^\s<]+)", re.IGNORECASE),
)
_PATH_KEYS = ("file_path", "filePath", "path", "filename", "file", "absolute_path")
_CONTENT_KEYS = ("content", "contents", "text", "file_text")
_WRITE_TOOLS = ("Write", "write_file", "write", "create_file", "WriteFile")
_SHELL_TOOLS = ("exec_command", "shell", "run_shell_command", "bash", "Bash")


def api_for(path: str) -> str | None:
    """Which API a POST path belongs to."""
    if path.endswith("/messages") or path.endswith("/messages/count_tokens"):
        return "anthropic"
    if path.endswith("/responses"):
        return "responses"
    if path.endswith("/chat/completions"):
        return "chat"
    if re.search(r"/models/[^/:]+:(streamGenerateContent|generateContent|countTokens)$", path):
        return "gemini"
    return None


@dataclass(frozen=True)
class ToolUse:
    """A tool call to answer with: ``args`` for a function tool, ``text`` for a freeform (custom) tool."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    text: str | None = None


@dataclass
class Call:
    """What the server needs from one model request."""

    api: str
    model: str
    tools: dict[str, tuple[str, set[str]]]  # name -> (kind "function"|"custom", parameter names)
    has_tool_result: bool
    cwd: str | None
    schema: dict[str, Any] | None

    @property
    def wants_json(self) -> bool:
        return self.schema is not None

    @classmethod
    def parse(cls, api: str, body: dict[str, Any], path: str = "") -> Call:
        tools: dict[str, tuple[str, set[str]]] = {}
        result = False
        schema = None
        model = str(body.get("model") or "")
        if api == "anthropic":
            for t in body.get("tools") or []:
                if isinstance(t, dict) and t.get("name"):
                    tools[t["name"]] = ("function", set((t.get("input_schema") or {}).get("properties") or {}))
            result = any(
                isinstance(b, dict) and b.get("type") == "tool_result"
                for m in body.get("messages") or []
                if isinstance(m, dict) and isinstance(m.get("content"), list)
                for b in m["content"]
            )
        elif api == "responses":
            for t in body.get("tools") or []:
                if isinstance(t, dict) and t.get("name"):
                    kind = "custom" if t.get("type") == "custom" else "function"
                    tools[t["name"]] = (kind, set((t.get("parameters") or {}).get("properties") or {}))
            items = body.get("input") if isinstance(body.get("input"), list) else []
            result = any(
                isinstance(i, dict) and i.get("type") in ("function_call_output", "custom_tool_call_output")
                for i in items
            )
        elif api == "chat":
            for t in body.get("tools") or []:
                fn = t.get("function") if isinstance(t, dict) else None
                if isinstance(fn, dict) and fn.get("name"):
                    tools[fn["name"]] = ("function", set((fn.get("parameters") or {}).get("properties") or {}))
            result = any(
                isinstance(m, dict) and m.get("role") in ("tool", "function") for m in body.get("messages") or []
            )
            fmt = body.get("response_format") or {}
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                schema = (fmt.get("json_schema") or {}).get("schema") or {}
        elif api == "gemini":
            m = re.search(r"/models/([^/:]+):", path)
            model = m.group(1) if m else model
            for t in body.get("tools") or []:
                for d in (t.get("functionDeclarations") or []) if isinstance(t, dict) else []:
                    params = d.get("parametersJsonSchema") or d.get("parameters") or {}
                    tools[d["name"]] = ("function", set(params.get("properties") or {}))
            result = any(
                isinstance(p, dict) and "functionResponse" in p
                for c in body.get("contents") or []
                if isinstance(c, dict)
                for p in c.get("parts") or []
            )
            gen = body.get("generationConfig") or {}
            if gen.get("responseMimeType") == "application/json" or gen.get("responseJsonSchema"):
                schema = gen.get("responseJsonSchema") or gen.get("responseSchema") or {}
        return cls(api, model, tools, result, _find_cwd(body), schema)

    def write_call(self, file: str, content: str) -> ToolUse:
        """A call of the offered tool that writes ``file`` (relative to the working directory) with ``content``."""
        path = os.path.join(self.cwd, file) if self.cwd else file
        if "apply_patch" in self.tools:
            patch = "*** Begin Patch\n*** Add File: " + file + "\n"
            patch += "".join("+" + line + "\n" for line in content.splitlines()) + "*** End Patch\n"
            if self.tools["apply_patch"][0] == "custom":
                return ToolUse("apply_patch", text=patch)
            return ToolUse("apply_patch", {"input": patch})
        names = [n for n in _WRITE_TOOLS if n in self.tools] + sorted(self.tools)
        for name in names:
            params = self.tools[name][1]
            pkey = next((k for k in _PATH_KEYS if k in params), None)
            ckey = next((k for k in _CONTENT_KEYS if k in params), None)
            if pkey and ckey:
                return ToolUse(name, {pkey: path, ckey: content})
        command = f"printf %s {shlex.quote(content)} > {shlex.quote(path)}"
        for name in _SHELL_TOOLS:
            if name in self.tools:
                params = self.tools[name][1]
                if "cmd" in params:
                    return ToolUse(name, {"cmd": command})
                if name == "shell":
                    return ToolUse(name, {"command": ["bash", "-lc", command]})
                return ToolUse(name, {"command": command})
        raise ValueError(f"no file-writing tool among {sorted(self.tools)}")

    def schema_json(self) -> str:
        return json.dumps(_fill(self.schema or {}))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _find_cwd(body: Any) -> str | None:
    for text in _strings(body):
        for pattern in _CWD_PATTERNS:
            m = pattern.search(text)
            if m and m.group(1).startswith("/"):
                return m.group(1).rstrip(".,;:")
    return None


def _fill(schema: dict[str, Any], name: str = "") -> Any:
    """A value that satisfies a JSON schema (the router and next-speaker checks of gemini-cli ask for one)."""
    kind = str(schema.get("type", "object")).lower()
    if schema.get("enum"):
        return "user" if name == "next_speaker" else schema["enum"][0]
    if kind == "object":
        return {k: _fill(v if isinstance(v, dict) else {}, k) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 10 if "score" in name else 1
    if kind == "boolean":
        return False
    if name == "next_speaker":
        return "user"
    return "ok"


# -- answers ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    model: str
    tokens: Any  # model_server.Tokens
    payload: Any  # ToolUse or str
    ident: str
    created: int


def _sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return head + "data: " + (data if isinstance(data, str) else json.dumps(data)) + "\n\n"


def stream(api: str, reply: Reply, include_usage: bool = False) -> Iterator[str]:
    """The SSE events of one answer."""
    return {
        "anthropic": _anthropic_stream,
        "responses": _responses_stream,
        "chat": _chat_stream,
        "gemini": _gemini_stream,
    }[api](reply, include_usage)


def whole(api: str, reply: Reply) -> Any:
    """The non-streaming body of one answer."""
    if api == "anthropic":
        return _anthropic_message(reply, final=True)
    if api == "responses":
        return _responses_object(reply, "completed")
    if api == "chat":
        return _chat_whole(reply)
    return _gemini_chunk(reply)


def _anthropic_usage(t: Any, output: int) -> dict[str, int]:
    return {
        "input_tokens": t.input,
        "cache_creation_input_tokens": t.cache_write,
        "cache_read_input_tokens": t.cached,
        "output_tokens": output,
    }


def _anthropic_block(reply: Reply) -> dict[str, Any]:
    p = reply.payload
    if isinstance(p, ToolUse):
        return {"type": "tool_use", "id": "toolu_" + reply.ident, "name": p.name, "input": p.args}
    return {"type": "text", "text": p}


def _anthropic_message(reply: Reply, final: bool) -> dict[str, Any]:
    block = _anthropic_block(reply)
    return {
        "id": "msg_" + reply.ident,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [block] if final else [],
        "stop_reason": ("tool_use" if block["type"] == "tool_use" else "end_turn") if final else None,
        "stop_sequence": None,
        "usage": _anthropic_usage(reply.tokens, reply.tokens.tokens_out if final else 1),
    }


def _anthropic_stream(reply: Reply, _: bool) -> Iterator[str]:
    yield _sse({"type": "message_start", "message": _anthropic_message(reply, final=False)}, "message_start")
    block = _anthropic_block(reply)
    if block["type"] == "tool_use":
        start = dict(block, input={})
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    else:
        start = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": block["text"]}
    yield _sse({"type": "content_block_start", "index": 0, "content_block": start}, "content_block_start")
    yield _sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    stop = "tool_use" if block["type"] == "tool_use" else "end_turn"
    usage = _anthropic_usage(reply.tokens, reply.tokens.tokens_out)
    yield _sse(
        {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage},
        "message_delta",
    )
    yield _sse({"type": "message_stop"}, "message_stop")


def _responses_item(reply: Reply) -> dict[str, Any]:
    p = reply.payload
    if isinstance(p, ToolUse) and p.text is not None:
        return {
            "type": "custom_tool_call",
            "id": "ctc_" + reply.ident,
            "call_id": "call_" + reply.ident,
            "name": p.name,
            "input": p.text,
            "status": "completed",
        }
    if isinstance(p, ToolUse):
        return {
            "type": "function_call",
            "id": "fc_" + reply.ident,
            "call_id": "call_" + reply.ident,
            "name": p.name,
            "arguments": json.dumps(p.args),
            "status": "completed",
        }
    content = [{"type": "output_text", "text": p, "annotations": []}]
    return {
        "type": "message",
        "id": "msg_" + reply.ident,
        "role": "assistant",
        "status": "completed",
        "content": content,
    }


def _responses_object(reply: Reply, status: str) -> dict[str, Any]:
    t = reply.tokens
    done = status == "completed"
    return {
        "id": "resp_" + reply.ident,
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "model": reply.model,
        "output": [_responses_item(reply)] if done else [],
        "usage": {
            "input_tokens": t.tokens_in,
            "input_tokens_details": {"cached_tokens": t.cached},
            "output_tokens": t.tokens_out,
            "output_tokens_details": {"reasoning_tokens": t.reasoning},
            "total_tokens": t.tokens_in + t.tokens_out,
        }
        if done
        else None,
    }


def _responses_stream(reply: Reply, _: bool) -> Iterator[str]:
    seq = iter(range(1000))

    def ev(kind: str, **data: Any) -> str:
        return _sse({"type": kind, "sequence_number": next(seq), **data}, kind)

    yield ev("response.created", response=_responses_object(reply, "in_progress"))
    item = _responses_item(reply)
    if item["type"] == "message":
        yield ev("response.output_item.added", output_index=0, item=dict(item, status="in_progress", content=[]))
        part = {"type": "output_text", "text": "", "annotations": []}
        yield ev("response.content_part.added", item_id=item["id"], output_index=0, content_index=0, part=part)
        text = item["content"][0]["text"]
        yield ev("response.output_text.delta", item_id=item["id"], output_index=0, content_index=0, delta=text)
        yield ev("response.output_text.done", item_id=item["id"], output_index=0, content_index=0, text=text)
        yield ev(
            "response.content_part.done", item_id=item["id"], output_index=0, content_index=0, part=item["content"][0]
        )
    else:
        yield ev("response.output_item.added", output_index=0, item=item)
    yield ev("response.output_item.done", output_index=0, item=item)
    yield ev("response.completed", response=_responses_object(reply, "completed"))


def _chat_usage(t: Any) -> dict[str, Any]:
    return {
        "prompt_tokens": t.tokens_in,
        "completion_tokens": t.tokens_out,
        "total_tokens": t.tokens_in + t.tokens_out,
        "prompt_tokens_details": {"cached_tokens": t.cached},
        "completion_tokens_details": {"reasoning_tokens": t.reasoning},
    }


def _chat_tool_call(reply: Reply) -> dict[str, Any]:
    p = reply.payload
    return {
        "id": "call_" + reply.ident,
        "type": "function",
        "function": {"name": p.name, "arguments": json.dumps(p.args)},
    }


def _chat_whole(reply: Reply) -> dict[str, Any]:
    tool = isinstance(reply.payload, ToolUse)
    message: dict[str, Any] = {"role": "assistant", "content": None if tool else reply.payload}
    if tool:
        message["tool_calls"] = [_chat_tool_call(reply)]
    return {
        "id": "chatcmpl-" + reply.ident,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool else "stop"}],
        "usage": _chat_usage(reply.tokens),
    }


def _chat_stream(reply: Reply, include_usage: bool) -> Iterator[str]:
    base = {
        "id": "chatcmpl-" + reply.ident,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    yield chunk({"role": "assistant", "content": ""})
    tool = isinstance(reply.payload, ToolUse)
    if tool:
        call = _chat_tool_call(reply)
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                ]
            }
        )
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]})
    else:
        yield chunk({"content": reply.payload})
    finish = "tool_calls" if tool else "stop"
    if include_usage:
        yield chunk({}, finish)
        yield _sse({**base, "choices": [], "usage": _chat_usage(reply.tokens)})
    else:  # clients that do not ask still read usage from the last chunk (as many compatible servers send it)
        yield chunk({}, finish, usage=_chat_usage(reply.tokens))
    yield _sse("[DONE]")


def _gemini_chunk(reply: Reply) -> dict[str, Any]:
    t = reply.tokens
    p = reply.payload
    part = {"functionCall": {"name": p.name, "args": p.args}} if isinstance(p, ToolUse) else {"text": p}
    return {
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {
            "promptTokenCount": t.tokens_in,
            "cachedContentTokenCount": t.cached,
            "candidatesTokenCount": t.output,
            "thoughtsTokenCount": t.reasoning,
            "totalTokenCount": t.tokens_in + t.output + t.reasoning,
        },
        "modelVersion": reply.model,
        "responseId": reply.ident,
    }


def _gemini_stream(reply: Reply, _: bool) -> Iterator[str]:
    yield _sse(_gemini_chunk(reply))


# -- limits -----------------------------------------------------------------------------------------------------
def limit_error(api: str, kind: str, retry_after: int, resets_in: int) -> tuple[int, Any, dict[str, str]]:
    """(status, body, headers) of the real service's limit answer: ``kind`` is ``rate`` (a short throttle) or
    ``usage`` (a plan or quota window that resets in ``resets_in`` seconds)."""
    if kind == "auth":
        return _auth_error(api)
    now = int(time.time())
    wait = retry_after if kind == "rate" else resets_in
    if api == "anthropic":
        reset = now + wait
        headers = {
            "retry-after": str(wait),
            "anthropic-ratelimit-unified-status": "rejected",
            "anthropic-ratelimit-unified-reset": str(reset),
            "anthropic-ratelimit-unified-representative-claim": "five_hour" if kind == "usage" else "seven_day",
            "anthropic-ratelimit-unified-5h-status": "rejected" if kind == "usage" else "allowed",
            "anthropic-ratelimit-unified-5h-reset": str(reset),
            "anthropic-ratelimit-unified-5h-utilization": "1.0" if kind == "usage" else "0.5",
            "anthropic-ratelimit-unified-fallback-percentage": "0.5",
            "request-id": "req_scripted_limit",
            "x-should-retry": "false",
        }
        message = "This request would exceed your account's rate limit. Please try again later."
        body = {
            "type": "error",
            "error": {"type": "rate_limit_error", "message": message},
            "request_id": "req_scripted_limit",
        }
        return 429, body, headers
    if api in ("responses", "chat"):
        if kind == "usage":
            error = {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": "plus",
                "resets_at": now + resets_in,
                "resets_in_seconds": resets_in,
            }
            return 429, {"error": error}, {"retry-after": str(resets_in)}
        message = (
            "Rate limit reached for scripted-model in organization org-scripted on tokens per min (TPM): "
            f"Limit 30000, Used 30000, Requested 1200. Please try again in {retry_after}s. "
            "Visit https://platform.openai.com/account/rate-limits to learn more."
        )
        error = {
            "message": message,
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
            "resets_in_seconds": retry_after,
        }
        headers = {
            "retry-after": str(retry_after),
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": f"{retry_after}s",
        }
        return 429, {"error": error}, headers
    quota = (
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
        if kind == "usage"
        else "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    )
    metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more information on this "
        f"error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for metric: {metric}, "
        f"limit: 50\nPlease retry in {wait}s."
    )
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {"quotaMetric": metric, "quotaId": quota, "quotaDimensions": {"location": "global"}, "quotaValue": "50"}
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{wait}s"},
    ]
    return 429, {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": details}}, {}


def _auth_error(api: str) -> tuple[int, Any, dict[str, str]]:
    """The real service's answer to an invalid API key."""
    if api == "anthropic":
        error = {"type": "authentication_error", "message": "invalid x-api-key"}
        return 401, {"type": "error", "error": error, "request_id": "req_scripted_auth"}, {"x-should-retry": "false"}
    if api in ("responses", "chat"):
        message = "Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com/account/api-keys."
        return (
            401,
            {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}},
            {},
        )
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {
            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
            "locale": "en-US",
            "message": "API key not valid. Please pass a valid API key.",
        },
    ]
    error = {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": details,
    }
    return 400, {"error": error}, {}
