"""The cold rebuild (no rows cache): shares computed in forked processes give the same bytes."""

from __future__ import annotations

import marshal
import os
import shutil
from pathlib import Path

import pytest
from test_views import finish, no_cache, out, queue, warm  # noqa: F401 (queue: a fixture)

from aq_core import records, view_build, view_fork, views
from aq_core.store_fs import FsStore


def _reads(root: Path, capfd, table: bool = False) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """``aq status --json``, ``aq insights --json`` (and ``aq status``) run in this process, each with
    no cache (so they may fork)."""
    got = {}
    runs = [
        ("status", lambda store: views.print_status(store, as_json=True)),
        ("insights", views.print_insights_json),
        ("table", lambda store: views.print_status(store, as_json=False)),
    ]
    for name, run in runs if table else runs[:2]:
        shutil.rmtree(root / "cache", ignore_errors=True)
        capfd.readouterr()
        run(FsStore(root))
        got[name] = capfd.readouterr().out.encode()
    return got


def _cold_in_process(root: Path, capfd, monkeypatch, table: bool = False) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """The reads of ``_reads`` from the view (the rebuild writes it)."""
    monkeypatch.setattr(views, "stdout_takes_bytes", lambda: True)
    return _reads(root, capfd, table)


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

    def dying(store, entries, agree=None):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            os._exit(3)  # the child dies before handing its share back
        return real(store, entries, agree)

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


def _finished_queue(root: Path, jobs: list[tuple[str, str, str, str, float]]) -> None:
    """A queue of finished jobs written straight to disk: ``(id, state, engine, result, finished)`` each."""
    for name in ("inbox", "building", "done", "failed", "meta", "logs", "tmp", "locks", "runners", "engines"):
        (root / name).mkdir(parents=True, exist_ok=True, mode=0o700)
    for i, (job_id, state, engine, result, done_at) in enumerate(jobs):
        meta = (
            f"added={1_790_000_000 + 60 * i}.000\nengine={engine}\nattempt=1\nattempts=1\nengine={engine}\n"
            f"exit=0\nduration_s={10 + i}.5\ntokens_in={1000 * i}\ntokens_out={7 * i}\ncost_usd=0.{i + 1:04d}\n"
            f"lines_added={i}\nlines_deleted=1\nfinished={done_at:.3f}\nresult={result}\ndecision={state}\n"
        )
        (root / "meta" / f"{job_id}.meta").write_text(meta)
        (root / state / f"{job_id}.md").write_text(f"---\nengine: {engine}\n---\nwork\n")
        os.utime(root / state / f"{job_id}.md", (1_790_000_000 + 60 * i, 1_790_000_000 + 60 * i))


def _reference(root: Path, capfd, monkeypatch) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """What the commands print with no view at all: every row built and rendered."""
    with monkeypatch.context() as patch:
        patch.setattr(views, "stdout_takes_bytes", lambda: False)
        patch.setattr(views, "save", lambda *args: None)
        got = _reads(root, capfd, table=True)
    shutil.rmtree(root / "cache", ignore_errors=True)
    return got


# The first share (failed jobs come first in status order) has the widest RESULT column, the last the
# widest ENGINE; finish times out of queue order, so the newest-first order interleaves the shares.
WIDE = [
    (
        f"j{i:02d}",
        "failed" if i < 3 else "done",
        "long-engine-name" if i == 11 else "cmd",
        "verify-failed" if i < 3 else "ok",
        1_800_000_000 + (i * 7919) % 13 * 100,
    )
    for i in range(12)
]


@pytest.mark.parametrize("dies", [False, True])
def test_shares_of_other_widths_agree_on_the_table(tmp_path: Path, monkeypatch, capfd, dies: bool) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "q"
    _finished_queue(root, WIDE)
    expected = _reference(root, capfd, monkeypatch)
    assert b"long-engine-name" in expected["table"] and b"verify-failed" in expected["table"]
    monkeypatch.setattr(records, "PARALLEL_MIN", 2)
    monkeypatch.setattr(records, "_fork_parts", lambda store, rows: 3)  # three shares, whatever the CPUs
    heard = []
    real_agree = view_fork.agree_with

    def agree_with(children):  # type: ignore[no-untyped-def]
        agree = real_agree(children)
        return lambda mine: heard.append(agree(mine)) or heard[-1]

    monkeypatch.setattr(view_fork, "agree_with", agree_with)
    if dies:  # a child that dies after the widths were agreed: its share is computed again by the parent
        real_finish, parent = view_build.finish_share, os.getpid()

        def finish_then_die(*args, **kwargs):  # type: ignore[no-untyped-def]
            share = real_finish(*args, **kwargs)
            if os.getpid() != parent:
                os._exit(3)
            return share

        monkeypatch.setattr(view_build, "finish_share", finish_then_die)
    got = _cold_in_process(root, capfd, monkeypatch, table=True)
    assert got == expected
    assert heard and heard[0][2] == len("long-engine-name") and heard[0][4] == len("verify-failed")
    # The rows cache copied from the shares' frames holds every row, as one process computes them.
    forked = records._load(records.cache_path(FsStore(root)))
    monkeypatch.setattr(records, "_fork_parts", lambda store, rows: 1)
    shutil.rmtree(root / "cache")
    _cold_in_process(root, capfd, monkeypatch, table=True)
    assert forked == records._load(records.cache_path(FsStore(root))) and len(forked) == len(WIDE)


