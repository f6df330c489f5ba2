"""A finished job's row kept as its meta's last line (``row_line``): written by every move into
``done/`` or ``failed/``, taken by the cold rebuild only where it is exactly what computing gives."""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import pytest
from helpers import aq
from test_finished_row import _meta
from test_view_build import _cold_in_process
from test_views import no_cache, queue  # noqa: F401 (queue: a fixture)

from aq_core import finished_row as finished_row_module
from aq_core import records, row_line
from aq_core.finished_row import finished_row
from aq_core.meta import Meta, encode_lines, parse_lines
from aq_core.records import _ENCODE_ROW, SUMMARY
from aq_core.status import job_row
from aq_core.store import State
from aq_core.store_fs import FsStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from queue_data import drop_kept_rows  # noqa: E402  (cuts each meta back to before its kept row)

WIDTH = len(SUMMARY)


def line_for(job_id: str, state: State, data: bytes) -> bytes:
    """The line a move into ``state`` appends to meta ``data`` (as ``transitions.arrived`` computes it)."""
    full = job_row(job_id, state, Meta.from_bytes(data))
    item = row_line.item(_ENCODE_ROW(full), [full.get(k) for k in SUMMARY], len(data))
    return encode_lines(item) if item is not None else b""


def computed(job_id: str, state: str, data: bytes) -> tuple[bytes, list]:
    full = finished_row(job_id, state, parse_lines(data))
    return _ENCODE_ROW(full).encode(), [full.get(k) for k in SUMMARY]


@pytest.mark.parametrize("state", [State.DONE, State.FAILED])
def test_a_kept_row_is_the_row_computing_gives_even_with_the_line_in_meta(state: State) -> None:
    rng = random.Random(4100 + len(state.value))
    for i in range(2000):
        data = _meta(rng)
        torn = bool(data) and not data.endswith(b"\n")
        data += line_for(f"job-{i}", state, data)
        got = row_line.kept(data, f"job-{i}", state.value, WIDTH)
        if torn:  # the line went on after the torn one: not a line of its own (the store starts one)
            assert got is None
            continue
        # Computed from the meta with the line in it: the line changes no row.
        assert got == computed(f"job-{i}", state.value, data), data


def test_a_kept_row_round_trips_escapes_and_other_scripts() -> None:
    data = b"attempt=1\nengine=claude\nerror=back\\\\slash and \\nnew line, \xc3\xbcn\xc3\xafcode \xe2\x9c\x93\nresult=crash\n"
    data += line_for("j", State.FAILED, data)
    assert data.count(b"\n") == 5, "one line, whatever the row holds"
    text, summary = row_line.kept(data, "j", "failed", WIDTH)  # type: ignore[misc]
    assert (text, summary) == computed("j", "failed", data)
    assert summary[SUMMARY.index("error")] == "back\\slash and \nnew line, ünïcode ✓"


def test_a_line_that_is_not_exactly_the_rows_place_is_not_taken() -> None:
    head = b"added=1.5\nengine=claude\nattempt=1\nresult=ok\nfinished=2.5\n"
    good = head + line_for("j", State.DONE, head)
    assert row_line.kept(good, "j", "done", WIDTH) == computed("j", "done", good)
    summary_at = good.index(b" [") + 1
    cases = {
        "a line appended after it": good + b"requeued=3\n",
        "torn": good[:-1],
        "empty": b"",
        "other bytes before it (offset)": b"x=1\n" + good,
        "another format": good.replace(b"row=1 ", b"row=0 "),
        "another job": good.replace(b'"j"', b'"k"'),
        "another state": good.replace(b'"done"', b'"failed"'),
        "a summary of other fields": good[:summary_at] + b'["j", "done"] ' + good[good.index(b" {") + 1 :],
        "not JSON": good[:summary_at] + b"[nope " + good[summary_at + 1 :],
        "not ASCII": good[:-3] + b"\xff}\n",
        "no row after the summary": good[: good.index(b" {")] + b"\n",
        "no line": head,
        "nested beyond reason": good[:summary_at] + b"[" * 100_000 + b"\n",
    }
    for what, data in cases.items():
        assert row_line.kept(data, "j", "done", WIDTH) is None, what


def test_a_row_too_long_for_a_meta_value_is_not_kept() -> None:
    long = "x" * 5000
    assert row_line.item(f'{{"error": "{long}"}}', [], 10) is None
    assert row_line.item('{"error": "short"}', [], 10) == {"row": '1 10 [] {"error": "short"}'}


