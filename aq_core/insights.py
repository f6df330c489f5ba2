"""Insights: every figure of a job per attempt and in total, and a rollup per engine."""

from __future__ import annotations

import time
from typing import Any

from aq_core.meta import Meta, finite
from aq_core.store import State
from aq_core.usage import INT_FIELDS

SUMMED = ("tokens_in", "tokens_out", "tokens_cached", "cost_usd", "turns", "tool_calls", "duration_s")
RUN_KEYS = (
    "attempt",
    "engine",
    "exit",
    "result",
    "duration_s",
    "started",
    "finished",
    "model",
    "tokens_in",
    "tokens_out",
    "tokens_cached",
    "cost_usd",
    "turns",
    "tool_calls",
    "estimated",
    "session_id",
    "wip_commit",
    "files_changed",
    "lines_added",
    "lines_deleted",
    "reset_at",
    "detail",
)
FLOAT_KEYS = ("duration_s", "cost_usd", "started", "finished", "reset_at")
INT_KEYS = (*INT_FIELDS, "attempt", "exit", "files_changed", "lines_added", "lines_deleted")


def _typed(key: str, value: str | None) -> Any:
    if value is None or value == "":
        return None
    if key in INT_KEYS:
        number = finite(value)
        return int(number) if number is not None and abs(number) < 1e18 else None
    if key in FLOAT_KEYS:
        return finite(value)
    return value


# Each run key's type, looked up once per value: a rebuild types some 2.5 million values at 100,000 jobs.
_STR, _INT, _FLOAT, _NAMES = 0, 1, 2, 3
_KIND = {key: _INT if key in INT_KEYS else _FLOAT if key in FLOAT_KEYS else _STR for key in RUN_KEYS}
_KIND["estimated"] = _NAMES
_RUN_TAIL = tuple(key for key in RUN_KEYS if key != "attempt")


