"""``aq dashboard``: a read-only live web page of the queue, served by the standard library on loopback.

``GET /`` is one self-contained page (inline CSS and JS, no outside resource) that polls
``GET /api/state`` every second and rebuilds its rows with ``textContent`` only, so whatever a job
record holds is shown as text, never parsed as markup. ``/api/state`` is built from the same records
as ``aq status --json`` (``status.job_row``) and ``aq insights --json`` (``insights.job_record`` and
``rollup``); it never reads a job file, so the prompt cannot reach it. Nothing can be changed through
the dashboard: every method but GET and HEAD is refused, and so is a request whose ``Host`` is a name
other than the bound one or ``localhost`` (a DNS-rebinding guard).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import signal
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from aq_core.durations import format_duration
from aq_core.errors import AqError, UsageError
from aq_core.insights import rollup
from aq_core.status import STATE_ORDER, format_tokens, insights_line, job_row
from aq_core.store import State, Store

REFRESH_S = 1.0
CACHE_S = 0.5  # several tabs (or a fast poller) share one read of the queue

# -- the state --------------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """``value`` with every nan or infinite float (from a corrupt meta value) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def job_insights(row: dict[str, Any]) -> str:
    """The insights column: ``insights_line``'s figures, the cost marked ``*`` when aq estimated it."""
    if row["state"] == State.INBOX.value and not row.get("attempts"):
        return ""  # as `aq status`: a job that never ran has no figures
    return insights_line(row)


def _engine_display(row: dict[str, Any]) -> dict[str, str]:
    tokens_in, tokens_out = row.get("tokens_in"), row.get("tokens_out")
    tokens = ""
    if tokens_in is not None or tokens_out is not None:
        tokens = f"{format_tokens(tokens_in) or '?'} in / {format_tokens(tokens_out) or '?'} out"
    cost = row.get("cost_usd")
    return {
        "success": f"{row['success_rate'] * 100:.0f}%" if row.get("success_rate") is not None else "",
        "tokens": tokens,
        "cost": f"${cost:.2f}{'*' if row.get('cost_estimated') else ''}" if cost is not None else "",
        "avg_duration": format_duration(row.get("avg_duration_s")),
    }


def _broken_row(job_id: str, state: State, exc: Exception) -> dict[str, Any]:
    error = f"aq cannot read this job's meta: {type(exc).__name__}: {exc}".splitlines()[0]
    row: dict[str, Any] = {"id": job_id, "state": state.value, "engine": None, "attempts": 0, "result": None}
    row.update(lock=None, next_eligible=None, error=error, estimated=[], finished=None)
    row["display"] = {"insights": error, "next": ""}
    return row


def snapshot(store: Store) -> dict[str, Any]:
    """Return ``{"jobs": [status rows], "engines": [rollup], "generated": epoch}`` for ``/api/state``.

    The rows are ``status_rows(store)`` and the rollup is ``rollup(insights.records(store))``,
    computed in one pass so each job's meta is read once; the dashboard adds ``estimated``,
    ``finished`` and a ``display`` object of preformatted text (insights column, next eligible).
    Unlike the CLI, a corrupt figure (nan, inf) shows as unknown, and a record the core cannot
    read becomes a row with ``error`` instead of failing the whole page.
    """
    from aq_core.records import rows_for

    now = time.time()
    entries = store.scan()
    entries.sort(key=lambda e: (STATE_ORDER[e.state], e.queued, e.id))  # as status_rows

    def compute(entry: Any) -> dict[str, Any]:
        try:
            return job_row(entry.id, entry.state, store.read_meta(entry.id))
        except Exception as exc:  # one unreadable record must not blank the page for every job
            return _broken_row(entry.id, entry.state, exc)

    jobs, finished = [], []
    # Finished jobs come from the rows cache the CLI keeps, so a refresh reads only live jobs' meta.
    for cached in rows_for(store, entries, compute):
        # nan/inf in a meta value would break the formatting and JSON: such a figure is unknown.
        row = _finite(cached.full())
        if "display" in row:  # a broken record: already shown as one row with its error
            jobs.append(row)
            continue
        if row["state"] in (State.DONE.value, State.FAILED.value):
            finished.append(row)  # as insights.records
        nxt = row.get("next_eligible")
        row["display"] = {
            "insights": job_insights(row),
            "next": f"in {format_duration(max(0.0, nxt - now))}" if nxt else "",
        }
        jobs.append(row)
    engines = rollup(finished)
    for row in engines:
        row["display"] = _engine_display(row)
    return {"jobs": jobs, "engines": engines, "generated": round(now, 3), "root": store.describe()}


