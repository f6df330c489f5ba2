"""The finished jobs' view prints exactly what building every row prints: warm, cold, and with no cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import aq, stub, write_job

from aq_core import records, views
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
    monkeypatch.setattr(views, "_stdout_takes_bytes", lambda: True)  # capfd's stream is UTF-8 too
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
