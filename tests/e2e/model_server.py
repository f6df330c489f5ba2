"""A scripted model server on loopback, so a REAL engine CLI can run a real session with no network.

It speaks the APIs the coding-agent CLIs call, streaming as they ask:

* Anthropic Messages: ``POST /v1/messages`` (SSE or JSON), ``/v1/messages/count_tokens`` (claude);
* OpenAI Responses: ``POST /v1/responses`` (SSE or JSON) (codex);
* OpenAI Chat Completions: ``POST /v1/chat/completions`` (SSE with ``stream_options.include_usage``, or JSON)
  (qwen, opencode, aider through litellm);
* Gemini: ``POST /v1beta/models/<m>:streamGenerateContent?alt=sse``, ``:generateContent`` (incl. gemini-cli's
  model-router call, answered with the JSON its schema asks for), ``:countTokens`` (gemini-cli).

Each answer is decided from the request alone, so one script serves any CLI:

* tools offered and no tool result in the conversation yet -> a call of the CLI's own file-writing tool that
  writes ``file`` with ``content`` (claude ``Write``, codex ``apply_patch`` custom tool or ``exec_command``,
  gemini/qwen ``write_file``, opencode ``write``, ...), with an absolute path when the request names its
  working directory;
* a tool result present -> the final text ``final_text``;
* no tools offered (titles, classifiers, routers) -> a short text (or the JSON a response schema asks for)
  with the small ``side`` usage.

Token numbers are scripted: the i-th tool/final answer reports ``usage[i % len(usage)]``, a side answer
``side``. Every answer's numbers are recorded, so a test computes what the CLI should report with
:meth:`ModelServer.expected_usage` (aq's conventions: ``tokens_in`` includes cache reads and writes,
``tokens_cached`` is cache reads, ``tokens_out`` includes reasoning).

``limit="rate"`` / ``limit="usage"`` makes every model call answer HTTP 429 the way the real service does:
Anthropic ``rate_limit_error`` with ``retry-after``, ``anthropic-ratelimit-unified-*`` and ``x-should-retry: false``
headers (so claude reports it at once instead of retrying for minutes); OpenAI
``rate_limit_exceeded`` / ``usage_limit_reached`` with ``resets_at`` and ``resets_in_seconds``; Gemini
``RESOURCE_EXHAUSTED`` with a ``google.rpc.RetryInfo`` ``retryDelay`` (per-minute quota for ``rate``,
per-day for ``usage``). ``limit="auth"`` answers each API's invalid-key error instead. The attribute may be
changed while the server runs.

Every request is logged in :attr:`ModelServer.requests` (method, path, API, what was answered, headers with
credentials removed, whether the body contains ``canary``). Example::

    from e2e.model_server import ModelServer, Tokens

    with ModelServer(file="hello.txt", content="hi\\n", usage=[Tokens(input=900, cached=100, output=40)]) as srv:
        env = {"ANTHROPIC_BASE_URL": srv.url, "ANTHROPIC_API_KEY": "test"}
        ...  # run the CLI
        assert srv.expected_usage() == {"tokens_in": 2000, "tokens_cached": 200, "tokens_out": 80}

The server binds 127.0.0.1 on a free port and serves from a daemon thread; ``close()`` (or leaving the
``with``) stops it. Stdlib only.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from e2e import wire

__all__ = ["Answer", "ModelServer", "Request", "Tokens"]

#: Headers never logged: they carry credentials.
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie", "proxy-authorization"})


@dataclass(frozen=True)
class Tokens:
    """One answer's token numbers: ``input`` uncached, ``cached`` cache reads, ``cache_write`` cache writes,
    ``output`` visible output, ``reasoning`` thinking tokens (each API reports them in its own shape)."""

    input: int = 0
    cached: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0

    @property
    def tokens_in(self) -> int:
        return self.input + self.cached + self.cache_write

    @property
    def tokens_out(self) -> int:
        return self.output + self.reasoning


@dataclass(frozen=True)
class Answer:
    """What the server answered: ``kind`` is ``tool`` (a file-writing tool call), ``final``, ``side``,
    ``limit`` or ``other``; ``tokens`` the usage it reported (None for limits and non-model endpoints)."""

    kind: str
    tokens: Tokens | None = None
    tool: str | None = None


@dataclass
class Request:
    """One logged request."""

    method: str
    path: str
    api: str
    headers: dict[str, str]
    has_canary: bool
    body: Any
    answer: Answer | None = None


@dataclass
class ModelServer:
    """The scripted server; see the module docstring. Use as a context manager or call ``start()``/``close()``."""

    file: str = "hello.txt"
    content: str = "hello from the scripted model\n"
    final_text: str = "Done: the file is written."
    side_text: str = "OK"
    usage: list[Tokens] = field(
        default_factory=lambda: [
            Tokens(input=1200, cached=300, cache_write=0, output=40, reasoning=0),
            Tokens(input=150, cached=1500, cache_write=0, output=12, reasoning=0),
        ]
    )
    side: Tokens = field(default_factory=lambda: Tokens(input=20, output=3))
    limit: str | None = None
    #: Seconds the limit answers announce: ``retry-after`` for ``rate``, the window's reset for ``usage``.
    retry_after: int = 1
    resets_in: int = 3 * 3600
    canary: str = ""
    model: str = ""
    requests: list[Request] = field(default_factory=list)
    _main: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None

    # -- life cycle -------------------------------------------------------------------------------------------
    def start(self) -> ModelServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="model-server", daemon=True).start()
        return self

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path: append ``/v1`` or ``/v1beta`` as the CLI expects)."""
        return f"http://127.0.0.1:{self.port}"

    # -- what a test reads ------------------------------------------------------------------------------------
    def answers(self, kinds: Iterable[str] = ("tool", "final", "side"), exclude: str | None = None) -> list[Answer]:
        """The answers of the given kinds, in order; ``exclude`` leaves out requests whose body contains that text
        (e.g. a CLI's background agent, recognised by its system prompt)."""
        wanted = set(kinds)
        with self._lock:
            picked = [r for r in self.requests if r.answer is not None and r.answer.kind in wanted]
        if exclude:
            picked = [r for r in picked if exclude not in json.dumps(r.body)]
        return [r.answer for r in picked if r.answer is not None]

    def model_requests(self) -> list[Request]:
        """The requests that reached a model endpoint (limits included)."""
        with self._lock:
            return [r for r in self.requests if r.answer is not None and r.answer.kind != "other"]

    def expected_usage(
        self, kinds: Iterable[str] = ("tool", "final", "side"), exclude: str | None = None
    ) -> dict[str, int]:
        """The sums of the answered token numbers by aq's conventions (tokens_in with cache reads and writes,
        tokens_cached = cache reads, tokens_out with reasoning), plus the raw parts for engines that show them."""
        total = {"tokens_in": 0, "tokens_cached": 0, "tokens_out": 0}
        for a in self.answers(kinds, exclude):
            if a.tokens is not None:
                total["tokens_in"] += a.tokens.tokens_in
                total["tokens_cached"] += a.tokens.cached
                total["tokens_out"] += a.tokens.tokens_out
        return total

    def sum_tokens(self, kinds: Iterable[str] = ("tool", "final", "side"), exclude: str | None = None) -> Tokens:
        """The field-by-field sum of the answered token numbers."""
        parts = [a.tokens for a in self.answers(kinds, exclude) if a.tokens is not None]
        return Tokens(
            *(sum(getattr(t, f) for t in parts) for f in ("input", "cached", "cache_write", "output", "reasoning"))
        )

    # -- deciding ---------------------------------------------------------------------------------------------
    def decide(self, call: wire.Call) -> tuple[str, Tokens, Any]:
        """(kind, tokens, payload) for a model call: payload is the tool call to make or the text to send."""
        if not call.tools:
            return "side", self.side, call.schema_json() if call.wants_json else self.side_text
        with self._lock:
            tokens = self.usage[self._main % len(self.usage)]
            self._main += 1
        if call.has_tool_result:
            return "final", tokens, self.final_text
        return "tool", tokens, call.write_call(self.file, self.content)

    def _log(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A CLI that gives up (or is killed) mid-request resets its connection: not the server's failure.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: ModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the server logs to .requests
        pass

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
            raw = bytes(data)
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        return raw

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, events: Iterable[str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_HEAD(self) -> None:  # claude's connectivity probe (HEAD /api/hello)
        self._log("other", None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._log("other", None)
        if self.path.split("?")[0].rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [], "models": []})
        else:
            self._send_json(404, {"error": {"message": f"not found: {self.path}"}})

    def _log(self, api: str, body: Any, raw: bytes = b"", answer: Answer | None = None) -> Request:
        owner = self.owner
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() not in SECRET_HEADERS}
        req = Request(
            method=self.command,
            path=self.path,
            api=api,
            headers=headers,
            has_canary=bool(owner.canary) and owner.canary.encode() in raw,
            body=body,
            answer=answer,
        )
        owner._log(req)
        return req

    # -- model endpoints --------------------------------------------------------------------------------------
    def do_POST(self) -> None:
        raw = self._read_body()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        path = self.path.split("?")[0]
        api = wire.api_for(path)
        if api is None or not isinstance(body, dict):
            self._log("other", body, raw, Answer("other"))
            self._send_json(404, {"error": {"message": f"not found: {self.path}"}})
            return
        if path.endswith("/count_tokens") or path.endswith(":countTokens"):
            self._log(api, body, raw, Answer("other"))
            self._send_json(200, {"input_tokens": 100} if api == "anthropic" else {"totalTokens": 100})
            return
        owner = self.owner
        if owner.limit:
            self._log(api, body, raw, Answer("limit"))
            status, payload, headers = wire.limit_error(api, owner.limit, owner.retry_after, owner.resets_in)
            self._send_json(status, payload, headers)
            return
        call = wire.Call.parse(api, body, path)
        kind, tokens, payload = owner.decide(call)
        tool = payload.name if isinstance(payload, wire.ToolUse) else None
        self._log(api, body, raw, Answer(kind, tokens, tool))
        model = owner.model or call.model or "scripted-model"
        reply = wire.Reply(
            model=model, tokens=tokens, payload=payload, ident=uuid.uuid4().hex[:24], created=int(time.time())
        )
        streaming = (
            api == "gemini" and path.endswith(":streamGenerateContent") or (api != "gemini" and body.get("stream"))
        )
        if streaming:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._send_sse(wire.stream(api, reply, include_usage=include_usage))
        else:
            self._send_json(200, wire.whole(api, reply))