# The row ``finished_row`` computes from this meta, and the summary's fields, as of ``row_line.FORMAT``.
PINNED = {1: "ce7968bcaa5649fa"}
PIN_META = (
    b"added=1790000000.0\nengine=claude\nafter=a,b\npriority=3\nclaimed=1790000001.0\nattempt=1\nattempts=1\n"
    b"engine=claude\nmodel=claude-sonnet-4-5\ntokens_in=1200\ntokens_out=300\ntokens_cached=900\ncost_usd=0.25\n"
    b"estimated=cost_usd\nduration_s=42.5\nexit=1\nresult=rate_limited\nfinished=1790000050.0\nattempt=2\n"
    b"attempts=2\nengine=codex\nmodel=gpt-5-codex\ntokens_in=2000\ntokens_out=100\ncost_usd=0.5\n"
    b"duration_s=10.25\nexit=0\nlines_added=12\nlines_deleted=3\nfiles_changed=2\nresult=ok\n"
    b"finished=1790000100.0\nwip_branch=aq/wip/pin\nwip_commit=abc\ndecision=done\n"
)


def test_the_kept_rows_format_is_pinned_to_what_computing_gives() -> None:
    text, summary = computed("pin", "done", PIN_META)
    digest = hashlib.sha256(text + b"\n" + _ENCODE_ROW(list(SUMMARY)).encode()).hexdigest()[:16]
    assert PINNED.get(row_line.FORMAT) == digest, (
        f"finished_row's rows or records.SUMMARY changed (now {digest}): a row kept in meta by an earlier aq "
        "would be taken as it was. Bump row_line.FORMAT and pin the new digest under it."
    )
    assert max(PINNED) == row_line.FORMAT


def test_every_finished_job_of_a_real_run_keeps_its_row(queue: Path) -> None:  # noqa: F811
    store = FsStore(queue)
    for job_id, state in [*((f"ok{i}", "done") for i in range(4)), ("bad", "failed")]:
        data = store.read_meta_bytes(job_id)
        assert data.rsplit(b"\n", 2)[1].startswith(b"row=1 "), job_id
        start = data.rfind(b"\n", 0, -1) + 1
        assert row_line.kept(data, job_id, state, WIDTH) == computed(job_id, state, data[:start])
    # Run again: its new end keeps its row, the earlier one is not the last line any more.
    assert aq("retry", "bad", root=queue).returncode == 0
    assert store.locate("bad") is State.INBOX
    data = store.read_meta_bytes("bad")
    assert row_line.kept(data, "bad", "failed", WIDTH) is None
    assert aq("run", "--once", root=queue).returncode == 0  # it fails again (its verify is false)
    assert store.locate("bad") is State.FAILED
    data = store.read_meta_bytes("bad")
    assert data.count(b"\nrow=") == 2 and row_line.kept(data, "bad", "failed", WIDTH) is not None


def test_a_cold_rebuild_from_kept_rows_prints_what_computing_every_row_prints(  # type: ignore[no-untyped-def]
    queue: Path,  # noqa: F811
    monkeypatch,
    capfd,
) -> None:
    (queue / "config.yaml").unlink()
    calls: list[str] = []
    real = finished_row_module.finished_row
    monkeypatch.setattr(
        finished_row_module, "finished_row", lambda job_id, *a: calls.append(job_id) or real(job_id, *a)
    )
    kept = _cold_in_process(queue, capfd, monkeypatch, table=True)
    assert calls == [], "every row was taken from meta"
    monkeypatch.setattr(records, "PARALLEL_MIN", 2)  # five finished jobs: shares in two processes
    assert _cold_in_process(queue, capfd, monkeypatch, table=True) == kept
    assert drop_kept_rows(queue) == 5
    monkeypatch.setattr(records, "PARALLEL_MIN", 4000)  # in this process: its computations counted
    assert _cold_in_process(queue, capfd, monkeypatch, table=True) == kept
    assert sorted(set(calls)) == ["bad", "ok0", "ok1", "ok2", "ok3"] and len(calls) == 15  # 3 reads, 5 rows
    expected = no_cache(queue)  # the commands themselves, out of process, from computed rows
    drop_kept_rows(queue)
    for path in (queue / "meta").glob("*.meta"):  # each row kept again, as the runner would
        data = path.read_bytes()
        state = FsStore(queue).locate(path.stem)
        path.write_bytes(data + line_for(path.stem, state, data))  # type: ignore[arg-type]
    assert no_cache(queue) == expected