def test_a_share_laid_out_at_other_widths_is_laid_out_again(tmp_path: Path) -> None:
    """Shares that never agreed (a child gone before it told its widths) still make the table's lines."""
    rows = [
        (["j1", "done", "cmd", "1", "ok", "", ""], "1s"),
        (["j2", "failed", "long-engine", "2", "crash", "", ""], ""),
    ]
    shares = [
        view_build.finish_share(["\0".join([*cells, sub])], [b"{}"], [(cells[0], cells[1], 1.0)], {})
        for cells, sub in rows
    ]
    widths, counts, pieces, starts = view_build._table(shares)
    assert widths == [2, 6, 11, 8, 6, 4, 4] and counts == [2, 1, 1, 0, 0, 0, 0]
    from aq_core.status import body_lines

    assert b"".join(pieces).decode() == "\n".join(body_lines(rows, widths))


def test_a_share_handed_back_whole_or_not_at_all(tmp_path: Path) -> None:
    """A child's share goes through its file (big parts as they are, the rest marshalled) unchanged;
    a file cut short or torn anywhere gives no share, so the parent computes it again."""
    cells = [
        "\0".join(["j1", "done", "cmd", "1", "ok", "", "", "1s"]),
        "\0".join(["j2", "failed", "cmd", "2", "", "", "", ""]),
    ]
    texts = [b'{"id": "j1"}', b'{"id": "j2"}']
    share = view_build.finish_share(cells, texts, [("j1", "done", 2.0), ("j2", "failed", 1.0)], {}, b"frame")
    expected = {name: bytes(value) if isinstance(value, bytes) else value for name, value in share.items()}
    expected.pop("cache")
    expected["frame"] = (5).to_bytes(8, "little") + b"frame"  # the rows cache's frame, led by its length
    path = tmp_path / "share"
    with open(path, "wb") as out:
        view_fork.write_share(out, dict(share))
    data = path.read_bytes()
    assert data[:13] == (5).to_bytes(8, "little") + b"frame"
    with open(path, "rb") as fh:
        got = view_fork.shared(fh.fileno(), 2)
        assert got is not None
        assert {
            name: bytes(value) if isinstance(value, memoryview) else value for name, value in got.items()
        } == expected
        assert view_fork.shared(fh.fileno(), 3) is None  # another count of rows
    torn = (6).to_bytes(8, "little") + data[8:]  # the frame's length says more than it holds
    for bad in (data[:-1], data[:-9], data[:7], b"", data[: len(data) // 2], data[:-8] + b"\xff" * 8, torn):
        path.write_bytes(bad)
        with open(path, "rb") as fh:
            assert view_fork.shared(fh.fileno(), 2) is None


def test_a_childs_share_is_kept_in_memory_not_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file a forked process hands its share back in is a memory file where Linux has them (writing
    150 MB to a disk's file system costs the child several times the CPU); elsewhere a temporary file."""
    with view_fork._scratch() as out:
        out.write(b"share")
        out.flush()
        assert os.pread(out.fileno(), 5, 0) == b"share"
        if hasattr(os, "memfd_create"):
            assert os.readlink(f"/proc/self/fd/{out.fileno()}").startswith("/memfd:aq-share")
    monkeypatch.delattr(os, "memfd_create", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with view_fork._scratch() as out:
        out.write(b"share")
        out.flush()
        assert os.pread(out.fileno(), 5, 0) == b"share"
        assert os.readlink(f"/proc/self/fd/{out.fileno()}").startswith(str(tmp_path))


def test_the_view_is_written_from_many_pieces_in_order(tmp_path: Path) -> None:
    """More pieces than one ``writev`` takes, bytes and views of other buffers, empty ones among them."""
    pieces = [str(i).encode() if i % 3 else memoryview(b"<%d>" % i)[1:-1] for i in range(3000)] + [b""]
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        views._write_all(fd, pieces)
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == b"".join(pieces)
