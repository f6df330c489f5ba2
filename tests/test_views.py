"""The finished jobs' view prints exactly what building every row prints: warm, cold, and with no cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import aq, stub, write_job

from aq_core import records, view_delta, views
from aq_core.store import State
from aq_core.store_fs import FsStore

COMMANDS = (
    ("status",),
    ("status", "--json"),
    ("insights",),
    ("insights", "--limit", "3"),
    ("insights", "--json"),
    ("insights", "--json", "--engine", "command"),
    ("insights", "--json", "--since", "1d"),
)


def out(root: Path, *args: str) -> bytes:
    proc = subprocess.run(
        [sys.executable, "-m", "aq_core", "--root", str(root), *args], capture_output=True, timeout=120, check=True
    )
    return proc.stdout


def no_cache(root: Path) -> dict[tuple[str, ...], bytes]:
    """Every command's output computed from meta alone (the cache deleted before each)."""
    found = {}
    for args in COMMANDS:
        shutil.rmtree(root / "cache", ignore_errors=True)
        found[args] = out(root, *args)
    shutil.rmtree(root / "cache", ignore_errors=True)
    return found


def warm(root: Path) -> dict[tuple[str, ...], bytes]:
    """Every command's output run twice in a row: the second from the view (or the rows cache)."""
    return {args: [out(root, *args) for _ in range(2)][1] for args in COMMANDS}


def assert_same(root: Path) -> None:
    expected = no_cache(root)
    assert out(root, "status") == expected[("status",)], "cold: the rebuild prints what meta says"
    assert warm(root) == expected


@pytest.fixture
def queue(tmp_path: Path) -> Path:
    root, work = tmp_path / "q", tmp_path / "w"
    work.mkdir()
    paths = [
        write_job(tmp_path / "jobs", f"ok{i}", {"engine": "command", "cwd": str(work), "command": stub()})
        for i in range(4)
    ]
    paths.append(
        write_job(
            tmp_path / "jobs", "bad", {"engine": "command", "cwd": str(work), "command": stub(), "verify": "false"}
        )
    )
    assert aq("add", *map(str, paths), root=root).returncode == 0
    assert aq("run", "--once", "--workers", "2", root=root).returncode == 0
    (root / "config.yaml").write_text("budgets:\n  daily_usd: 10\n  command: 5\n")
    return root


def test_every_output_is_the_same_warm_cold_and_without_a_cache(queue: Path, tmp_path: Path) -> None:
    store = FsStore(queue)
    assert {store.locate(f"ok{i}") for i in range(4)} == {State.DONE} and store.locate("bad") is State.FAILED
    assert_same(queue)
    assert views.view_path(store).exists()

    # Jobs that are not finished: a waiting one after a finished one, with a lock wider than any finished
    # row's (the finished lines are laid out again), and a running one.
    front = {"engine": "command", "cwd": str(tmp_path / "w"), "command": stub(), "after": ["ok0", "bad"]}
    waiting = write_job(tmp_path / "jobs", "waiting-with-a-long-name", {**front, "lock": "a-rather-long-lock-name"})
    assert aq("add", str(waiting), root=queue).returncode == 0
    assert store.claim("waiting-with-a-long-name")
    store.append_meta("waiting-with-a-long-name", {"claimed": 1.0})  # no start time: no clock in its row
    assert aq("add", str(write_job(tmp_path / "jobs", "later", front)), root=queue).returncode == 0
    assert_same(queue)

    # Meta of a finished job changes after it finished (`aq pr` writes its pull request's figures).
    store.append_meta("ok1", {"pr_url": "https://example.invalid/pr/1", "pr_pushed": "abc", "pr_error": ""})
    assert_same(queue)
    # A finished job's file is touched: its place in the queue's order moves.
    os.utime(store.path("ok2", State.DONE), (1.0, 1.0))
    assert_same(queue)
    # A finished job rewritten by hand: a NUL and a line break in a value, its file touched to say so.
    store.append_meta("ok3", {"error": "bad\x00byte\nand a second line", "lock": "l\x00ck"})
    os.utime(store.path("ok3", State.DONE))
    assert_same(queue)
    # A failed job is retried: it leaves failed/ and, run again, is finished anew.
    assert aq("retry", "bad", root=queue).returncode == 0
    assert_same(queue)


