"""``finished_row`` (the rebuild's one pass over a finished job's meta) gives exactly ``job_row``'s dict."""

from __future__ import annotations

import json
import random

import pytest

from aq_core.finished_row import finished_row
from aq_core.meta import Meta
from aq_core.status import job_row
from aq_core.store import State

ODD = ["", "0", "-0", "1", "12", "1e3", "1e18", "1e19", "-5", "3.5", "nan", "inf", "-inf", "x", " 7 ", "0x10", "1_000"]
KEYS = [
    "engine",
    "model",
    "exit",
    "tokens_in",
    "tokens_out",
    "tokens_cached",
    "turns",
    "tool_calls",
    "duration_s",
    "cost_usd",
    "estimated",
    "result",
    "finished",
    "started",
    "session_id",
    "files_changed",
    "lines_added",
    "lines_deleted",
    "wip_commit",
    "last_failure",
    "error",
    "attempts",
]
TOP = ["added", "engine", "lock", "after", "priority", "not_before", "next_eligible", "wip_branch", "wip_base"]


def _value(rng: random.Random, key: str) -> str:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(ODD)
    if key in ("engine", "model"):
        return rng.choice(["claude", "codex", "x,y", ""])
    if key == "estimated":
        return rng.choice(["cost_usd", "tokens_in,cost_usd", ",", "cost_usd,,tokens_out", ""])
    if key == "after":
        return rng.choice(["a", "a,b", ",", ""])
    if key in ("error", "last_failure", "lock"):
        return rng.choice(["crash", "bad\\nline", "back\\\\slash", "ünï", ""])
    return str(rng.choice([rng.randint(0, 10**7), round(rng.uniform(0, 5000), 3), rng.uniform(-1, 1)]))


def _meta(rng: random.Random) -> bytes:
    lines = [f"{key}={_value(rng, key)}" for key in rng.sample(TOP, rng.randint(0, len(TOP)))]
    for n in range(rng.randint(0, 3)):
        lines.append(f"attempt={rng.choice([str(n + 1), 'x', ''])}")
        for key in rng.choices(KEYS, k=rng.randint(0, 25)):  # a key twice within an attempt: the last wins
            lines.append(f"{key}={_value(rng, key)}")
        if rng.random() < 0.2:
            lines.append("Not A Key=1")  # garbage lines are skipped
    lines += [f"{key}={_value(rng, key)}" for key in rng.sample(TOP, rng.randint(0, 3))]
    text = "\n".join(lines) + "\n"
    return text.encode() + (b"torn=1" if rng.random() < 0.2 else b"")


@pytest.mark.parametrize("state", [State.DONE, State.FAILED])
def test_the_same_dict_as_job_row_for_generated_metas(state: State) -> None:
    rng = random.Random(1500 + len(state.value))
    for i in range(3000):
        meta = Meta.from_bytes(_meta(rng))
        want = job_row(f"job-{i}", state, meta)
        got = finished_row(f"job-{i}", state.value, meta.pairs)
        assert list(got.items()) == list(want.items()), meta
        assert json.dumps(got) == json.dumps(want)


def test_a_meta_with_no_attempt_and_an_empty_meta() -> None:
    for data in (b"", b"added=1.5\nengine=claude\nresult=ok\n", b"garbage\n"):
        meta = Meta.from_bytes(data)
        assert finished_row("j", "done", meta.pairs) == job_row("j", State.DONE, meta)
