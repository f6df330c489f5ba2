"""Reading a file's bytes (``filebytes.read_bytes``): any size, links followed or not, which errors
read as empty, and the readers that use it (a checkpoint's refs, recovery's start evidence)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aq_core.filebytes import read_bytes


def test_read_bytes_reads_files_of_any_size(tmp_path: Path) -> None:
    for size in (0, 1, 65535, 65536, 65537, 300_001):
        path = tmp_path / f"f{size}"
        data = bytes(i % 251 for i in range(size))
        path.write_bytes(data)
        assert read_bytes(str(path)) == data
        assert read_bytes(path, follow=False, empty_on=OSError) == data
    with pytest.raises(FileNotFoundError):
        read_bytes(str(tmp_path / "missing"))


def test_only_the_named_errors_read_as_empty(tmp_path: Path) -> None:
    missing = (FileNotFoundError, NotADirectoryError)
    (tmp_path / "file").write_bytes(b"x")
    assert read_bytes(tmp_path / "missing", empty_on=missing) == b""
    assert read_bytes(tmp_path / "file" / "below", empty_on=missing) == b""  # a file where a folder would be
    with pytest.raises(IsADirectoryError):  # opens, then fails at its read: not a missing file
        read_bytes(tmp_path, empty_on=missing)
    assert read_bytes(tmp_path, empty_on=OSError) == b""


def test_a_link_is_followed_unless_told_not_to(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"not for aq")
    link = tmp_path / "link"
    os.symlink(target, link)
    assert read_bytes(link) == b"not for aq"
    with pytest.raises(OSError):
        read_bytes(link, follow=False)
    assert read_bytes(link, follow=False, empty_on=OSError) == b""


def test_recovery_reads_no_start_evidence_through_a_planted_link(tmp_path: Path) -> None:
    from aq_core.store_fs import FsStore
    from aq_core.supervise import started, started_marker

    store = FsStore(tmp_path / "q")
    outside = tmp_path / "outside"
    outside.write_text("aq: attempt 1: agent started, pid 4242\n")
    marker = started_marker(store, "j")
    marker.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, marker)
    assert started(store, "j", 1)[1] == []
    os.unlink(marker)
    marker.write_text("aq: attempt 1: agent started, pid 4242\naq: attempt 2: agent started, pid 77\n")
    assert started(store, "j", 2)[1] == [77]


def test_a_checkpoint_reads_refs_and_a_missing_one_as_none(tmp_path: Path) -> None:
    from aq_core import git_switch

    common = str(tmp_path) + "/"
    (tmp_path / "refs" / "heads").mkdir(parents=True)
    oid = "a" * 40
    (tmp_path / "refs" / "heads" / "loose").write_text(oid + "\n")
    packed = f"# pack-refs\n{'b' * 40} refs/heads/packed\n".encode()
    assert git_switch._value(common, "refs/heads/loose", packed) == oid
    assert git_switch._value(common, "refs/heads/packed", packed) == "b" * 40
    assert git_switch._value(common, "refs/heads/none", packed) is None
    assert git_switch._value(common, "refs/heads/loose/below", packed) is None  # under a file: missing
