"""``aq dashboard`` as a real process: its HTTP surface, and its page in a real headless Chromium."""

from __future__ import annotations

import http.client
import json
import os
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
from gitutil import git
from helpers import aq, aq_popen, meta, state_of, stub, wait_until, write_job
from morningutil import GitHub, repo_with_remote
from requires import chromium_path

from aq_core.dashboard_api import history, job_insights
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
        match = re.fullmatch(r"http://(?:127\.0\.0\.1|0\.0\.0\.0):(\d+)/", url)
        assert match, url
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"  # reached on loopback, whatever address it listens on

    def request(
        self,
        path: str,
        method: str = "GET",
        host: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
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
def dashboard(root: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Dashboard]:
    proc = aq_popen("dashboard", "--port", "0", *args, root=root, env=env)
    try:
        line = read_first_line(proc)
        match = re.fullmatch(
            r"aq dashboard: (http://\S+) \(read-only(?:; open it with \?token=TOKEN)?; Ctrl-C to stop\)", line
        )
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
    """A queue with a done job (with a pull request), a failed, an invalid (markup in its error), a
    priced, a backing-off and a waiting job (markup in its lock, a canary in its prompt), the first
    two in a git repository with a bare remote."""
    base = tmp_path_factory.mktemp("dash")
    root, jobs = base / "queue", base / "jobs"
    work, _ = repo_with_remote(base)
    gh = GitHub(base / "gh")
    good = {"engine": "command", "cwd": str(work), "command": stub("--write", "good.txt=a\nb"), "pr": "ready"}
    add(root, jobs, "good", good, f"{CANARY}\n")
    add(
        root,
        jobs,
        "bad",
        {"engine": "command", "cwd": str(work), "command": stub("--write", "bad.txt=x", "--exit", "3")},
    )
    drop_invalid(root, "evil")
    run = aq("run", "--once", root=root, env=gh.env)
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


# -- one job, and the last 14 days ------------------------------------------------------------------


def test_api_job_is_what_show_reports(dash: Dashboard, populated: Path) -> None:
    status, headers, raw = dash.request("/api/job/good")
    assert status == 200 and headers["Content-Type"] == "application/json"
    detail = json.loads(raw)
    record = json.loads(aq("insights", "good", "--json", root=populated).stdout)
    assert detail["job"] == record
    last = meta(populated, "good")
    repo = Path(last["cwd"])
    assert detail["diffstat"] == git(repo, "diff", "--stat=100", "-M", last["wip_base"], last["wip_commit"])
    assert "good.txt | 2 ++" in detail["diffstat"]
    assert detail["work"] == {
        "branch": "aq/wip/good",
        "base": last["wip_base"],
        "commit": last["wip_commit"],
        "range": f"{last['wip_base'][:10]}..{last['wip_commit'][:10]}",
    }
    assert detail["pr_url"] == last["pr_url"] == "https://github.com/example/project/pull/1"
    assert detail["failure"] is None
    assert ["result", "ok"] in detail["figures"] and ["changes", "1 files, +2 -0"] in detail["figures"]
    assert [r["result"] for r in detail["runs"]] == ["ok"]
    bad = json.loads(dash.request("/api/job/bad")[2])
    assert bad["failure"]["class"] == "crash" and "exit 3" in bad["failure"]["detail"]
    assert bad["runs"][0]["exit"] == "3" and "bad.txt | 1 +" in bad["diffstat"]
    waiting = json.loads(dash.request("/api/job/waiting")[2])
    assert waiting["diffstat"] is None and "no checkpoint" in waiting["work_note"]
    for path in ("/api/job/nope", "/api/job/", "/api/job/..%2Fmeta%2Fgood", "/api/job/a%00b"):
        status, _, body = dash.request(path)
        assert status == 404, path
        assert json.loads(body) == {"error": "no such job"}
    for job_id in ("good", "bad", "evil", "waiting", "priced", "backoff"):
        body = dash.request(f"/api/job/{job_id}")[2]
        assert CANARY.encode() not in body and b"<" not in body, job_id


def test_history_counts_results_and_cost_per_day(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    assert aq("status", root=root).returncode == 0
    now = time.time()
    days_ago = {"today-ok": 0, "today-priced": 0, "three-days": 3, "too-old": 20}
    for job_id, ago in days_ago.items():
        result = "crash" if job_id == "three-days" else "ok"
        (root / ("failed" if result == "crash" else "done") / f"{job_id}.md").write_text(
            f"---\nengine: claude\n---\n{CANARY}\n"
        )
        cost = ["cost_usd=0.25", "estimated=cost_usd"] if job_id != "today-ok" else []
        write_meta(
            root,
            job_id,
            ["engine=claude", "attempt=1", "attempts=1", "engine=claude", *cost, "duration_s=5"]
            + [f"finished={now - ago * 86400}", f"result={result}"],
        )
    with dashboard(root) as dash:
        got = dash.state()["history"]
    from datetime import date, timedelta

    today = date.fromtimestamp(now)
    assert got["days"] == [(today - timedelta(days=13 - i)).isoformat() for i in range(14)]
    assert got["results"] == {"ok": [0] * 13 + [2], "crash": [0] * 10 + [1, 0, 0, 0]}
    assert got["cost"] == {"claude": [0.0] * 10 + [0.25, 0.0, 0.0, 0.25]}
    assert got["cost_estimated"] == ["claude"]
    assert history([], now) == {"days": got["days"], "results": {}, "cost": {}, "cost_estimated": []}


# -- off loopback: the token ------------------------------------------------------------------------

TOKEN = "s3cret-Token_for.tests~1"


def test_an_address_off_loopback_needs_a_token(populated: Path) -> None:
    for args in (("--bind", "0.0.0.0"), ("--host", "0.0.0.0"), ("--bind", "0.0.0.0", "--token", "")):
        result = aq("dashboard", "--port", "0", *args, root=populated, timeout=20)
        assert result.returncode == 2, result
        assert result.stdout == ""
        assert result.stderr == (
            "aq: dashboard: --bind 0.0.0.0 is reachable from other machines: give --token TOKEN "
            "(or set AQ_DASHBOARD_TOKEN)\n"
        )
    bad = aq("dashboard", "--port", "0", "--bind", "0.0.0.0", "--token", "a b", root=populated, timeout=20)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--token" in bad.stderr


def test_with_a_token_every_request_without_it_gets_401(populated: Path) -> None:
    with dashboard(populated, "--bind", "0.0.0.0", env={"AQ_DASHBOARD_TOKEN": TOKEN}) as dash:
        paths = ("/", "/api/state", "/api/job/good", "/api/job/nope", "/nope", "/api/state?token=wrong")
        wrong = (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": "Bearer"},
        )
        for path in paths:
            for headers in wrong:
                for method in ("GET", "HEAD", "POST"):
                    status, got, body = dash.request(path, method, headers=headers)
                    assert status == 401, (path, headers, method)
                    assert got["WWW-Authenticate"] == 'Bearer realm="aq dashboard"'
                    assert b"jobs" not in body and b"good" not in body and CANARY.encode() not in body
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        status, _, body = dash.request("/api/state", headers=bearer)
        assert status == 200 and {j["id"] for j in json.loads(body)["jobs"]} >= {"good", "bad"}
        assert dash.request("/api/job/good", headers=bearer)[0] == 200
        assert dash.request(f"/?token={TOKEN}")[0] == 200
        assert dash.request(f"/api/state?token={TOKEN}")[0] == 200
        # The token is the guard now: any Host (this machine's name, say) is fine with it.
        assert dash.request("/api/state", host="my-laptop.local", headers=bearer)[0] == 200
        assert dash.request("/api/state", "POST", headers=bearer)[0] == 405  # still read-only
    with dashboard(populated, "--token", TOKEN) as dash:  # on loopback a token is optional, and enforced
        assert dash.request("/api/state")[0] == 401
        assert dash.request("/api/state", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200


# -- the job view in a real browser -----------------------------------------------------------------


@pytest.mark.requires("chromium")
def test_job_view_chart_and_token_in_headless_chromium(populated: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    last = meta(populated, "good")
    stat = git(Path(last["cwd"]), "diff", "--stat=100", "-M", last["wip_base"], last["wip_commit"])
    with dashboard(populated, "--token", TOKEN) as dash, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[tuple[str, str | None]] = []
            problems: list[str] = []
            page.on("request", lambda r: requests.append((r.url, r.headers.get("authorization"))))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
            assert page.goto(dash.url).status == 401  # no token, no page
            requests.clear()
            problems.clear()  # the console's note of that 401
            page.goto(f"{dash.url}?token={TOKEN}")
            page.wait_for_selector('#done tr[data-job="good"]', timeout=10_000)

            # The last 14 days, drawn in the page: today's bars are this queue's jobs.
            from datetime import date

            today = date.today().isoformat()  # the server's local day, as the chart's
            bars = page.locator(f'#chart-results rect[data-day="{today}"]')
            assert {bars.nth(i).get_attribute("data-series") for i in range(bars.count())} == {"ok", "crash", "invalid"}
            assert page.locator('#chart-cost rect[data-series="claude*"]').count() == 1
            assert "claude* $0.42" in (page.text_content("#chart-cost .legend") or "")

            page.click('#done tr[data-job="good"]')
            page.wait_for_selector("#detail #attempts tbody tr", timeout=10_000)
            assert page.is_hidden("#list") and page.is_visible("#detail")
            assert page.evaluate("location.hash") == "#job/good"
            assert page.evaluate("location.search") == f"?token={TOKEN}"  # the page keeps its token
            assert page.text_content("#detail .title h2") == "good"
            assert page.text_content("#detail .badge") == "done \u00b7 ok"
            assert page.text_content("#detail pre.diffstat") == stat
            link = page.locator("#pr a")
            assert link.get_attribute("href") == "https://github.com/example/project/pull/1"
            assert page.locator("#attempts tbody tr").count() == 1
            figures = dict(
                zip(
                    page.locator("#figures td:first-child").all_text_contents(),
                    page.locator("#figures td:nth-child(2)").all_text_contents(),
                    strict=True,
                )
            )
            assert figures["result"] == "ok" and figures["changes"] == "1 files, +2 -0"
            assert page.locator("#failure").count() == 0
            page.screenshot(path=str(tmp_path / "job-view.png"), full_page=True)
            shots = os.environ.get("AQ_SCREENSHOT_DIR")
            if shots:
                page.screenshot(path=str(Path(shots) / "job-view.png"), full_page=True)

            page.click("#detail a.back")
            page.wait_for_selector("#list", state="visible", timeout=10_000)
            page.click('#failed tr[data-job="bad"]')
            page.wait_for_selector("#detail #failure", timeout=10_000)
            failure = page.text_content("#detail #failure .failure") or ""
            assert failure.startswith("crash: ") and "exit 3" in failure
            assert "bad.txt | 1 +" in (page.text_content("#detail pre.diffstat") or "")
            assert page.text_content("#pr .pr") == "none (aq pr bad opens one)"

            assert CANARY not in page.content()
            assert not problems, problems  # no script error, no CSP violation
            others = [u for u, _ in requests if not (u.startswith(dash.url) or u.startswith("data:"))]
            assert not others, f"the page requested other hosts: {others}"
            api = [(u, auth) for u, auth in requests if "/api/" in u]
            assert any(u.endswith("/api/job/good") for u, _ in api) and any(u.endswith("/api/state") for u, _ in api)
            assert all(auth == f"Bearer {TOKEN}" for _, auth in api), api
        finally:
            browser.close()
