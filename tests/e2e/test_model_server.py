"""The scripted model server answers each API as the CLIs expect, without any CLI: a two-call session per API
(tool call, then final text after the tool result), side calls, schema answers and the real limit errors."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from e2e.model_server import ModelServer, Tokens


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read().decode()


def sse(text: str) -> list[tuple[str | None, Any]]:
    """(event name, decoded data) of each SSE event."""
    out = []
    for block in text.strip().split("\n\n"):
        event = None
        data = ""
        for line in block.splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        out.append((event, data if data == "[DONE]" else json.loads(data)))
    return out


SCRIPT = [
    Tokens(input=1000, cached=200, cache_write=50, output=30, reasoning=7),
    Tokens(input=10, cached=1300, output=5),
]


def test_anthropic_session_streams_a_write_then_the_final_text() -> None:
    with ModelServer(usage=SCRIPT, canary="CANARY-1") as srv:
        tools = [{"name": "Write", "input_schema": {"properties": {"file_path": {}, "content": {}}}}]
        system = [{"type": "text", "text": "Primary working directory: /work/repo\nIs a git repo: true"}]
        body = {
            "model": "claude-x",
            "stream": True,
            "tools": tools,
            "system": system,
            "messages": [{"role": "user", "content": "CANARY-1"}],
        }
        status, _, text = post(srv.url + "/v1/messages?beta=true", body, {"x-api-key": "secret-key"})
        events = sse(text)
        assert status == 200
        assert [e for e, _ in events] == [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        assert events[0][1]["message"]["usage"] == {
            "input_tokens": 1000,
            "cache_creation_input_tokens": 50,
            "cache_read_input_tokens": 200,
            "output_tokens": 1,
        }
        assert events[1][1]["content_block"]["name"] == "Write"
        assert json.loads(events[2][1]["delta"]["partial_json"]) == {
            "file_path": "/work/repo/hello.txt",
            "content": "hello from the scripted model\n",
        }
        assert events[4][1]["usage"]["output_tokens"] == 37
        assert events[4][1]["delta"]["stop_reason"] == "tool_use"
        body["messages"] += [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}
        ]
        events = sse(post(srv.url + "/v1/messages", body)[2])
        assert events[2][1]["delta"] == {"type": "text_delta", "text": "Done: the file is written."}
        assert events[4][1]["delta"]["stop_reason"] == "end_turn"
        # A side call (no tools) is a short text with the small usage, and not streamed when not asked.
        status, _, text = post(srv.url + "/v1/messages", {"model": "claude-x", "messages": []})
        assert json.loads(text)["content"] == [{"type": "text", "text": "OK"}]
        assert [a.kind for a in srv.answers()] == ["tool", "final", "side"]
        assert srv.expected_usage() == {"tokens_in": 1250 + 1310 + 20, "tokens_cached": 1500, "tokens_out": 37 + 5 + 3}
        assert srv.expected_usage(kinds=("tool", "final")) == {
            "tokens_in": 2560,
            "tokens_cached": 1500,
            "tokens_out": 42,
        }
        first = srv.requests[0]
        assert first.has_canary and "x-api-key" not in first.headers and first.api == "anthropic"
        assert not srv.requests[2].has_canary


def test_responses_custom_apply_patch_and_function_tools() -> None:
    with ModelServer(usage=SCRIPT, file="a.txt", content="one\ntwo\n") as srv:
        body = {"model": "gpt-5.5", "stream": True, "input": [], "tools": [{"type": "custom", "name": "apply_patch"}]}
        events = sse(post(srv.url + "/v1/responses", body)[2])
        assert events[0][0] == "response.created"
        item = events[-2][1]["item"]
        assert item["type"] == "custom_tool_call"
        assert item["input"] == "*** Begin Patch\n*** Add File: a.txt\n+one\n+two\n*** End Patch\n"
        usage = events[-1][1]["response"]["usage"]
        assert events[-1][0] == "response.completed"
        assert usage["input_tokens"] == 1250 and usage["input_tokens_details"] == {"cached_tokens": 200}
        assert usage["output_tokens"] == 37 and usage["output_tokens_details"] == {"reasoning_tokens": 7}
        # An unknown model gets only a shell tool: the file is written by a command, in the named cwd.
        body = {
            "model": "x",
            "stream": True,
            "input": [{"type": "message", "content": [{"type": "input_text", "text": "<cwd>/r</cwd>"}]}],
            "tools": [{"type": "function", "name": "exec_command", "parameters": {"properties": {"cmd": {}}}}],
        }
        item = sse(post(srv.url + "/v1/responses", body)[2])[-2][1]["item"]
        assert item["type"] == "function_call" and json.loads(item["arguments"]) == {
            "cmd": "printf %s 'one\ntwo\n' > /r/a.txt"
        }
        body["input"].append({"type": "function_call_output", "call_id": "c", "output": "ok"})
        events = sse(post(srv.url + "/v1/responses", body)[2])
        assert any(e == "response.output_text.delta" and d["delta"] == "Done: the file is written." for e, d in events)


@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_completions_stream_and_whole(include_usage: bool) -> None:
    with ModelServer(usage=SCRIPT) as srv:
        tools = [
            {
                "type": "function",
                "function": {"name": "write_file", "parameters": {"properties": {"file_path": {}, "content": {}}}},
            }
        ]
        body = {
            "model": "qwen",
            "stream": True,
            "stream_options": {"include_usage": include_usage},
            "tools": tools,
            "messages": [],
        }
        chunks = [d for _, d in sse(post(srv.url + "/v1/chat/completions", body)[2])]
        assert chunks[-1] == "[DONE]"
        call = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
        assert call["function"]["name"] == "write_file"
        arguments = chunks[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        assert json.loads(arguments) == {"file_path": "hello.txt", "content": "hello from the scripted model\n"}
        usage = chunks[-2]["usage"]
        assert usage["prompt_tokens"] == 1250 and usage["prompt_tokens_details"] == {"cached_tokens": 200}
        assert usage["completion_tokens"] == 37
        assert (chunks[-2]["choices"] == []) is include_usage
        body = dict(body, stream=False, messages=[{"role": "tool", "tool_call_id": "c", "content": "ok"}])
        whole = json.loads(post(srv.url + "/v1/chat/completions", body)[2])
        assert whole["choices"][0]["message"]["content"] == "Done: the file is written."
        assert whole["usage"]["prompt_tokens"] == 1310


def test_gemini_stream_router_and_count_tokens() -> None:
    with ModelServer(usage=SCRIPT) as srv:
        decl = {"name": "write_file", "parametersJsonSchema": {"properties": {"file_path": {}, "content": {}}}}
        contents = [{"role": "user", "parts": [{"text": "I'm currently working in the directory: /g/w\n"}]}]
        body = {"contents": contents, "tools": [{"functionDeclarations": [decl]}]}
        status, _, text = post(srv.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", body)
        chunk = sse(text)[0][1]
        assert chunk["candidates"][0]["content"]["parts"][0]["functionCall"] == {
            "name": "write_file",
            "args": {"file_path": "/g/w/hello.txt", "content": "hello from the scripted model\n"},
        }
        assert chunk["usageMetadata"] == {
            "promptTokenCount": 1250,
            "cachedContentTokenCount": 200,
            "candidatesTokenCount": 30,
            "thoughtsTokenCount": 7,
            "totalTokenCount": 1287,
        }
        assert chunk["modelVersion"] == "gemini-2.5-flash"
        schema = {
            "type": "object",
            "properties": {"complexity_reasoning": {"type": "string"}, "complexity_score": {"type": "integer"}},
        }
        router = {
            "contents": [],
            "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema},
        }
        answer = json.loads(post(srv.url + "/v1beta/models/flash:generateContent", router)[2])
        assert json.loads(answer["candidates"][0]["content"]["parts"][0]["text"]) == {
            "complexity_reasoning": "ok",
            "complexity_score": 10,
        }
        assert json.loads(post(srv.url + "/v1beta/models/flash:countTokens", {"contents": []})[2]) == {
            "totalTokens": 100
        }
        assert [a.kind for a in srv.answers(("tool", "final", "side", "other"))] == ["tool", "side", "other"]


def test_limit_answers_are_the_real_services() -> None:
    with ModelServer(limit="usage", resets_in=7200) as srv:
        status, headers, text = post(srv.url + "/v1/messages", {"model": "m", "messages": []})
        assert status == 429 and headers["retry-after"] == "7200"
        assert headers["anthropic-ratelimit-unified-status"] == "rejected"
        assert json.loads(text)["error"]["type"] == "rate_limit_error"
        before = int(time.time())
        status, _, text = post(srv.url + "/v1/responses", {"model": "m", "input": []})
        error = json.loads(text)["error"]
        assert status == 429 and error["type"] == "usage_limit_reached" and error["resets_in_seconds"] == 7200
        assert before + 7200 <= error["resets_at"] <= int(time.time()) + 7200
        status, _, text = post(srv.url + "/v1beta/models/m:streamGenerateContent?alt=sse", {"contents": []})
        error = json.loads(text)["error"]
        assert status == 429 and error["status"] == "RESOURCE_EXHAUSTED"
        assert error["details"][0]["violations"][0]["quotaId"].startswith("GenerateRequestsPerDay")
        assert error["details"][-1] == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7200s"}
        srv.limit = "rate"
        status, headers, text = post(srv.url + "/v1/chat/completions", {"model": "m", "messages": []})
        assert status == 429 and json.loads(text)["error"]["code"] == "rate_limit_exceeded"
        assert headers["retry-after"] == "1"
        srv.limit = None
        assert post(srv.url + "/v1/chat/completions", {"model": "m", "messages": []})[0] == 200
        assert [a.kind for a in srv.answers(("limit", "side"))] == ["limit", "limit", "limit", "limit", "side"]
        assert srv.expected_usage(("tool", "final")) == {"tokens_in": 0, "tokens_cached": 0, "tokens_out": 0}
