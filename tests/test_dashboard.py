"""``aq dashboard`` as a real process: its HTTP surface, and its page in a real headless Chromium."""

from __future__ import annotations

import http.client
import json
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import aq, aq_popen, state_of, stub, wait_until, write_job
from requires import chromium_path

from aq_core.dashboard import job_insights
from aq_core.status import insights_line

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CANARY = "CANARY-dashboard-5be1c0de9a7f"
IMG = "<img src=x onerror=alert(1)>"
BOLD = "<b>bold</b>"
STATUS_KEYS = ("id", "state", "engine", "attempts", "result", "lock", "next_eligible")
ADDED_KEYS = ("display",)


# -- helpers ----------------------------------------------------------------------------------------


class Dashboard:
    def __init__(self, proc: subprocess.Popen, url: str) -> None:
        self.proc, self.url = proc, url
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/", url)
        assert match, url
        self.port = int(match.group(1))

    def request(
        self, path: str, method: str = "GET", host: str | None = None, body: bytes | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
            if host:
                conn.putheader("Host", host)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def state(self) -> dict[str, Any]:
        status, headers, body = self.request("/api/state")
        assert status == 200, body
        assert headers["Content-Type"] == "application/json"
        return json.loads(body)


def read_first_line(proc: subprocess.Popen, timeout: float = 20) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout).strip()
    except queue.Empty:
        proc.kill()
        raise AssertionError(f"aq dashboard printed nothing in {timeout}s") from None


@contextmanager
def dashboard(root: Path) -> Iterator[Dashboard]:
    proc = aq_popen("dashboard", "--port", "0", root=root)
    try:
        line = read_first_line(proc)
        match = re.fullmatch(r"aq dashboard: (http://\S+) \(read-only; Ctrl-C to stop\)", line)
        assert match, f"unexpected first line: {line!r}"
        yield Dashboard(proc, match.group(1))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("aq dashboard did not stop on SIGTERM") from None
        rest = proc.stdout.read()
        assert code == 0, f"exit {code}: {rest}"
        assert rest == "", f"the dashboard wrote more than its one line (quiet access log): {rest!r}"


def add(root: Path, jobs: Path, job_id: str, front: dict, prompt: str = "Do the task.\n") -> None:
    result = aq("add", str(write_job(jobs, job_id, front, prompt)), root=root)
    assert result.returncode == 0, result.stderr


def drop_invalid(root: Path, job_id: str) -> None:
    """An invalid job file dropped straight into inbox/: the runner fails it with an error naming the engine."""
    (root / "inbox" / f"{job_id}.md").write_text(f'---\nengine: "{IMG}"\n---\n{CANARY}\n')


def write_meta(root: Path, job_id: str, lines: list[str]) -> None:
    with open(root / "meta" / f"{job_id}.meta", "a") as fh:
        fh.write("".join(line + "\n" for line in lines))


def fake_priced_job(root: Path, job_id: str) -> None:
    """A finished job with usage and an estimated cost, as a real engine plugin would record it
    (the stub ``command`` engine reports no usage)."""
    (root / "done" / f"{job_id}.md").write_text(f"---\nengine: claude\ncwd: /tmp\n---\n{CANARY}\n")
    now = time.time()
    write_meta(
        root,
        job_id,
        [f"added={now - 600}", "engine=claude", "attempt=1", "attempts=1", "engine=claude", f"started={now - 500}"]
        + ["model=sonnet", "tokens_in=10000", "tokens_out=2000", "cost_usd=0.1", "duration_s=100", "exit=1"]
        + ["result=crash", "attempt=2", "attempts=2", "engine=claude", f"started={now - 300}", "tokens_in=30000"]
        + ["tokens_out=4000", "cost_usd=0.32", "estimated=cost_usd", "duration_s=125", "exit=0"]
        + ["files_changed=2", "lines_added=12", "lines_deleted=3", f"finished={now - 100}", "result=ok"],
    )