def _json_bytes(data: Any) -> bytes:
    # Valid JSON with the same values; "<", ">" and "&" escaped so no response ever carries raw markup.
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a meta value of nan or inf: JSON (and the page) have no such number
        text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e").encode()


# -- the page ---------------------------------------------------------------------------------------

_CSS = """
:root{--bg:#f6f7f9;--card:#fff;--fg:#1d2330;--muted:#6b7385;--line:#e3e6eb;--head:#f0f2f5;
--run:#1f6feb;--wait:#9a6700;--bad:#cf222e;--ok:#1a7f37;--chip:#eef1f5}
@media (prefers-color-scheme:dark){:root{--bg:#0f1217;--card:#171b22;--fg:#e3e7ee;--muted:#8b93a3;
--line:#2a303a;--head:#1d222b;--run:#58a6ff;--wait:#d29922;--bad:#f85149;--ok:#3fb950;--chip:#222833}}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.4rem 1.2rem;padding:.9rem 1.5rem;
background:var(--card);border-bottom:1px solid var(--line)}
h1{margin:0;font-size:1.15rem;font-weight:650;letter-spacing:.01em}
h1 span{color:var(--muted);font-weight:400}
.root{color:var(--muted);font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem;
overflow-wrap:anywhere}
.status{margin-left:auto;color:var(--muted);font-size:.85rem;display:flex;gap:.8rem;align-items:baseline}
.lost{color:var(--bad);font-weight:600}
.summary{display:flex;flex-wrap:wrap;gap:.5rem;padding:.9rem 1.5rem 0}
.chip{background:var(--chip);border-radius:999px;padding:.15rem .7rem;font-size:.85rem;color:var(--muted)}
.chip b{color:var(--fg);font-variant-numeric:tabular-nums}
main{padding:.4rem 1.5rem 1.5rem;max-width:1400px}
section{margin-top:1.1rem;background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden}
h2{margin:0;padding:.55rem .9rem;font-size:.95rem;font-weight:600;display:flex;gap:.5rem;align-items:center;
border-bottom:1px solid var(--line)}
h2 .count{font-size:.8rem;font-weight:600;color:var(--muted);background:var(--chip);border-radius:999px;
padding:0 .5rem;font-variant-numeric:tabular-nums}
h2::before{content:"";width:.6rem;height:.6rem;border-radius:50%;background:var(--muted)}
#running h2::before{background:var(--run)}#waiting h2::before{background:var(--wait)}
#failed h2::before{background:var(--bad)}#done h2::before{background:var(--ok)}
.table{overflow-x:auto}
table{width:100%;border-collapse:collapse}
table.jobs{table-layout:fixed;min-width:56rem}
table.jobs th:nth-child(1){width:17%}table.jobs th:nth-child(2){width:9%}table.jobs th:nth-child(3){width:7%}
table.jobs th:nth-child(4){width:10%}table.jobs th:nth-child(5){width:12%}table.jobs th:nth-child(6){width:10%}
th,td{text-align:left;padding:.38rem .9rem;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--head);color:var(--muted);font-size:.75rem;font-weight:600;text-transform:uppercase;
letter-spacing:.04em;white-space:nowrap}
tbody tr:last-child td{border-bottom:0}
td.id{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem;overflow-wrap:anywhere}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.insights{color:var(--muted);font-size:.85rem;overflow-wrap:anywhere;min-width:16rem}
td.lock,td.next{overflow-wrap:anywhere}
td.empty{color:var(--muted);font-style:italic}
.r-ok{color:var(--ok);font-weight:600}.r-bad{color:var(--bad);font-weight:600}
.r-run{color:var(--run);font-weight:600}.r-wait{color:var(--wait)}
body.stale main{opacity:.55}
.note{color:var(--muted);font-size:.8rem;margin:.5rem .9rem}
footer{color:var(--muted);font-size:.8rem;padding:0 1.5rem 1.5rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
"""

