"""``aq report``: the night on one page (results, spend per engine, lines changed, what needs a human).

Built from the same rows as ``aq status`` and ``aq insights`` plus each finished job's meta (for
failure details and pull requests), never from a job file, so the prompt cannot reach it. The
runner sends it as the ``queue_drained`` notification when ``report_on_drain: true``.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from typing import Any

from aq_core.errors import UsageError

DEFAULT_SINCE = "24h"
TOP = 5
FAILED_KINDS = ("failed", "dependency_failed")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``aq report`` to the command line."""
    p = sub.add_parser("report", help="the night on one page: results, cost, changes, what needs attention")
    p.add_argument("--since", metavar="WHEN", default=DEFAULT_SINCE, help="a duration back (default 24h, 7d) or a date")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the report as one JSON object")
    fmt.add_argument("--markdown", action="store_true", help="Markdown to paste into a pull request or a chat")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from aq_core.insights import parse_since
    from aq_core.store_open import open_store

    try:
        since = parse_since(args.since)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report = build(open_store(args.root, url=args.store), since)
    if args.json:
        print(json.dumps(report))
    else:
        print(render_markdown(report) if args.markdown else render_text(report))
    return 0


# -- the figures ------------------------------------------------------------------------------------


def build(store: Any, since: float, until: float | None = None) -> dict[str, Any]:
    """Return the report of jobs finished in ``[since, until]`` (epoch; ``until`` defaults to now)."""
    from aq_core.insights import rollup
    from aq_core.status import status_rows

    until = time.time() if until is None else until
    rows = status_rows(store)
    recs = [r for r in rows if r["state"] in ("done", "failed") and since <= (r.get("finished") or 0) <= until]
    recs.sort(key=lambda r: (r.get("finished") or 0, r["id"]))
    full = [r.full() if hasattr(r, "full") else dict(r) for r in recs]
    lines = {key: sum(r.get(key) or 0 for r in full) for key in ("files_changed", "lines_added", "lines_deleted")}
    costs = [r for r in full if r.get("cost_usd") is not None]
    report: dict[str, Any] = {
        "since": round(since, 3),
        "until": round(until, 3),
        "jobs": len(full),
        "results": dict(Counter(r.get("result") or "unknown" for r in full).most_common()),
        "engines": rollup(recs),
        "lines": lines,
        "cost_usd": round(sum(r["cost_usd"] for r in costs), 6) if costs else None,
        "cost_estimated": any("cost_usd" in (r.get("estimated") or []) for r in costs),
        "queue": {
            "waiting": sum(1 for r in rows if r["state"] == "inbox"),
            "running": sum(1 for r in rows if r["state"] == "building"),
        },
        "attention": _attention(store, full, _engine_attention(store, rows)),
        "slowest": [
            {"id": r["id"], "duration_s": r["duration_s"]}
            for r in sorted(full, key=lambda r: (-(r.get("duration_s") or 0), r["id"]))[:TOP]
            if r.get("duration_s") is not None
        ],
        "costliest": [
            {"id": r["id"], "cost_usd": r["cost_usd"], "estimated": "cost_usd" in (r.get("estimated") or [])}
            for r in sorted(costs, key=lambda r: (-r["cost_usd"], r["id"]))[:TOP]
        ],
        "pull_requests": [],
    }
    for rec in full:
        last = store.read_meta(rec["id"]).last
        if last.get("pr_url"):
            report["pull_requests"].append({"id": rec["id"], "pr_url": last["pr_url"]})
    return report


