"""The store contract (run against every store) and the filesystem store's own guarantees."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
from pathlib import Path

import pytest

from aq_core.errors import AqError, UsageError
from aq_core.job import MAX_JOB_BYTES, decode_job_bytes
from aq_core.meta import Meta, encode_lines
from aq_core.store import Coordination, EngineRecords, LocalFiles, State, Store, host_id, host_lock, local_runners
from aq_core.store_fs import FsStore


class StoreContract:
    """Behaviour every store must have; a subclass provides the ``store`` fixture."""

    def test_add_then_list_oldest_first(self, store) -> None:
        store.add("a", b"A", {"added": 1})
        store.add("b", b"B", {"added": 2})
        assert [e.id for e in store.list(State.INBOX)] == ["a", "b"]
        assert store.locate("a") is State.INBOX
        assert store.read_job("a", State.INBOX) == b"A"

    def test_add_refuses_an_existing_id(self, store) -> None:
        store.add("a", b"A", {"added": 1})
        with pytest.raises(UsageError):
            store.add("a", b"other", {"added": 2})
        assert store.read_job("a", State.INBOX) == b"A"

    def test_claim_once(self, store) -> None:
        store.add("a", b"A", {})
        assert store.claim("a") is True
        assert store.claim("a") is False
        assert store.locate("a") is State.BUILDING

    def test_move_checks_the_source(self, store) -> None:
        store.add("a", b"A", {})
        assert store.move("a", State.BUILDING, State.DONE) is False
        assert store.move("a", State.INBOX, State.FAILED) is True
        assert store.locate("a") is State.FAILED

    def test_meta_last_value_wins_and_runs_split(self, store) -> None:
        store.add("a", b"A", {"engine": "x"})
        store.append_meta("a", {"attempt": 1, "result": "crash"})
        store.append_meta("a", {"attempt": 2, "result": "ok", "note": "two\nlines \\ here"})
        meta = store.read_meta("a")
        assert meta.get("result") == "ok"
        assert meta.get("note") == "two\nlines \\ here"
        assert [r["result"] for r in meta.runs()] == ["crash", "ok"]

    def test_engine_records_and_change_tokens(self, store) -> None:
        token = store.coord.inbox_token()
        store.add("a", b"A", {})
        assert store.coord.inbox_token() != token
        version = store.coord.meta_version("a")
        store.append_meta("a", {"k": "v"})
        assert store.coord.meta_version("a") != version
        assert store.coord.job_version("a", State.INBOX) is not None
        assert store.coord.job_version("a", State.DONE) is None
        assert store.engines.names() == []
        store.engines.append("claude", {"paused": 1, "pause_until": 2})
        store.engines.append("claude", {"resumed": 3})
        assert store.engines.names() == ["claude"]
        assert store.engines.read("claude").pairs == [("paused", "1"), ("pause_until", "2"), ("resumed", "3")]
        assert store.engines.read("codex").pairs == []

    def test_a_job_over_the_size_limit_is_read_only_up_to_it(self, store) -> None:
        store.add("big", b"x" * (MAX_JOB_BYTES + 4096), {})
        data = store.read_job("big", State.INBOX)
        assert len(data) == MAX_JOB_BYTES + 1, "enough to see it is too large, no more"
        with pytest.raises(ValueError, match="too large"):
            decode_job_bytes(data)

    def test_runners_are_registered_in_this_hosts_files(self, store) -> None:
        store.coord.register_runner(4242, 12.5)
        assert (store.files.root / "runners" / "4242").exists()
        [info] = list(local_runners(store.files.root))
        assert (info.integer("pid"), info.get("host")) == (4242, host_id())
        store.coord.unregister_runner(4242)
        assert list(local_runners(store.files.root)) == []

    def test_live_runners_are_the_registered_ones_still_running(self, store) -> None:
        from aq_core.procs import start_time

        assert store.coord.live_runners() == []
        runner = subprocess.Popen(["sleep", "60"])
        try:
            store.coord.register_runner(runner.pid, start_time(runner.pid) or 0.0)
            assert store.coord.live_runners() == [f"{host_id()} pid {runner.pid}"]
        finally:
            runner.kill()
            runner.wait()
        assert store.coord.live_runners() == [], "a runner killed on this host is dead at once"

    def test_a_host_lock_holds_on_its_host_only(self, store, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AQ_HOST_ID", "host-a")
        here = host_lock("git:/home/me/repo")
        held = store.coord.try_lock(here)
        assert held is not None and store.coord.try_lock(host_lock("git:/home/me/repo")) is None
        monkeypatch.setenv("AQ_HOST_ID", "host-b")
        there = store.coord.try_lock(host_lock("git:/home/me/repo"))
        assert there is not None, "the same path on another host is another tree"
        held.release()
        there.release()

    def test_try_lock_is_exclusive(self, store) -> None:
        held = store.coord.try_lock("repo")
        assert held is not None
        assert store.coord.try_lock("repo") is None
        held.release()
        again = store.coord.try_lock("repo")
        assert again is not None
        again.release()


class TestFsStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> FsStore:
        return FsStore(tmp_path / "q")

    def test_private_modes_even_with_a_permissive_umask(self, tmp_path: Path) -> None:
        old = os.umask(0)
        try:
            store = FsStore(tmp_path / "open")
            store.add("a", b"A", {"k": "v"})
        finally:
            os.umask(old)
        assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700
        for path in store.root.rglob("*"):
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode in (0o700, 0o600), f"{path} has mode {oct(mode)}"

    def test_a_jobs_lock_is_its_meta_file_and_creates_no_file(self, tmp_path: Path) -> None:
        store = FsStore(tmp_path / "q")
        store.add("a", b"A", {"added": 1})
        before = store.meta_path("a").read_bytes()
        held = store.coord.try_lock("job:a")
        assert held is not None
        assert store.coord.try_lock("job:a") is None
        with multiprocessing.get_context("spawn").Pool(1) as pool:  # another process: still held
            assert pool.apply(_lock_taken, (str(store.root), "job:a")) is False
        assert store.coord.try_lock("job:b") is not None, "another job's lock is another file"
        held.release()
        again = store.coord.try_lock("job:a")
        assert again is not None
        again.release()
        assert list((store.root / "locks").iterdir()) == [], "no lock file made for a job"
        assert store.meta_path("a").read_bytes() == before, "taking the lock writes nothing to meta"

    def test_a_jobs_lock_with_a_symlinked_meta_writes_nothing_through_it(self, tmp_path: Path) -> None:
        store = FsStore(tmp_path / "q")
        outside = tmp_path / "outside"
        outside.write_bytes(b"precious\n")
        os.symlink(outside, store.meta_path("x"))
        held = store.coord.try_lock("job:x")
        assert held is not None and store.coord.try_lock("job:x") is None
        held.release()
        assert outside.read_bytes() == b"precious\n" and os.path.islink(store.meta_path("x"))

    def test_torn_and_garbage_meta_lines_are_tolerated(self, tmp_path: Path) -> None:
        store = FsStore(tmp_path / "q")
        store.add("a", b"A", {"attempts": 1})
        with open(store.meta_path("a"), "ab") as fh:
            fh.write(b"\x00\xffgarbage line\n=novalue\nresult=ok\nattempts=9")  # torn last line
        meta = store.read_meta("a")
        assert meta.get("result") == "ok"
        assert meta.get("attempts") == "1"

    def test_meta_is_only_appended(self, tmp_path: Path) -> None:
        store = FsStore(tmp_path / "q")
        store.add("a", b"A", {"x": 1})
        before = store.meta_path("a").read_bytes()
        store.append_meta("a", {"x": 2})
        assert store.meta_path("a").read_bytes().startswith(before)

    def test_a_planted_symlink_cannot_make_aq_write_outside(self, tmp_path: Path) -> None:
        store = FsStore(tmp_path / "q")
        outside = tmp_path / "outside.txt"
        outside.write_text("precious\n")
        os.symlink(outside, store.meta_path("evil"))
        with pytest.raises(OSError):
            store.append_meta("evil", {"x": 1})
        assert outside.read_text() == "precious\n"
        os.symlink(outside, store.root / "logs" / "evil.1.log")
        with pytest.raises(OSError):
            store.files.open_log(store.files.log_path("evil", 1))
        assert outside.read_text() == "precious\n"

    def test_a_symlinked_state_folder_is_refused(self, tmp_path: Path) -> None:
        root = tmp_path / "q"
        FsStore(root)
        (root / "done").rmdir()
        (tmp_path / "elsewhere").mkdir()
        os.symlink(tmp_path / "elsewhere", root / "done")
        with pytest.raises(AqError):
            FsStore(root)

    def test_move_never_overwrites(self, tmp_path: Path) -> None:
        store = FsStore(tmp_path / "q")
        store.add("a", b"A", {})
        (store.root / "done" / "a.md").write_bytes(b"other")
        with pytest.raises(AqError):
            store.move("a", State.INBOX, State.DONE)
        assert store.read_job("a", State.INBOX) == b"A"


def _claimer(root: str, ids: list[str], queue: multiprocessing.Queue, start: multiprocessing.Event) -> None:
    store = FsStore(Path(root))
    start.wait()
    queue.put([job_id for job_id in ids if store.claim(job_id)])


def test_racing_claims_have_exactly_one_winner(tmp_path: Path) -> None:
    store = FsStore(tmp_path / "q")
    ids = [f"j{i:03d}" for i in range(200)]
    for job_id in ids:
        store.add(job_id, b"x", {})
    ctx = multiprocessing.get_context("spawn")
    queue, start = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_claimer, args=(str(store.root), ids, queue, start)) for _ in range(6)]
    for p in procs:
        p.start()
    start.set()
    won = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    claimed = [job_id for batch in won for job_id in batch]
    assert sorted(claimed) == ids, "each job claimed by exactly one process"


def test_each_part_of_the_store_interface_is_small() -> None:
    """The store is four composed parts (SPEC §12's verbs, coordination, engine records, local files)."""
    for part in (Store, Coordination, EngineRecords, LocalFiles):
        methods = [n for n, v in vars(part).items() if callable(v) and not n.startswith("_")]
        assert len(methods) <= 13, f"{part.__name__}: {methods}"
    shared = set(vars(Store)) & (set(vars(Coordination)) | set(vars(EngineRecords)) | set(vars(LocalFiles)))
    assert not {n for n in shared if not n.startswith("_")}, "no method lives in two parts"


def test_meta_encoding_round_trips() -> None:
    values = {"a": "plain", "b": "new\nline", "c": "back\\slash\\n", "d": "cr\rhere", "e": "ünïcødé = x"}
    meta = Meta.from_bytes(encode_lines(values))
    assert meta.last == values
    with pytest.raises(ValueError):
        encode_lines({"Bad Key": 1})


def _lock_taken(root: str, name: str) -> bool:
    lock = FsStore(root).coord.try_lock(name)
    if lock is None:
        return False
    lock.release()
    return True


def test_engine_records_read_ahead_list_engines_once_for_the_thread_that_asked(tmp_path: Path) -> None:
    import threading

    store = FsStore(tmp_path / "q")
    store.engines.append("claude", {"paused_until": 1})
    with store.engines.prefetched():
        store.engines.append("codex", {"paused_until": 2})  # another runner's first record, meanwhile
        assert store.engines.names() == ["claude"], "the pick's three questions see one listing"
        assert store.engines.read("codex").get("paused_until") == "2", "records themselves are read as ever"
        seen: list[list[str]] = []
        other = threading.Thread(target=lambda: seen.append(store.engines.names()))
        other.start()
        other.join()
        assert seen == [["claude", "codex"]], "a worker thread lists engines/ itself"
    assert store.engines.names() == ["claude", "codex"], "the next pick sees the new engine"
