"""Re-capture the real-CLI fixture logs: the real ``copilot`` binary against a local stand-in model.

Copilot's BYOK mode (``COPILOT_PROVIDER_BASE_URL``, ``COPILOT_OFFLINE=true``) needs no GitHub login, so the real
CLI runs end to end offline against the tiny OpenAI-compatible server below, and prints its real JSONL events,
OpenTelemetry spans, exit summary and error output. Each case runs the argv and env that ``aq_copilot.launcher``
builds, with the prompt on stdin and stdout+stderr appended to one ``O_APPEND`` log, as the aq core does.

    python plugins/copilot/tests/capture.py /path/to/copilot OUTDIR [CASE ...]

Not part of the test run (it needs the CLI); the fixtures it wrote are committed beside the expected values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODEL = "fake-model-1"
USAGE = {
    "prompt_tokens": 1234,
    "completion_tokens": 56,
    "total_tokens": 1290,
    "prompt_tokens_details": {"cached_tokens": 1000},
    "completion_tokens_details": {"reasoning_tokens": 7},
}


def _bash(command: str) -> dict:
    args = {"command": command, "description": "run " + command, "mode": "sync", "initial_wait": 10}
    return {"name": "bash", "arguments": json.dumps(args)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    scenario: dict = {}

    def log_message(self, *args: object) -> None:
        pass

    def _send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._send_json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "aq"}]})

    def do_POST(self) -> None:  # noqa: N802
        size = int(self.headers.get("content-length") or 0)
        request = json.loads(self.rfile.read(size) or b"{}")
        error = self.scenario.get("error")
        if error:
            self._send_json(error["status"], {"error": error["body"]}, error.get("headers"))
            return
        messages = request.get("messages", [])
        users = json.dumps([m for m in messages if m.get("role") == "user"])
        tool = None
        if not any(m.get("role") == "tool" for m in messages):
            tool = _bash("echo sub") if "SUBAGENT" in users else self.scenario.get("tool")
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        base = {"id": "c1", "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL}

        def event(payload: dict) -> None:
            self.wfile.write(b"data: " + json.dumps({**base, **payload}).encode() + b"\n\n")
            self.wfile.flush()

        if tool:
            call = {"index": 0, "id": "call_" + os.urandom(4).hex(), "type": "function", "function": tool}
            event({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}]})
            event({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
            event({"choices": [], "usage": {**USAGE, "prompt_tokens": 2000, "completion_tokens": 30}})
        else:
            event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": self.scenario["answer"]}}]})
            event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            event({"choices": [], "usage": USAGE})
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


RATE_2H = (
    "Sorry, you've hit a rate limit that restricts the number of Copilot model requests you can make within a "
    "specific time period. Please try again in 2 hours. Please review our Terms of Service "
    "(https://docs.github.com/site-policy/github-terms/github-terms-of-service)."
)
WEEKLY = (
    "You've reached your weekly rate limit. Please wait for your limit to reset on December 1, 2026 at 2:00 AM "
    "or switch to auto model to continue. Learn More (https://docs.github.com/en/copilot/concepts/rate-limits)."
)

CASES = {
    "json-otel-tool": {"answer": "Done: the command printed hi.", "tool": _bash("echo hi")},
    "json-subagent": {
        "answer": "The helper finished.",
        "tool": {
            "name": "task",
            "arguments": json.dumps(
                {"description": "delegate", "prompt": "SUBAGENT echo", "agent_type": "general-purpose", "name": "h"}
            ),
        },
    },
    "json-no-otel": {"answer": "Hello.", "otel": False},
    "text-1.0.102": {"answer": "Done: the command printed hi.", "tool": _bash("echo hi"), "text": True},
    "json-limit-rate-2h": {"error": {"status": 429, "body": {"message": RATE_2H, "code": "user_global_rate_limited"}}},
    "json-limit-rate-limited": {
        "error": {"status": 429, "body": {"message": "rate limit exceeded", "code": "rate_limited"}}
    },
    "json-limit-weekly": {"error": {"status": 429, "body": {"message": WEEKLY, "code": "user_weekly_rate_limited"}}},
    "json-limit-quota-402": {
        "error": {"status": 402, "body": {"message": "You have no quota", "code": "quota_exceeded"}}
    },
    "text-limit-rate-2h": {
        "error": {"status": 429, "body": {"message": RATE_2H, "code": "user_global_rate_limited"}},
        "text": True,
    },
    "json-server-error": {"error": {"status": 500, "body": {"message": "internal error", "code": "server_error"}}},
}


def capture(copilot: str, outdir: Path, only: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from aq_copilot.launcher import build

    from aq_core.engine import LaunchContext
    from aq_core.job import Job

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    home = Path(tempfile.mkdtemp(prefix="aq-copilot-home-"))
    work = Path(tempfile.mkdtemp(prefix="aq-copilot-work-"))
    for name, scenario in CASES.items():
        if only and name not in only:
            continue
        Handler.scenario = scenario
        job = Job(id="capture", engines=("copilot",), cwd=work, prompt="say hi", yolo=True, model=MODEL)
        ctx = LaunchContext(job=job, attempt=1, executable=copilot, workdir=work, prompt_file=work / "p")
        spec = build(ctx)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GH_", "GITHUB_", "COPILOT_", "OTEL_"))}
        env.update(spec.env)
        env.update(
            HOME=str(home),
            COPILOT_OFFLINE="true",
            COPILOT_PROVIDER_BASE_URL=f"http://127.0.0.1:{server.server_port}/v1",
        )
        argv = list(spec.argv)
        # Text mode prints partial lines (an answer without its newline), which interleaved spans would split.
        if scenario.get("otel") is False or scenario.get("text"):
            env.pop("COPILOT_OTEL_FILE_EXPORTER_PATH", None)
            env.pop("COPILOT_OTEL_EXPORTER_TYPE", None)
        if scenario.get("text"):
            argv.remove("--output-format")
            argv.remove("json")
        log = outdir / f"{name}.log"
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
        proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.PIPE, stdout=fd, stderr=subprocess.STDOUT)
        os.close(fd)
        proc.communicate(b"say hi\n", timeout=300)
        text = log.read_text().replace(str(home), "/home/dev").replace(str(work), "/home/dev/repo")
        log.write_text(text)
        print(f"{name}: exit {proc.returncode}")
    server.shutdown()


if __name__ == "__main__":
    capture(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])