_JS = r"""
"use strict";
const SECTIONS = [["building", "running"], ["inbox", "waiting"], ["failed", "failed"], ["done", "done"]];
const LIMIT = 300;
let timer = null, inflight = false, lastOk = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function hms(date) {
  const p = (n) => String(n).padStart(2, "0");
  return p(date.getHours()) + ":" + p(date.getMinutes()) + ":" + p(date.getSeconds());
}
function resultClass(job) {
  const r = job.result || "";
  if (job.state === "building") return "r-run";
  if (r === "ok") return "r-ok";
  if (!r || r === "queued") return "";
  return job.state === "inbox" ? "r-wait" : "r-bad";
}
function jobRow(job) {
  const tr = el("tr");
  tr.dataset.job = job.id;
  const d = job.display || {};
  tr.append(
    el("td", job.id, "id"),
    el("td", job.engine || ""),
    el("td", job.attempts || 0, "num"),
    el("td", job.state === "building" ? "running" : (job.result || ""), resultClass(job)),
    el("td", job.lock || "", "lock"),
    el("td", d.next || "", "next"),
    el("td", d.insights || "", "insights"),
  );
  if (job.error) tr.lastChild.title = job.error;  // the full error; the column shows its start
  return tr;
}
function fill(tbody, rows, cols, empty, more) {
  const fresh = el("tbody");
  for (const r of rows) fresh.append(r);
  for (const text of [rows.length ? "" : empty, more]) {
    if (!text) continue;
    const td = el("td", text, "empty");
    td.colSpan = cols;
    const tr = el("tr");
    tr.append(td);
    fresh.append(tr);
  }
  tbody.replaceWith(fresh);
}
function render(state) {
  const by = {building: [], inbox: [], failed: [], done: []};
  for (const job of state.jobs || []) (by[job.state] || (by[job.state] = [])).push(job);
  for (const st of ["failed", "done"]) by[st].sort((a, b) => (b.finished || 0) - (a.finished || 0));
  const summary = document.getElementById("summary");
  const chips = [];
  for (const [st, name] of SECTIONS) {
    const jobs = by[st];
    const section = document.getElementById(name);
    section.querySelector(".count").textContent = String(jobs.length);
    const extra = jobs.length > LIMIT ? "\u2026 and " + (jobs.length - LIMIT) + " more (aq status lists them all)" : "";
    fill(section.querySelector("tbody"), jobs.slice(0, LIMIT).map(jobRow), 7, "none", extra);
    const chip = el("span", null, "chip");
    chip.append(el("b", jobs.length), document.createTextNode(" " + name));
    chips.push(chip);
  }
  summary.replaceChildren(...chips);
  const engines = state.engines || [];
  const rows = engines.map((e) => {
    const d = e.display || {};
    const tr = el("tr");
    tr.dataset.engine = e.engine;
    tr.append(
      el("td", e.engine, "id"),
      el("td", e.jobs, "num"),
      el("td", (e.succeeded || 0) + " ok / " + (e.failed || 0) + " failed", "num"),
      el("td", d.success || "", "num"),
      el("td", d.tokens || "", "num"),
      el("td", d.cost || "", "num"),
      el("td", d.avg_duration || "", "num"),
    );
    return tr;
  });
  fill(document.querySelector("#engines tbody"), rows, 7, "no finished jobs yet", "");
  const estimated = engines.some((e) => e.cost_estimated) || (state.jobs || []).some(
    (j) => (j.estimated || []).includes("cost_usd"));
  document.getElementById("estnote").hidden = !estimated;
  document.getElementById("root").textContent = state.root || "";
  const when = state.generated ? new Date(state.generated * 1000) : new Date();
  document.getElementById("updated").textContent = "updated " + hms(when);
}
function setLost(lost, why) {
  document.body.classList.toggle("stale", lost);
  const note = document.getElementById("lost");
  note.hidden = !lost;
  if (lost) note.textContent = "connection lost (" + why + "), retrying" +
    (lastOk ? "; showing " + hms(lastOk) : "");
}
function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(tick, ms);
}
async function tick() {
  if (inflight) return;
  inflight = true;
  try {
    const resp = await fetch("/api/state", {cache: "no-store", headers: {"Accept": "application/json"}});
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const state = await resp.json();
    render(state);
    lastOk = new Date();
    setLost(false);
  } catch (err) {
    setLost(true, err && err.message ? err.message : "error");
  } finally {
    inflight = false;
    schedule(document.hidden ? 5000 : REFRESH_MS);
  }
}
document.addEventListener("visibilitychange", () => { if (!document.hidden && !inflight) schedule(0); });
tick();
"""