def test_the_view_path_reads_no_meta_and_no_rows_cache(queue: Path, monkeypatch, capfd) -> None:  # type: ignore[no-untyped-def]
    (queue / "config.yaml").unlink()  # the budgets read today's jobs' meta: left out of this check
    expected = no_cache(queue)
    for args in COMMANDS:
        out(queue, *args)  # warm: the view is written
    store = FsStore(queue)
    monkeypatch.setattr(store, "read_meta", lambda job_id: pytest.fail(f"read the meta of {job_id}"))
    monkeypatch.setattr(records, "_load", lambda path: pytest.fail("loaded the rows cache"))
    monkeypatch.setattr(views, "stdout_takes_bytes", lambda: True)  # capfd's stream is UTF-8 too
    capfd.readouterr()
    views.print_status(store, as_json=True)
    assert capfd.readouterr().out.encode() == expected[("status", "--json")]
    views.print_insights_json(store)
    assert capfd.readouterr().out.encode() == expected[("insights", "--json")]


def test_a_view_of_another_listing_is_never_used(queue: Path) -> None:
    expected = no_cache(queue)
    out(queue, "status")
    store = FsStore(queue)
    path = views.view_path(store)
    other = path.read_bytes()
    assert aq("retry", "bad", root=queue).returncode == 0
    assert aq("cancel", "bad", root=queue).returncode == 0  # back in failed/ under a new version
    path.write_bytes(other)  # the view of the listing before: its key no longer matches
    after = out(queue, "status", "--json")
    assert after != expected[("status", "--json")]
    shutil.rmtree(queue / "cache")
    assert out(queue, "status", "--json") == after
    path.write_bytes(other[:100])  # a torn view: ignored, written again
    assert out(queue, "status", "--json") == after


def test_a_stdout_that_takes_no_bytes_gets_the_same_output(queue: Path) -> None:
    import contextlib
    import gc
    import io

    from aq_core.cli import main

    expected = no_cache(queue)
    out(queue, "status")  # the view is written
    try:
        for args in (("status",), ("status", "--json"), ("insights", "--json")):
            text = io.StringIO()  # no byte stream under it: the view cannot be copied
            with contextlib.redirect_stdout(text):
                assert main(["--root", str(queue), *args]) == 0
            assert text.getvalue().encode() == expected[args]
    finally:
        gc.enable()  # the read commands turn collection off for their process


# -- the view patched for the jobs that changed since it was written ---------------------------------


def finish(root: Path, tmp_path: Path, *names: str, front: dict | None = None) -> None:
    """Add the jobs ``names`` and run them to the end with the real runner (which journals each one)."""
    base = {"engine": "command", "cwd": str(tmp_path / "w"), "command": stub(), **(front or {})}
    paths = [str(write_job(tmp_path / "more", name, base)) for name in names]
    assert aq("add", *paths, root=root).returncode == 0
    assert aq("run", "--once", "--workers", "2", root=root).returncode == 0


def assert_patched_same(root: Path, patched: bool = True) -> None:
    """``aq status`` (text and JSON) read after a change, then read again, prints what meta says; with
    ``patched`` the view file itself was not written again (only the delta of the added rows)."""
    store = FsStore(root)
    path = views.view_path(store)
    before = path.stat().st_ino
    first = {args: out(root, *args) for args in COMMANDS[:2]}
    again = {args: out(root, *args) for args in COMMANDS[:2]}
    assert (path.stat().st_ino == before) is patched
    if not patched:
        assert not view_delta.delta_path(path).exists(), "a view written again has no delta"
    expected = no_cache(root)
    assert first == again == {args: expected[args] for args in COMMANDS[:2]}
    warm(root)  # the full view again, for the next step


