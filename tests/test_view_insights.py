"""``aq insights`` after a few finished jobs changed: the view patched, and the output exactly what
building every row prints (retries, cancels, out-of-order jobs, columns that widen or narrow, torn or
stale files)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
from helpers import aq, stub, write_job
from test_views import COMMANDS, finish, no_cache, out, queue, warm  # noqa: F401 (queue: a fixture)

from aq_core import records, rollup, view_delta, views
from aq_core.store import State
from aq_core.store_fs import FsStore

INSIGHTS = [args for args in COMMANDS if args[0] == "insights" and len(args) <= 3]  # the view's commands


def assert_insights_patched(root: Path, patched: bool = True) -> None:
    """Every ``aq insights`` output read after a change (twice) is what meta says; with ``patched`` the
    view file itself was not written again."""
    path = views.view_path(FsStore(root))
    before = path.stat().st_ino
    first = {args: out(root, *args) for args in INSIGHTS}
    again = {args: out(root, *args) for args in INSIGHTS}
    assert (path.stat().st_ino == before) is patched
    expected = no_cache(root)
    assert first == again == {args: expected[args] for args in INSIGHTS}
    warm(root)  # the full view again, for the next step


def test_insights_after_jobs_finished_patches_the_view(queue: Path, tmp_path: Path) -> None:  # noqa: F811
    warm(queue)
    finish(queue, tmp_path, "zz")
    assert_insights_patched(queue)
    finish(queue, tmp_path, *(f"n{i}" for i in range(6)), front={"verify": "false"})
    assert_insights_patched(queue)
    # Out of order: jobs whose finish time or queue time puts them anywhere but first.
    finish(queue, tmp_path, "e1", "e2")
    store = FsStore(queue)
    for job_id, when in (("e1", 1.0), ("e2", 2_000_000_000.0)):
        store.append_meta(job_id, {"finished": when})
        os.utime(store.path(job_id, State.DONE), (1.0, 1.0))
    assert_insights_patched(queue)
    # A retry takes a job out of failed/ (its rollup figures leave), a cancel puts a waiting one in.
    assert aq("retry", "n0", root=queue).returncode == 0
    waiting = write_job(tmp_path / "more", "nv", {"engine": "command", "cwd": str(tmp_path / "w"), "command": stub()})
    assert aq("add", str(waiting), root=queue).returncode == 0
    assert aq("cancel", "nv", root=queue).returncode == 0
    assert_insights_patched(queue)
    # The retried job runs again and fails again: the same id comes back under a new version.
    assert aq("run", "--once", root=queue).returncode == 0
    assert FsStore(queue).locate("n0") is State.FAILED
    assert_insights_patched(queue)
    # Most failed jobs leave at once (their files removed by hand).
    for i in range(1, 6):
        FsStore(queue).path(f"n{i}", State.FAILED).unlink()
    assert_insights_patched(queue)


def test_insights_patch_where_the_status_table_would_be_laid_out_again(queue: Path, tmp_path: Path) -> None:  # noqa: F811
    warm(queue)
    long_id = "a-job-with-a-much-longer-id-than-the-others"
    finish(queue, tmp_path, long_id, front={"verify": "false"})  # the status table's ID column widens
    assert_insights_patched(queue)  # insights shows no such table: still patched
    assert out(queue, "status") == no_cache(queue)[("status",)]  # status writes the whole view
    warm(queue)
    finish(queue, tmp_path, "sf")
    FsStore(queue).path(long_id, State.FAILED).unlink()  # the widest row leaves: the column narrows
    assert_insights_patched(queue)


def test_insights_from_a_stale_or_torn_view_or_delta(queue: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    warm(queue)
    store = FsStore(queue)
    path = views.view_path(store)
    delta = view_delta.delta_path(path)
    older = path.read_bytes()
    finish(queue, tmp_path, "s1", "s2")
    warm(queue)
    finish(queue, tmp_path, "s3")
    out(queue, "insights", "--json")  # patched: the delta keeps s3's row
    kept = delta.read_bytes()
    path.write_bytes(older)  # a view two changes old (another token: the delta is not its own)
    assert_insights_patched(queue)
    delta.write_bytes(kept[:30])  # a torn delta: ignored, computed again
    finish(queue, tmp_path, "s4")
    assert_insights_patched(queue)
    for cut in (len(older) // 2, 50):  # a torn view: never used, written again whole
        path.write_bytes(older[:cut])
        assert_insights_patched(queue, patched=False)
    # A tally that lacks a removed row's figures (a view not written by this code): a full rebuild.
    finish(queue, tmp_path, "s5")
    warm(queue)
    FsStore(queue).path("s5", State.DONE).unlink()
    monkeypatch.setattr(rollup, "_put", lambda values, value, sign: values.remove(object()))
    assert views._insights_view(store)[0] is None
    monkeypatch.undo()
    # Many changes at once: folded into a full rewrite, the output the same.
    finish(queue, tmp_path, *(f"s{i}" for i in range(6, 10)))
    monkeypatch.setattr(view_delta, "FOLD_MIN", 2)
    assert views._insights_view(store)[0] is None


def test_the_patched_insights_read_loads_no_rows_cache(queue: Path, tmp_path: Path, monkeypatch, capfd) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    warm(queue)
    finish(queue, tmp_path, "f1", "f2")  # journalled by the runner: their rows need no meta
    store = FsStore(queue)
    monkeypatch.setattr(store, "read_meta", lambda job_id: pytest.fail(f"read the meta of {job_id}"))
    monkeypatch.setattr(records, "_load", lambda path: pytest.fail("loaded the rows cache"))
    monkeypatch.setattr(views, "stdout_takes_bytes", lambda: True)
    capfd.readouterr()
    views.print_insights_json(store)
    got_json = capfd.readouterr().out.encode()
    assert views.print_insights_text(store, 3)
    got_text = capfd.readouterr().out.encode()
    monkeypatch.undo()
    expected = no_cache(queue)
    assert got_json == expected[("insights", "--json")]
    assert got_text == expected[("insights", "--limit", "3")]


def _rec(rng: random.Random, i: int) -> dict:
    engines = ["a", "b", "c", None]
    spent = {}
    for name in rng.sample(["a", "b", "c"], rng.randint(0, 2)):
        figures = {k: rng.randint(0, 10**9) for k in ("tokens_in", "tokens_out", "tokens_cached") if rng.random() < 0.8}
        if rng.random() < 0.8:
            figures["cost_usd"] = rng.choice([0.1, 0.2, 0.3, 1e-7, 12.345678, rng.random() * 10])
        if rng.random() < 0.2:
            figures["cost_estimated"] = True
        spent[name] = figures
    return {
        "id": f"j{i}",
        "engine": rng.choice(engines),
        "result": rng.choice(["ok", "crash", None]),
        "state": rng.choice(["done", "failed"]),
        "duration_s": rng.choice([None, 0.1, 0.7, 1e-6, rng.random() * 3000]),
        "by_engine": spent,
    }


def test_a_tally_does_not_depend_on_order_or_on_what_came_and_went() -> None:
    rng = random.Random(15)
    recs = [_rec(rng, i) for i in range(400)]
    whole = rollup.finish(rollup.tally(recs))
    assert whole == rollup.finish(rollup.tally(list(reversed(recs))))
    gone, extra = recs[:50], [_rec(rng, 1000 + i) for i in range(30)]
    counts = rollup.tally(recs)
    for rec in gone:
        rollup.apply(counts, rec, -1)
    for rec in extra:
        rollup.apply(counts, rec)
    assert rollup.finish(counts) == rollup.finish(rollup.tally(recs[50:] + extra))
    for rec in recs[50:] + extra:
        rollup.apply(counts, rec, -1)
    assert counts == {}, "every slot goes with the last job that named it"
    with pytest.raises(ValueError):
        rollup.apply(counts, recs[0], -1)


def test_the_rollup_adds_figures_as_before() -> None:
    recs = [
        {"engine": "a", "result": "ok", "state": "done", "duration_s": 10.0, "by_engine": {"a": {"cost_usd": 0.1}}},
        {
            "engine": "a",
            "result": "crash",
            "state": "failed",
            "duration_s": 20.0,
            "by_engine": {"b": {"cost_usd": 0.2}},
        },
        {"engine": "a", "result": "ok", "state": "done", "by_engine": {"a": {"tokens_in": 5, "cost_estimated": True}}},
    ]
    a, b = rollup.finish(rollup.tally(recs))
    assert a == {
        "engine": "a",
        "jobs": 3,
        "succeeded": 2,
        "failed": 1,
        "success_rate": 0.6667,
        "tokens_in": 5,
        "tokens_out": None,
        "tokens_cached": None,
        "cost_usd": 0.1,
        "cost_estimated": True,
        "avg_duration_s": 15.0,
    }
    assert (b["jobs"], b["success_rate"], b["cost_usd"], b["cost_estimated"]) == (0, None, 0.2, False)


def test_insights_with_no_finished_job_left(queue: Path) -> None:  # noqa: F811
    warm(queue)
    store = FsStore(queue)
    for state in (State.DONE, State.FAILED):
        for entry in store.scan(state):
            store.path(entry.id, state).unlink()
    assert out(queue, "insights") == b"no finished jobs\n"
    shutil.rmtree(queue / "cache")
    assert out(queue, "insights") == b"no finished jobs\n"
