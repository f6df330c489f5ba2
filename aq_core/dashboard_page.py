"""The dashboard's one page: HTML around ``dashboard.css`` and ``dashboard.js``, and its strict CSP.

The style and script are inlined and allowed by their SHA-256 in the Content-Security-Policy, so
the page loads nothing from anywhere (the charts are SVG the script draws) and runs no other script.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

REFRESH_S = 1.0
_HERE = Path(__file__).parent

_JOB_HEAD = ("ID", "Engine", "Attempts", "Result", "Lock", "Next eligible", "Insights")
_ENGINE_HEAD = ("Engine", "Jobs", "Outcomes", "Success", "Tokens", "Cost", "Avg duration")


def _thead(names: tuple[str, ...], numeric: set[str]) -> str:
    cells = "".join(f'<th class="num">{n}</th>' if n in numeric else f"<th>{n}</th>" for n in names)
    return f"<thead><tr>{cells}</tr></thead><tbody></tbody>"


def _csp_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def build_page() -> tuple[bytes, str]:
    """Return the page and its Content-Security-Policy."""
    css = (_HERE / "dashboard.css").read_text(encoding="utf-8")
    script = (_HERE / "dashboard.js").read_text(encoding="utf-8").replace("REFRESH_MS", str(int(REFRESH_S * 1000)))
    sections = "".join(
        f'<section id="{name}"><h2>{title} <span class="count">0</span></h2>'
        f'<div class="table"><table class="jobs">{_thead(_JOB_HEAD, {"Attempts"})}</table></div></section>'
        for name, title in (("running", "Running"), ("waiting", "Waiting"), ("failed", "Failed"), ("done", "Done"))
    )
    history = (
        '<section id="history"><h2>Last 14 days</h2><div class="charts">'
        '<div class="chart"><h3>Jobs by result</h3><div id="chart-results"></div></div>'
        '<div class="chart"><h3>Cost per engine</h3><div id="chart-cost"></div></div>'
        "</div></section>"
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
        f'<link rel="icon" href="data:,"><style>{css}</style></head><body>'
        '<header><h1>aq <span>dashboard</span></h1><div id="root" class="root"></div>'
        '<div class="status"><span id="lost" class="lost" hidden></span>'
        '<span id="updated">connecting\u2026</span></div></header>'
        '<div id="summary" class="summary"></div>'
        f'<main id="list">{history}{sections}{engines}</main>'
        '<main id="detail" hidden></main>'
        "<footer>Read-only. Refreshes every second from the records <code>aq status</code>, "
        "<code>aq insights</code> and <code>aq show</code> read; click a job for its detail.</footer>"
        "<noscript><p class=note>This page needs JavaScript; <code>aq status</code> shows the same.</p></noscript>"
        f"<script>{script}</script></body></html>"
    )
    csp = (
        f"default-src 'none'; script-src {_csp_source(script)}; style-src {_csp_source(css)}; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode(), csp


PAGE, CSP = build_page()

HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