def test_a_read_after_jobs_finished_patches_the_view(queue: Path, tmp_path: Path) -> None:
    warm(queue)
    finish(queue, tmp_path, "zz")  # sorts last in done/ (ids no wider than the others')
    assert_patched_same(queue)
    finish(queue, tmp_path, *(f"n{i}" for i in range(10)))
    assert_patched_same(queue)
    # Out of order: finished jobs whose queue time puts them first, in failed/ and in done/.
    finish(queue, tmp_path, "e1", "e2", front={"verify": "false"})
    finish(queue, tmp_path, "e3")
    store = FsStore(queue)
    for job_id in ("e1", "e3"):
        state = store.locate(job_id)
        assert state in (State.DONE, State.FAILED)
        os.utime(store.path(job_id, state), (1.0, 1.0))
    assert_patched_same(queue)
    # A retry takes a job out of failed/, a cancel puts a waiting one in: both patched.
    assert aq("retry", "bad", root=queue).returncode == 0
    waiting = write_job(tmp_path / "more", "nv", {"engine": "command", "cwd": str(tmp_path / "w"), "command": stub()})
    assert aq("add", str(waiting), root=queue).returncode == 0
    assert aq("cancel", "nv", root=queue).returncode == 0
    assert_patched_same(queue)


def test_a_change_that_moves_a_column_writes_the_whole_view(queue: Path, tmp_path: Path) -> None:
    warm(queue)
    long_id = "a-job-with-a-much-longer-id-than-the-others"
    finish(queue, tmp_path, long_id, front={"verify": "false"})  # the ID column widens
    assert_patched_same(queue, patched=False)
    # The widest row leaves (its file removed by hand) as another job finishes: the column narrows again.
    finish(queue, tmp_path, "sf")
    FsStore(queue).path(long_id, State.FAILED).unlink()
    assert_patched_same(queue, patched=False)


def test_many_changes_are_folded_and_a_torn_delta_is_ignored(queue: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    warm(queue)
    finish(queue, tmp_path, "t1", "t2", "t3")
    store = FsStore(queue)
    finished = [e for state in (State.DONE, State.FAILED) for e in store.scan(state)]
    columns = views.listing_columns(finished)
    key = views.listing_key(finished, columns)
    assert views._patched(store, key, finished, columns) is not None
    monkeypatch.setattr(view_delta, "FOLD_MIN", 2)
    assert views._patched(store, key, finished, columns) is None, "more changes than FOLD allows: folded"
    monkeypatch.undo()
    # The delta file cut short, or written for an older view: ignored and written again.
    out(queue, "status")
    delta = view_delta.delta_path(views.view_path(store))
    delta.write_bytes(delta.read_bytes()[:40])
    assert_patched_same(queue)
    finish(queue, tmp_path, "t4")
    out(queue, "status")
    kept = delta.read_bytes()
    shutil.rmtree(queue / "cache")
    out(queue, "status")  # a new view (a new token): the old delta does not belong to it
    finish(queue, tmp_path, "t5")
    delta.write_bytes(kept)
    assert_patched_same(queue)
    # Many jobs leave at once (their files removed by hand): found by an index of every id.
    finish(queue, tmp_path, *(f"m{i}" for i in range(20)))
    warm(queue)
    for i in range(18):
        store.path(f"m{i}", State.DONE).unlink()
    assert_patched_same(queue)


def test_the_patched_read_loads_no_rows_cache(queue: Path, tmp_path: Path, monkeypatch, capfd) -> None:  # type: ignore[no-untyped-def]
    (queue / "config.yaml").unlink()  # the budgets read today's jobs' meta: left out of this check
    warm(queue)
    finish(queue, tmp_path, "f1")  # journalled by the runner: its row needs no meta either
    expected = no_cache(queue)[("status", "--json")]
    warm(queue)
    finish(queue, tmp_path, "f2")
    expected = None
    store = FsStore(queue)
    monkeypatch.setattr(store, "read_meta", lambda job_id: pytest.fail(f"read the meta of {job_id}"))
    monkeypatch.setattr(records, "_load", lambda path: pytest.fail("loaded the rows cache"))
    monkeypatch.setattr(views, "stdout_takes_bytes", lambda: True)
    capfd.readouterr()
    views.print_status(store, as_json=True)
    got = capfd.readouterr().out.encode()
    monkeypatch.undo()
    expected = no_cache(queue)[("status", "--json")]
    assert got == expected