def _number(value: str) -> float | None:
    """``finite`` inlined: a float that is neither nan nor infinite, else None."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number - number == 0.0 else None  # nan and inf give nan


def run_records(meta: Meta) -> list[dict[str, Any]]:
    """Return one record per attempt, with the top-level key names and typed values."""
    runs = []
    kinds = _KIND
    for raw in meta.runs():
        run: dict[str, Any] = {"attempt": _typed("attempt", raw.get("attempt"))}
        get = raw.get
        for key in _RUN_TAIL:
            value = get(key)
            if not value:  # absent or empty: no figure
                continue
            kind = kinds[key]
            if kind == _STR:
                run[key] = value
            elif kind == _FLOAT:
                number = _number(value)
                if number is not None:
                    run[key] = number
            elif kind == _INT:
                number = _number(value)
                if number is not None and abs(number) < 1e18:
                    run[key] = int(number)
            else:
                names = [e for e in value.split(",") if e]
                if names:
                    run[key] = names
        runs.append(run)
    return runs


def job_record(job_id: str, state: State | str, meta: Meta, with_runs: bool = True) -> dict[str, Any]:
    """Return the ``insights JOB --json`` object: usage totals over attempts, latest of the rest."""
    last = meta.last
    runs = run_records(meta)
    state_value = state.value if isinstance(state, State) else state
    record: dict[str, Any] = {
        "id": job_id,
        "state": state_value,
        "engine": last.get("engine"),
        "result": last.get("result") if state_value != "building" else "running",
        "attempts": meta.integer("attempts"),
    }
    # One pass over the attempts for every total (summed in attempt order, as sum() would).
    totals: dict[str, Any] = {}
    models: list[str] = []
    estimated: set[str] = set()
    engines: set[str] = set()
    by_engine: dict[str, dict[str, Any]] = {}
    fallback = record["engine"] or "?"
    for run in runs:
        for key in SUMMED:
            value = run.get(key)
            if value is not None:
                totals[key] = totals.get(key, 0) + value
        model = run.get("model")
        if model:
            models.append(model)
        names = run.get("estimated")
        if names:
            estimated.update(names)
        engine = run.get("engine")
        if engine:
            engines.add(engine)
        # With fallback engines a job's attempts ran on several: spend is credited to each.
        spent = by_engine.setdefault(engine or fallback, {})
        for key in ("tokens_in", "tokens_out", "tokens_cached", "cost_usd"):
            value = run.get(key)
            if value is not None:
                spent[key] = spent.get(key, 0) + value
        if names and "cost_usd" in names:
            spent["cost_estimated"] = True
    for key in SUMMED:
        total = totals.get(key)
        if total is None:
            record[key] = None
        elif key in ("cost_usd", "duration_s"):
            record[key] = round(total, 6)
        else:
            record[key] = int(total)
    record["exit"] = runs[-1].get("exit") if runs else None
    record["model"] = models[-1] if models else None
    for key in ("files_changed", "lines_added", "lines_deleted"):
        record[key] = _typed(key, last.get(key))
    record["estimated"] = sorted(estimated)
    for key in ("wip_branch", "wip_base", "wip_commit", "last_failure", "error"):
        record[key] = last.get(key)
    record["engines"] = sorted(engines)
    record["by_engine"] = by_engine
    record["finished"] = _typed("finished", last.get("finished")) if state_value in ("done", "failed") else None
    record["added"] = _typed("finished", last.get("added"))
    if with_runs:
        record["runs"] = runs
    return record


def select(recs: list[dict[str, Any]], since: float | None = None, engine: str | None = None) -> list[dict[str, Any]]:
    """Filter records: finished at or after ``since`` (epoch), run on ``engine``."""
    out = []
    for rec in recs:
        if since is not None and (rec.get("finished") or 0) < since:
            continue
        if engine is not None and engine != rec.get("engine") and engine not in rec.get("engines", []):
            continue
        out.append(rec)
    out.sort(key=lambda r: (r.get("finished") or 0, r["id"]), reverse=True)
    return out


def rollup(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per engine: jobs, outcomes, tokens, cost (marked when estimated), average time.

    A job counts under the engine of its last attempt; tokens and cost under the engine of each
    attempt (``by_engine``), so a job that fell back from one engine to another credits both.
    """
    token_keys = ("tokens_in", "tokens_out", "tokens_cached", "cost_usd")
    acc: dict[str, dict[str, Any]] = {}

    def slot(engine: str) -> dict[str, Any]:
        if engine not in acc:
            acc[engine] = {
                "jobs": 0,
                "ok": 0,
                "failed": 0,
                "dur": 0.0,
                "ndur": 0,
                "est": False,
                **dict.fromkeys(token_keys),
            }
        return acc[engine]

    for rec in recs:
        get = rec.get
        engine = get("engine")
        if engine:  # a file that never validated ran on no engine
            row = acc.get(engine) or slot(engine)
            row["jobs"] += 1
            if get("result") == "ok":
                row["ok"] += 1
            if get("state") == "failed":
                row["failed"] += 1
            duration = get("duration_s")
            if duration is not None:
                row["dur"] += duration
                row["ndur"] += 1
        by_engine = get("by_engine")
        if not by_engine:
            continue
        for spent_on, spent in by_engine.items():
            row = acc.get(spent_on) or slot(spent_on)
            for key, value in spent.items():
                if key == "cost_estimated":
                    row["est"] = row["est"] or bool(value)
                elif value is not None and key in row:
                    current = row[key]
                    row[key] = value if current is None else current + value
    return rollup_rows(acc)


