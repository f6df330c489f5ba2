"""The cold rebuild (no rows cache): shares computed in forked processes give the same bytes."""

from __future__ import annotations

import marshal
import os
import shutil
from pathlib import Path

import pytest
from test_views import finish, no_cache, out, queue, warm  # noqa: F401 (queue: a fixture)

from aq_core import records, view_build, views
from aq_core.store_fs import FsStore


def _cold_in_process(root: Path, capfd, monkeypatch) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """``aq status --json`` and ``aq insights --json`` run cold in this process (so they may fork)."""
    got = {}
    monkeypatch.setattr(views, "_stdout_takes_bytes", lambda: True)
    for name, run in (
        ("status", lambda store: views.print_status(store, as_json=True)),
        ("insights", views.print_insights_json),
    ):
        shutil.rmtree(root / "cache", ignore_errors=True)
        capfd.readouterr()
        run(FsStore(root))
        got[name] = capfd.readouterr().out.encode()
    return got


def test_a_rebuild_over_forked_processes_prints_what_meta_says(queue: Path, monkeypatch, capfd) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    (queue / "config.yaml").unlink()
    expected = no_cache(queue)
    monkeypatch.setattr(records, "PARALLEL_MIN", 2)  # five finished jobs: two processes
    forks = []
    real_fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real_fork())
    got = _cold_in_process(queue, capfd, monkeypatch)
    assert forks, "the shares were computed in a forked process"
    assert got == {"status": expected[("status", "--json")], "insights": expected[("insights", "--json")]}
    # The rows cache written from the shares is whole: a full read from it prints the same.
    assert len(records._load(records.cache_path(FsStore(queue)))) == 5
    monkeypatch.undo()
    assert warm(queue) == expected


def test_a_share_whose_process_failed_is_computed_by_the_parent(queue: Path, monkeypatch, capfd) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    (queue / "config.yaml").unlink()
    expected = no_cache(queue)
    monkeypatch.setattr(records, "PARALLEL_MIN", 2)
    real = view_build._share_of_meta
    parent = os.getpid()

    def dying(store, entries):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            os._exit(3)  # the child dies before handing its share back
        return real(store, entries)

    monkeypatch.setattr(view_build, "_share_of_meta", dying)
    got = _cold_in_process(queue, capfd, monkeypatch)
    assert got == {"status": expected[("status", "--json")], "insights": expected[("insights", "--json")]}


def test_a_rows_cache_in_shares_torn_or_foreign_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "cache.marshal"
    records.save_frames(path, [marshal.dumps({"a": (1,)}), marshal.dumps({"b": (2,), "a": (3,)})])
    assert records._load(path) == {"a": (3,), "b": (2,)}  # later shares win
    data = path.read_bytes()
    for bad in (data[:-1], data[:5], b"\x05" + data[1:], marshal.dumps({"a": 1})):
        path.write_bytes(bad)
        assert records._load(path) == {}


@pytest.mark.parametrize("args", [("status",), ("insights", "--json")])
def test_a_cold_read_with_a_journal_left_behind(queue: Path, tmp_path: Path, args: tuple[str, ...]) -> None:  # noqa: F811
    warm(queue)
    finish(queue, tmp_path, "j1", "j2")  # journalled by the runner
    store = FsStore(queue)
    records.cache_path(store).unlink()  # the cache and the view lost, the journal kept
    views.view_path(store).unlink()
    assert records.journal_path(store).exists()
    first = out(queue, *args)
    assert not records.journal_path(store).exists(), "folded into the rebuilt cache"
    assert first == no_cache(queue)[args]