_JOB_HEAD = ("ID", "Engine", "Attempts", "Result", "Lock", "Next eligible", "Insights")
_ENGINE_HEAD = ("Engine", "Jobs", "Outcomes", "Success", "Tokens", "Cost", "Avg duration")


def _thead(names: tuple[str, ...], numeric: set[str]) -> str:
    cells = "".join(f'<th class="num">{n}</th>' if n in numeric else f"<th>{n}</th>" for n in names)
    return f"<thead><tr>{cells}</tr></thead><tbody></tbody>"


def _csp_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _page() -> tuple[bytes, str]:
    script = _JS.replace("REFRESH_MS", str(int(REFRESH_S * 1000)))
    sections = "".join(
        f'<section id="{name}"><h2>{title} <span class="count">0</span></h2>'
        f'<div class="table"><table class="jobs">{_thead(_JOB_HEAD, {"Attempts"})}</table></div></section>'
        for name, title in (("running", "Running"), ("waiting", "Waiting"), ("failed", "Failed"), ("done", "Done"))
    )
    engines = (
        '<section id="engines"><h2>Per engine</h2>'
        f'<div class="table"><table>{_thead(_ENGINE_HEAD, set(_ENGINE_HEAD[1:]))}</table></div>'
        '<p id="estnote" class="note" hidden>* estimated from a pricing table (the engine did not report it)</p>'
        "</section>"
    )
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><title>aq dashboard</title>'
        f'<link rel="icon" href="data:,"><style>{_CSS}</style></head><body>'
        '<header><h1>aq <span>dashboard</span></h1><div id="root" class="root"></div>'
        '<div class="status"><span id="lost" class="lost" hidden></span>'
        '<span id="updated">connecting\u2026</span></div></header>'
        '<div id="summary" class="summary"></div>'
        f"<main>{sections}{engines}</main>"
        "<footer>Read-only. Refreshes every second from the records <code>aq status</code> and "
        "<code>aq insights</code> read.</footer>"
        "<noscript><p class=note>This page needs JavaScript; <code>aq status</code> shows the same.</p></noscript>"
        f"<script>{script}</script></body></html>"
    )
    csp = (
        f"default-src 'none'; script-src {_csp_source(script)}; style-src {_csp_source(_CSS)}; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode(), csp


PAGE, CSP = _page()

HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)

# -- the server -------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], store: Store, family: int) -> None:
        self.address_family = family
        self.store = store
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
                self._cache = (now, _json_bytes(snapshot(self.store)))
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

    def _guard(self) -> bool:
        if self._host_ok():
            return True
        self._text(403, "aq dashboard: refused: the Host header is not this server (open it by address or localhost)")
        return False

    def do_GET(self) -> None:
        if not self._guard():
            return
        path = urlsplit(self.path).path
        if path == "/":
            self._send(200, PAGE, "text/html; charset=utf-8")
        elif path == "/api/state":
            try:
                body = self.server.state()
            except Exception as exc:  # one line to the page; the server goes on
                message = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
                self._send(500, _json_bytes({"error": message}), "application/json")
                return
            self._send(200, body, "application/json")
        else:
            self._text(404, "not found")

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


def serve(store: Store, host: str = "127.0.0.1", port: int = 8765) -> int:
    """Serve the dashboard until SIGINT or SIGTERM; return 0. Print the URL as one line first."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port: {port}: expected 0 to 65535 (0 picks a free port)")
    host = host.strip("[]") or "127.0.0.1"
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise AqError(f"dashboard: cannot resolve --host {host!r} ({exc.strerror})") from None
    try:
        server = _Server((host, port), store, family)
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
        print(
            f"aq dashboard: http://{_url_host(host)}:{server.server_address[1]}/ (read-only; Ctrl-C to stop)",
            flush=True,
        )
        server.serve_forever(poll_interval=0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
    return 0