def rollup_rows(acc: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The rollup's rows from each engine's sums (``jobs``, ``ok``, ``failed``, ``dur``, ``ndur``,
    ``est`` and the token and cost sums): also what ``store_pg.reads`` gives for the server's sums."""
    rows = []
    for engine, a in sorted(acc.items()):
        rows.append(
            {
                "engine": engine,
                "jobs": a["jobs"],
                "succeeded": a["ok"],
                "failed": a["failed"],
                "success_rate": round(a["ok"] / a["jobs"], 4) if a["jobs"] else None,
                "tokens_in": a["tokens_in"],
                "tokens_out": a["tokens_out"],
                "tokens_cached": a["tokens_cached"],
                "cost_usd": round(a["cost_usd"], 6) if a["cost_usd"] is not None else None,
                "cost_estimated": a["est"],
                "avg_duration_s": round(a["dur"] / a["ndur"], 3) if a["ndur"] else None,
            }
        )
    return rows


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a duration back from now (``24h``, ``7d``) or a date (``2026-11-25``, ISO time)."""
    from datetime import datetime

    from aq_core.durations import parse_duration

    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since: {text!r}: expected a duration (24h, 7d) or a date (2026-11-25)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def _cost(value: float | None, estimated: bool) -> str:
    if value is None:
        return ""
    return f"${value:.2f}{'*' if estimated else ''}"


def render_job(record: dict[str, Any]) -> str:
    """The text of ``aq insights JOB``: the totals, then one row per attempt."""
    from tabulate import tabulate

    from aq_core.durations import format_duration, format_tokens

    est = set(record.get("estimated") or [])
    total = [
        ("job", record["id"]),
        ("state", record["state"]),
        ("result", record.get("result") or ""),
        ("engine", ", ".join(record.get("engines") or []) or record.get("engine") or ""),
        ("model", record.get("model") or ""),
        ("attempts", record.get("attempts")),
        ("duration", format_duration(record.get("duration_s"))),
        (
            "tokens in / cached / out",
            " / ".join(format_tokens(record.get(k)) or "-" for k in ("tokens_in", "tokens_cached", "tokens_out")),
        ),
        ("cost", _cost(record.get("cost_usd"), "cost_usd" in est) or "-"),
        (
            "turns / tool calls",
            f"{record.get('turns') if record.get('turns') is not None else '-'} / {record.get('tool_calls') if record.get('tool_calls') is not None else '-'}",
        ),
        (
            "changes",
            f"{record.get('files_changed') or 0} files, +{record.get('lines_added') or 0} -{record.get('lines_deleted') or 0}"
            if record.get("files_changed") is not None
            else "-",
        ),
        (
            "work branch",
            f"{record.get('wip_branch')} @ {(record.get('wip_commit') or '')[:10]}"
            if record.get("wip_branch")
            else "-",
        ),
    ]
    if record.get("last_failure") and record.get("last_failure") != record.get("result"):
        total.append(("last failure", record["last_failure"]))
    if record.get("error"):
        total.append(("error", record["error"]))
    lines = [tabulate(total, tablefmt="plain")]
    runs = record.get("runs") or []
    if runs:
        rows = [
            [
                r.get("attempt"),
                r.get("engine") or "",
                r.get("result") or "",
                r.get("exit") if r.get("exit") is not None else "",
                format_duration(r.get("duration_s")),
                format_tokens(r.get("tokens_in")),
                format_tokens(r.get("tokens_out")),
                _cost(r.get("cost_usd"), "cost_usd" in r.get("estimated", [])),
            ]
            for r in runs
        ]
        lines.append("")
        lines.append(
            tabulate(
                rows,
                headers=["ATTEMPT", "ENGINE", "RESULT", "EXIT", "DURATION", "IN", "OUT", "COST"],
                disable_numparse=True,
            )
        )
    if est:
        lines.append("\n* estimated from a pricing table (the engine did not report it)")
    return "\n".join(lines)


def render_overview(
    recs: list[dict[str, Any]], engines: list[dict[str, Any]], limit: int = 20, total: int | None = None
) -> str:
    """The text of ``aq insights``: recent finished jobs, then the rollup per engine. ``recs`` may be only
    the first ``limit`` of ``total`` records."""
    from tabulate import tabulate

    from aq_core.durations import format_duration, format_tokens

    count = len(recs) if total is None else total
    if not count:
        return "no finished jobs"
    rows = [
        [
            r["id"],
            r.get("engine") or "",
            r.get("result") or "",
            r.get("attempts"),
            format_duration(r.get("duration_s")),
            format_tokens(r.get("tokens_in")),
            format_tokens(r.get("tokens_out")),
            _cost(r.get("cost_usd"), "cost_usd" in (r.get("estimated") or [])),
            f"+{r.get('lines_added') or 0}/-{r.get('lines_deleted') or 0}"
            if r.get("files_changed") is not None
            else "",
        ]
        for r in (row.full() if hasattr(row, "full") else row for row in recs[:limit])
    ]
    out = [
        f"recent finished jobs ({min(limit, count)} of {count})",
        tabulate(
            rows,
            headers=["ID", "ENGINE", "RESULT", "ATTEMPTS", "DURATION", "IN", "OUT", "COST", "LINES"],
            disable_numparse=True,
        ),
        "",
        "per engine",
    ]
    erows = [
        [
            e["engine"],
            e["jobs"],
            f"{e['success_rate'] * 100:.0f}%" if e.get("success_rate") is not None else "",
            format_tokens(e.get("tokens_in")),
            format_tokens(e.get("tokens_out")),
            _cost(e.get("cost_usd"), e.get("cost_estimated")),
            format_duration(e.get("avg_duration_s")),
        ]
        for e in engines
    ]
    out.append(
        tabulate(erows, headers=["ENGINE", "JOBS", "SUCCESS", "IN", "OUT", "COST", "AVG TIME"], disable_numparse=True)
    )
    if any(e.get("cost_estimated") for e in engines):
        out.append("\n* includes costs estimated from a pricing table")
    return "\n".join(out)