def fake_backoff_job(root: Path, jobs: Path, job_id: str) -> None:
    """A waiting job whose first attempt crashed and whose retry is an hour away."""
    add(root, jobs, job_id, {"engine": "command", "cwd": str(jobs), "command": stub()})
    write_meta(
        root,
        job_id,
        ["attempt=1", "attempts=1", "engine=command", "exit=1", "duration_s=2.5", "result=crash"]
        + ["last_failure=crash", f"next_eligible={time.time() + 3600}"],
    )


# -- HTTP -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A queue with a done, a failed, an invalid (markup in its error), a priced, a backing-off
    and a waiting job (markup in its lock, a canary in its prompt)."""
    base = tmp_path_factory.mktemp("dash")
    root, jobs, work = base / "queue", base / "jobs", base / "work"
    work.mkdir()
    add(root, jobs, "good", {"engine": "command", "cwd": str(work), "command": stub()}, f"{CANARY}\n")
    add(root, jobs, "bad", {"engine": "command", "cwd": str(work), "command": stub("--exit", "3")})
    drop_invalid(root, "evil")
    run = aq("run", "--once", root=root)
    assert run.returncode == 0, run.stderr
    assert (state_of(root, "good"), state_of(root, "bad"), state_of(root, "evil")) == ("done", "failed", "failed")
    add(root, jobs, "waiting", {"engine": "command", "cwd": str(work), "command": stub(), "lock": BOLD}, CANARY)
    fake_backoff_job(root, jobs, "backoff")
    fake_priced_job(root, "priced")
    return root


@pytest.fixture(scope="module")
def dash(populated: Path) -> Iterator[Dashboard]:
    with dashboard(populated) as d:
        yield d


def without(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in keys}


def test_api_state_is_what_status_and_insights_report(dash: Dashboard, populated: Path) -> None:
    state = dash.state()
    assert set(state) >= {"jobs", "engines", "generated"}
    assert abs(state["generated"] - time.time()) < 30
    by_id = {job["id"]: job for job in state["jobs"]}
    assert {k: by_id[k]["state"] for k in by_id} == {
        "good": "done",
        "priced": "done",
        "bad": "failed",
        "evil": "failed",
        "waiting": "inbox",
        "backoff": "inbox",
    }
    for job in state["jobs"]:
        assert set(STATUS_KEYS) <= set(job), job
    # The very records the CLI shows (nothing is building, so nothing depends on the clock).
    status = json.loads(aq("status", "--json", root=populated).stdout)["jobs"]
    assert [without(j, ADDED_KEYS) for j in state["jobs"]] == status
    engines = json.loads(aq("insights", "--json", root=populated).stdout)["engines"]
    assert [without(e, ("display",)) for e in state["engines"]] == engines
    # The insights column is insights_line's text; an estimated cost is marked.
    for job in state["jobs"]:
        assert job["display"]["insights"] == job_insights(job)
        if job["id"] not in ("priced", "waiting"):
            assert job["display"]["insights"] == insights_line(job)
    assert by_id["waiting"]["display"]["insights"] == ""
    assert by_id["priced"]["display"]["insights"] == "3m45s · 2 attempts · 40.0k in / 6.0k out · $0.42* · +12/-3"
    assert re.fullmatch(r"in (59|60)m\d\ds|in 1h00m", by_id["backoff"]["display"]["next"])
    assert by_id["backoff"]["display"]["insights"] == "2.5s · 1 attempt"
    claude = next(e for e in state["engines"] if e["engine"] == "claude")
    assert claude["display"] == {
        "success": "100%",
        "tokens": "40.0k in / 6.0k out",
        "cost": "$0.42*",
        "avg_duration": "3m45s",
    }


def test_security_headers_on_every_response(dash: Dashboard) -> None:
    cases = [("GET", "/", 200), ("GET", "/api/state", 200), ("GET", "/x", 404), ("POST", "/", 405), ("GET", "/", 403)]
    for method, path, expected in cases:
        status, headers, _ = dash.request(path, method, host="evil.example" if expected == 403 else None)
        assert status == expected
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp, csp
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, csp
        assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", csp), csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Frame-Options"] == "DENY"
        assert "python" not in headers["Server"].lower()
    status, headers, _ = dash.request("/")
    assert headers["Content-Type"] == "text/html; charset=utf-8"


def test_nothing_but_get_and_head(dash: Dashboard, populated: Path) -> None:
    before = sorted(str(p.relative_to(populated)) for p in populated.rglob("*"))
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"):
        for path in ("/", "/api/state", "/nope"):
            status, headers, body = dash.request(path, method, body=b'{"cancel": "waiting"}')
            assert status == 405, (method, path, status)
            assert headers["Allow"] == "GET, HEAD"
    status, headers, body = dash.request("/api/state", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert sorted(str(p.relative_to(populated)) for p in populated.rglob("*")) == before
    assert state_of(populated, "waiting") == "inbox"


def test_unknown_paths_are_404(dash: Dashboard) -> None:
    for path in ("/nope", "/api", "/api/state/x", "/index.html", "/../meta/good.meta", "/inbox/waiting.md"):
        status, _, body = dash.request(path)
        assert status == 404, path
        assert CANARY.encode() not in body
    status, _, _ = dash.request("/api/state?since=1")
    assert status == 200


def test_host_header_must_name_this_server(dash: Dashboard) -> None:
    port = dash.port
    for host in (f"evil.example:{port}", "evil.example", f"localhost.evil.example:{port}", f"127.0.0.1.nip.io:{port}"):
        for path in ("/", "/api/state"):
            status, _, body = dash.request(path, host=host)
            assert status == 403, host
            assert b"jobs" not in body and CANARY.encode() not in body
    status, _, _ = dash.request("/", host="")  # no Host header at all
    assert status == 403
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "127.0.0.1:9999"):
        status, _, _ = dash.request("/api/state", host=host)
        assert status == 200, host


def test_markup_is_escaped_and_the_prompt_never_shown(dash: Dashboard, populated: Path) -> None:
    assert CANARY in (populated / "inbox" / "waiting.md").read_text()  # the canary is really queued
    page = dash.request("/")[2]
    raw = dash.request("/api/state")[2]
    for body in (page, raw):  # no raw markup in either; the JSON escapes "<" and ">" as \u003c, \u003e
        for needle in (IMG, BOLD, "<img", "<b>", CANARY):
            assert needle.encode() not in body, needle
    assert b"onerror" not in page
    state = json.loads(raw)
    by_id = {job["id"]: job for job in state["jobs"]}
    assert IMG in by_id["evil"]["error"] and IMG in by_id["evil"]["display"]["insights"]
    assert by_id["waiting"]["lock"] == BOLD
    assert CANARY not in json.dumps(state)


def test_bind_failure_and_bad_options_are_one_line(dash: Dashboard, populated: Path) -> None:
    taken = aq("dashboard", "--port", str(dash.port), root=populated, timeout=20)
    assert taken.returncode == 1
    assert taken.stdout == ""
    assert re.fullmatch(rf"aq: dashboard: cannot listen on 127\.0\.0\.1:{dash.port}: .+\n", taken.stderr)
    for args, code in ((("--port", "70000"), 2), (("--host", "no-such-host.invalid"), 1)):
        result = aq("dashboard", *args, root=populated, timeout=20)
        assert result.returncode == code, result
        assert result.stderr.startswith("aq: ") and result.stderr.count("\n") == 1, result.stderr


def test_ctrl_c_stops_with_exit_0(populated: Path) -> None:
    proc = aq_popen("dashboard", "--port", "0", root=populated)
    try:
        assert read_first_line(proc).startswith("aq dashboard: http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_corrupt_record_does_not_break_the_state(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    assert aq("status", root=root).returncode == 0  # creates the root
    for job_id in ("nan", "inf", "fine"):
        (root / "done" / f"{job_id}.md").write_text("---\nengine: command\n---\nx\n")
    write_meta(root, "nan", ["engine=command", "attempt=1", "duration_s=nan", "cost_usd=nan", "result=ok"])
    write_meta(root, "inf", ["engine=command", "attempt=1", "tokens_in=inf", "result=ok"])
    write_meta(root, "fine", ["engine=command", "attempt=1", "attempts=1", "duration_s=3", "result=ok"])
    with open(root / "meta" / "fine.meta", "a") as fh:
        fh.write("result=cra")  # a torn last line is ignored
    with dashboard(root) as dash:
        raw = dash.request("/api/state")[2]
        assert b"NaN" not in raw and b"Infinity" not in raw
        by_id = {j["id"]: j for j in json.loads(raw)["jobs"]}
        assert {k: j["state"] for k, j in by_id.items()} == {"nan": "done", "inf": "done", "fine": "done"}
        assert by_id["fine"]["result"] == "ok" and by_id["fine"]["display"]["insights"] == "3.0s · 1 attempt"
        assert by_id["nan"]["duration_s"] is None and by_id["nan"]["result"] == "ok"
        assert by_id["inf"]["tokens_in"] is None and by_id["inf"]["result"] == "ok"


# -- a real browser ---------------------------------------------------------------------------------


@pytest.mark.requires("chromium")
def test_page_in_headless_chromium_updates_live_and_escapes(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    root, jobs, work = tmp_path / "queue", tmp_path / "jobs", tmp_path / "work"
    work.mkdir()
    front = {"engine": "command", "cwd": str(work), "command": stub("--sleep", "0.2"), "lock": BOLD}
    add(root, jobs, "first-job", front, f"{CANARY}\n")
    drop_invalid(root, "evil")

    with dashboard(root) as dash, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            requests: list[str] = []
            problems: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.goto(dash.url)
            page.wait_for_selector('#waiting tr[data-job="first-job"]', timeout=10_000)
            page.wait_for_selector('#waiting tr[data-job="evil"]', timeout=10_000)
            assert re.fullmatch(r"updated \d\d:\d\d:\d\d", page.text_content("#updated") or "")
            assert page.is_hidden("#lost")
            page.evaluate("window.__sameDocument = true")

            run = aq("run", "--once", root=root)
            assert run.returncode == 0, run.stderr
            done = page.wait_for_selector('#done tr[data-job="first-job"]', timeout=10_000)
            assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
            assert page.query_selector('#waiting tr[data-job="first-job"]') is None
            cells = [c.text_content() for c in done.query_selector_all("td")]
            assert cells[:6] == ["first-job", "command", "1", "ok", BOLD, ""]
            assert re.fullmatch(r"\d+(\.\d+)?s · 1 attempt", cells[6]), cells[6]

            # The markup in the lock and in the invalid job's error is text, not elements.
            evil = page.wait_for_selector('#failed tr[data-job="evil"]', timeout=10_000)
            assert IMG in (evil.query_selector("td.insights").text_content() or "")
            assert page.locator("main img").count() == 0
            assert page.locator("main td b, main td img, main td script").count() == 0
            assert page.locator("#waiting td.empty").text_content() == "none"
            assert page.locator('#engines tr[data-engine="command"] td').nth(3).text_content() == "100%"
            assert CANARY not in page.content()
            assert not problems, problems  # no script error, no CSP violation, no alert()

            # When the server goes away, the page says so and keeps the last rows.
            dash.proc.send_signal(signal.SIGTERM)
            page.wait_for_selector("#lost", state="visible", timeout=10_000)
            assert "connection lost" in (page.text_content("#lost") or "")
            assert page.query_selector('#done tr[data-job="first-job"]') is not None

            others = [u for u in requests if not (u.startswith(dash.url) or u.startswith("data:"))]
            assert not others, f"the page requested other hosts: {others}"
            assert any(u.endswith("/api/state") for u in requests)
        finally:
            browser.close()
    wait_until(lambda: dash.proc.poll() is not None, 10, "the dashboard to exit")
