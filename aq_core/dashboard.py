"""``aq dashboard``: a read-only live web page of the queue, served by the standard library.

``GET /`` is one self-contained page (``aq_core.dashboard_page``) that polls ``GET /api/state``
every second, and ``GET /api/job/<id>`` while a job's view is open (``aq_core.dashboard_api``).
Nothing can be changed through the dashboard: every method but GET and HEAD is refused.

It binds loopback by default. There, a request whose ``Host`` is a name other than the bound one
or ``localhost`` is refused (a DNS-rebinding guard). Any other address needs a token
(``--token`` or ``AQ_DASHBOARD_TOKEN``): then every request, the page and the live updates
included, must carry it (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``) or gets 401 and no data.
"""

from __future__ import annotations

import hmac
import signal
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aq_core.dashboard_api import job_detail, job_insights, json_bytes, snapshot
from aq_core.dashboard_page import HEADERS, PAGE
from aq_core.errors import AqError, UsageError
from aq_core.job import JOB_ID
from aq_core.store import Store

__all__ = ["job_insights", "serve", "snapshot"]

CACHE_S = 0.5  # several tabs (or a fast poller) share one read of the queue
TOKEN_ENV = "AQ_DASHBOARD_TOKEN"  # read by the command line (aq_core.dashboard_cli)

# -- the server -------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], store: Store, family: int, token: str | None = None) -> None:
        self.address_family = family
        self.store = store
        self.token = token
        self.bind_host = address[0].strip("[]").lower()
        self._cache_lock = threading.Lock()
        self._cache: tuple[float, bytes] | None = None
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the address up in DNS (getfqdn); nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.bind_host, self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a browser dropping a connection is not news; the access log is quiet too

    def state(self) -> bytes:
        with self._cache_lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] >= CACHE_S:
                self._cache = (now, json_bytes(snapshot(self.store)))
            return self._cache[1]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "aq-dashboard"
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection frees its thread

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass

    def end_headers(self) -> None:
        for name, value in HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def _send(self, status: int, body: bytes, ctype: str, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        if status >= 400:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, message: str, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8", extra)

    def _host_ok(self) -> bool:
        """True when ``Host`` names this server: an IP address, ``localhost`` or the bound host.

        A DNS-rebinding page reaches us under its own domain name, which is refused here.
        """
        header = (self.headers.get("Host") or "").strip()
        if not header:
            return False
        try:
            name = urlsplit("//" + header).hostname
        except ValueError:
            return False
        if not name:
            return False
        name = name.rstrip(".")
        if name in ("localhost", self.server.bind_host):
            return True
        try:
            ip_address(name)
        except ValueError:
            return False
        return True

    def _token_ok(self) -> bool:
        """True when the request carries the server's token (``Authorization: Bearer`` or ``?token=``)."""
        expected = (self.server.token or "").encode()
        header = self.headers.get("Authorization") or ""
        if header[:7].lower() == "bearer ":
            given = header[7:].strip()
        else:
            given = (parse_qs(urlsplit(self.path).query).get("token") or [""])[-1]
        # Constant time, so the token cannot be guessed a character at a time from response times.
        return bool(given) and hmac.compare_digest(given.encode(errors="replace"), expected)

    def _guard(self) -> bool:
        if self.server.token is not None:
            # With a token, the token is the guard (a rebinding page cannot know it), whatever the Host.
            if self._token_ok():
                return True
            self._text(
                401,
                "aq dashboard: a token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)",
                (("WWW-Authenticate", 'Bearer realm="aq dashboard"'),),
            )
            return False
        if self._host_ok():
            return True
        self._text(403, "aq dashboard: refused: the Host header is not this server (open it by address or localhost)")
        return False

    def _json(self, compute: Any) -> None:
        try:
            body = compute()
        except Exception as exc:  # one line to the page; the server goes on
            message = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
            self._send(500, json_bytes({"error": message}), "application/json")
            return
        if body is None:
            self._send(404, json_bytes({"error": "no such job"}), "application/json")
        else:
            self._send(200, body, "application/json")

    def do_GET(self) -> None:
        if not self._guard():
            return
        path = urlsplit(self.path).path
        if path == "/":
            self._send(200, PAGE, "text/html; charset=utf-8")
        elif path == "/api/state":
            self._json(self.server.state)
        elif path.startswith("/api/job/"):
            job_id = unquote(path[len("/api/job/") :])
            if not JOB_ID.fullmatch(job_id):
                self._send(404, json_bytes({"error": "no such job"}), "application/json")
                return
            self._json(lambda: self._detail(job_id))
        else:
            self._text(404, "not found")

    def _detail(self, job_id: str) -> bytes | None:
        detail = job_detail(self.server.store, job_id)
        return None if detail is None else json_bytes(detail)

    do_HEAD = do_GET

    def _refuse_method(self) -> None:
        if self._guard():
            self._text(405, "aq dashboard is read-only", (("Allow", "GET, HEAD"),))

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler dispatches to do_<METHOD> and answers 501 when there is none;
        # any method but GET and HEAD (POST, PUT, DELETE, PATCH, OPTIONS, ...) is refused with 405.
        if name.startswith("do_"):
            return self._refuse_method
        raise AttributeError(name)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_loopback(host: str, addresses: list[str]) -> bool:
    """True when ``host`` (and every address it resolves to) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return all(ip_address(a.split("%")[0]).is_loopback for a in addresses) and bool(addresses)
    except ValueError:
        return False


def check_token(token: str | None) -> str | None:
    """Return the token (None for none); raise ``UsageError`` for one that cannot work in a header or URL."""
    if token is None or token == "":
        return None
    if not token.isascii() or not token.isprintable() or any(c in token for c in " &#%+?/") or len(token) > 512:
        raise UsageError("dashboard: --token: use letters, digits and - _ . ~ only (at most 512 characters)")
    return token


def serve(store: Store, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> int:
    """Serve the dashboard until SIGINT or SIGTERM; return 0. Print the URL as one line first.

    A ``host`` other than loopback needs a ``token`` (else ``UsageError``, exit 2); with a token,
    every request must carry it.
    """
    if not 0 <= port <= 65535:
        raise UsageError(f"--port: {port}: expected 0 to 65535 (0 picks a free port)")
    host = host.strip("[]") or "127.0.0.1"
    token = check_token(token)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AqError(f"dashboard: cannot resolve --bind {host!r} ({exc.strerror})") from None
    family = infos[0][0]
    if token is None and not is_loopback(host, [str(info[4][0]) for info in infos]):
        raise UsageError(
            f"dashboard: --bind {host} is reachable from other machines: give --token TOKEN (or set {TOKEN_ENV})"
        )
    try:
        server = _Server((host, port), store, family, token)
    except OSError as exc:
        raise AqError(f"dashboard: cannot listen on {_url_host(host)}:{port}: {exc.strerror or exc}") from None
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()  # shutdown() waits for the loop

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop)
    try:
        needs = "; open it with ?token=TOKEN" if token else ""
        print(
            f"aq dashboard: http://{_url_host(host)}:{server.server_address[1]}/ (read-only{needs}; Ctrl-C to stop)",
            flush=True,
        )
        server.serve_forever(poll_interval=0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
    return 0