def _attention(store: Any, full: list[dict[str, Any]], engines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed jobs (with their class and detail), then ``engines`` (pauses, budgets), then pull requests
    that were not opened and jobs that needed retries."""
    from aq_core.insights import run_records
    from aq_core.show import failure_of

    failed, later = [], []
    for rec in full:
        meta = store.read_meta(rec["id"])
        last = meta.last
        item = {"id": rec["id"], "result": rec.get("result"), "attempts": rec.get("attempts")}
        if rec["state"] == "failed":
            failure = failure_of({**rec, "runs": run_records(meta)}, last) or {}
            kind = "dependency_failed" if rec.get("result") == "dependency_failed" else "failed"
            failed.append({**item, "kind": kind, **{k: v for k, v in failure.items() if k != "class" and v}})
        if last.get("pr_error"):
            later.append({**item, "kind": "pr_failed", "pr_error": last["pr_error"]})
        elif last.get("pr_requested") and not last.get("pr_url"):
            later.append({**item, "kind": "pr_not_opened", "detail": "`aq pr` opens it"})
        if rec["state"] == "done" and (rec.get("attempts") or 0) > 1:
            classes = [r.get("result") for r in run_records(meta)[:-1] if r.get("result")]
            later.append({**item, "kind": "retried", "failures": classes})
    failed.sort(key=lambda a: FAILED_KINDS.index(a["kind"]))
    return failed + engines + later


def _engine_attention(store: Any, rows: list[Any]) -> list[dict[str, Any]]:
    """Engines paused by a limit and budgets reached today, as attention items (``id``: the job that hit it)."""
    from aq_core.status import engine_rows

    paused, budgets = [], []
    for row in engine_rows(store, rows):
        if row["paused_until"]:
            paused.append(
                {
                    "id": row["pause_job"],
                    "result": row["pause_reason"],
                    "kind": "engine_paused",
                    "engine": row["engine"],
                    "until": row["paused_until"],
                }
            )
        if row["budget_reached"]:
            budgets.append(
                {"id": None, "result": None, "kind": "budget", "engine": row["engine"], "detail": row["budget_reached"]}
            )
    return paused + budgets


# -- text and Markdown ------------------------------------------------------------------------------


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def _money(value: float | None, estimated: bool = False) -> str:
    return "" if value is None else f"${value:.2f}{'*' if estimated else ''}"


def _results(report: dict[str, Any], code: Any = str) -> str:
    return ", ".join(f"{n} {code(result)}" for result, n in report["results"].items()) or "none"


def _attention_line(item: dict[str, Any], code: Any = str, text: Any = str) -> str:
    """One attention item as a sentence; ``code`` formats ids and classes, ``text`` free text (Markdown)."""
    from aq_core.durations import format_duration

    kind = item["kind"]
    who = code(item["id"]) if item.get("id") else ""
    if kind in FAILED_KINDS:
        line = f"{who}: {code(item['result'])}"
        if item.get("last_failure"):
            line += f" (last failure {code(item['last_failure'])})"
        if item.get("failed_dependency"):
            line += f" (its dependency {code(item['failed_dependency'])} failed)"
        return line + (f": {text(item['detail'])}" if item.get("detail") else "")
    if kind == "retried":
        return f"{who}: ok after {item['attempts']} attempts ({', '.join(map(code, item['failures'])) or 'orphaned'})"
    if kind == "pr_failed":
        return f"{who}: pull request not opened: {text(item['pr_error'])}"
    if kind == "pr_not_opened":
        return f"{who}: pull request asked for, not opened yet ({code('aq pr ' + item['id'])} opens it)"
    if kind == "engine_paused":
        left = format_duration(max(0.0, item["until"] - time.time()))
        hit = f", hit by {who}" if who else ""
        return f"engine {code(item['engine'])} paused until {_when(item['until'])} (in {left}; {code(item['result'])}{hit})"
    return f"engine {code(item['engine'])}: budget reached: {text(item.get('detail'))}"


def render_text(report: dict[str, Any]) -> str:
    """``aq report`` for the terminal."""
    from aq_core.durations import format_duration

    lines = report["lines"]
    out = [
        f"aq report: {_when(report['since'])} to {_when(report['until'])}",
        f"finished     {report['jobs']} job{'s' if report['jobs'] != 1 else ''}: {_results(report)}",
        f"changes      +{lines['lines_added']}/-{lines['lines_deleted']} lines in {lines['files_changed']} files",
        f"cost         {_money(report['cost_usd'], report['cost_estimated']) or 'not reported'}",
        f"queue now    {report['queue']['waiting']} waiting, {report['queue']['running']} running",
    ]
    if report["engines"]:
        out += ["", _engine_table(report["engines"])]
    out += ["", "needs attention" if report["attention"] else "needs attention: nothing"]
    out += [f"  {_attention_line(item)}" for item in report["attention"]]
    if report["slowest"]:
        out.append("")
        out.append(
            "slowest      " + ", ".join(f"{s['id']} {format_duration(s['duration_s'])}" for s in report["slowest"])
        )
    if report["costliest"]:
        out.append(
            "costliest    "
            + ", ".join(f"{c['id']} {_money(c['cost_usd'], c['estimated'])}" for c in report["costliest"])
        )
    if report["pull_requests"]:
        out += ["", "pull requests"] + [f"  {p['id']}: {p['pr_url']}" for p in report["pull_requests"]]
    return "\n".join(out)


def _engine_table(engines: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    from aq_core.durations import format_duration, format_tokens

    rows = [
        [
            e["engine"],
            e["jobs"],
            f"{e['success_rate'] * 100:.0f}%" if e.get("success_rate") is not None else "",
            format_tokens(e.get("tokens_in")),
            format_tokens(e.get("tokens_out")),
            _money(e.get("cost_usd"), e.get("cost_estimated")),
            format_duration(e.get("avg_duration_s")),
        ]
        for e in engines
    ]
    headers = ["ENGINE", "JOBS", "SUCCESS", "IN", "OUT", "COST", "AVG TIME"]
    return tabulate(rows, headers=headers, disable_numparse=True)


def md_text(value: Any) -> str:
    """``value`` as Markdown text: one line, markup characters escaped (nothing becomes a link or HTML)."""
    text = re.sub(r"\s+", " ", str(value))
    for ch in "\\`*_[]<>|#!~":
        text = text.replace(ch, "\\" + ch)
    return text


def _code(value: Any) -> str:
    return "`" + str(value).replace("`", "'") + "`"


def render_markdown(report: dict[str, Any]) -> str:
    """``aq report --markdown``: headings, a table and lists that paste cleanly into a PR or a chat."""
    from aq_core.durations import format_duration, format_tokens

    lines = report["lines"]
    out = [
        f"### aq report: {_when(report['since'])} to {_when(report['until'])}",
        "",
        f"**{report['jobs']} job{'s' if report['jobs'] != 1 else ''} finished**: {_results(report, _code)}  ",
        f"**Changes**: +{lines['lines_added']} / -{lines['lines_deleted']} lines in {lines['files_changed']} files  ",
        f"**Cost**: {md_text(_money(report['cost_usd'], report['cost_estimated']) or 'not reported')}  ",
        f"**Queue now**: {report['queue']['waiting']} waiting, {report['queue']['running']} running",
    ]
    if report["engines"]:
        out += [
            "",
            "| engine | jobs | success | tokens in | tokens out | cost | avg time |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for e in report["engines"]:
            rate = f"{e['success_rate'] * 100:.0f}%" if e.get("success_rate") is not None else ""
            cells = [
                _code(e["engine"]),
                str(e["jobs"]),
                rate,
                format_tokens(e.get("tokens_in")),
                format_tokens(e.get("tokens_out")),
                md_text(_money(e.get("cost_usd"), e.get("cost_estimated"))),
                format_duration(e.get("avg_duration_s")),
            ]
            out.append("| " + " | ".join(cells) + " |")
    out += ["", "#### Needs attention", ""]
    out += [f"- {_attention_line(item, _code, md_text)}" for item in report["attention"]] or ["Nothing."]
    if report["slowest"]:
        out += ["", "#### Slowest", ""]
        out += [f"{n}. {_code(s['id'])} {format_duration(s['duration_s'])}" for n, s in enumerate(report["slowest"], 1)]
    if report["costliest"]:
        out += ["", "#### Costliest", ""]
        out += [
            f"{n}. {_code(c['id'])} {md_text(_money(c['cost_usd'], c['estimated']))}"
            for n, c in enumerate(report["costliest"], 1)
        ]
    if report["pull_requests"]:
        out += ["", "#### Pull requests", ""]
        out += [f"- {_code(p['id'])}: <{p['pr_url']}>" for p in report["pull_requests"] if _is_url(p["pr_url"])]
    if report["cost_estimated"] or any(e.get("cost_estimated") for e in report["engines"]):
        out += ["", "\\* estimated from a pricing table (the engine did not report it)"]
    return "\n".join(out)


def _is_url(text: str) -> bool:
    return text.startswith(("https://", "http://")) and not any(c in text for c in " <>\n")


# -- the queue_drained notification -----------------------------------------------------------------


def send_drained(store: Any, notifier: Any, since: float | None) -> None:
    """When ``report_on_drain`` is set: send ``queue_drained`` with the report of this run (and its Markdown)."""
    if not getattr(notifier.config, "report_on_drain", False):
        return
    try:
        report = build(store, since if since else time.time() - 86400)
        notifier.send("queue_drained", {**report, "markdown": render_markdown(report)})
    except Exception as exc:  # a report is a courtesy: it never fails the run
        notifier.log(f"report: cannot build the drained-queue report: {type(exc).__name__}: {exc}")
