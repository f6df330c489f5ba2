"""The plugin index: ``aq add`` checks engine names without importing plugins, and sees a plugin
installed, removed or edited at once (a distribution in a scratch site folder on ``PYTHONPATH``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from helpers import aq, state_of, write_job

EXAMPLE = Path(__file__).resolve().parent / "example_plugin" / "aq_echo"


def _site(tmp_path: Path) -> tuple[Path, Path]:
    """A site folder holding the example plugin's package; it reports each import in ``marker``."""
    site, marker = tmp_path / "site", tmp_path / "imported"
    shutil.copytree(EXAMPLE, site / "aq_echo")
    init = site / "aq_echo" / "__init__.py"
    init.write_text(init.read_text() + f"\nwith open({str(marker)!r}, 'a') as _fh:\n    _fh.write('x')\n")
    return site, marker


def _install(site: Path) -> Path:
    info = site / "aq_echo-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aq-echo\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text("[aq]\necho = aq_echo\n")
    return info


def _add(tmp_path: Path, root: Path, site: Path, job_id: str, engine: str):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    path = write_job(tmp_path / "jobs", job_id, {"engine": engine, "cwd": str(work)})
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return aq("add", str(path), root=root, env=env)


def _imports(marker: Path) -> int:
    return len(marker.read_text()) if marker.exists() else 0


def test_the_index_follows_install_edit_and_removal_of_a_plugin(tmp_path: Path) -> None:
    root = tmp_path / "q"
    site, marker = _site(tmp_path)

    refused = _add(tmp_path, root, site, "before", "echo")
    assert refused.returncode == 2
    assert "engine: 'echo' is not installed" in refused.stderr
    assert list((root / "cache").glob("plugins-*.marshal"))  # the index of what is installed now

    info = _install(site)
    added = _add(tmp_path, root, site, "installed", "echo")
    assert added.returncode == 0, added.stderr
    assert state_of(root, "installed") == "inbox"
    assert _imports(marker) == 1  # the index was stale: the plugins were loaded, the index rewritten

    again = _add(tmp_path, root, site, "indexed", "echo")
    assert again.returncode == 0, again.stderr
    assert _imports(marker) == 1  # checked from the index: no plugin was imported
    assert "claude" in _add(tmp_path, root, site, "bad", "echoo").stderr  # the listing names every engine

    init = site / "aq_echo" / "__init__.py"
    init.write_text(init.read_text().replace('NAME = "echo"', 'NAME = "echo2"'))
    renamed = _add(tmp_path, root, site, "edited", "echo2")
    assert renamed.returncode == 0, renamed.stderr
    gone = _add(tmp_path, root, site, "old-name", "echo")
    assert gone.returncode == 2
    assert "engine: 'echo' is not installed" in gone.stderr

    shutil.rmtree(info)
    removed = _add(tmp_path, root, site, "removed", "echo2")
    assert removed.returncode == 2
    assert "engine: 'echo2' is not installed" in removed.stderr
    assert state_of(root, "removed") is None


def test_a_broken_index_is_rebuilt(tmp_path: Path) -> None:
    root = tmp_path / "q"
    site, _ = _site(tmp_path)
    assert _add(tmp_path, root, site, "first", "command").returncode == 2  # command: needs command:
    (index,) = (root / "cache").glob("plugins-*.marshal")
    index.write_bytes(b"not marshal")
    refused = _add(tmp_path, root, site, "second", "nope")
    assert refused.returncode == 2
    assert "engine: 'nope' is not installed (installed: " in refused.stderr
    assert "command" in refused.stderr
    assert index.read_bytes() != b"not marshal"


def test_aq_add_with_a_warm_index_imports_no_plugin_pluggy_or_yaml(tmp_path: Path) -> None:
    import subprocess
    import sys

    root, work = tmp_path / "q", tmp_path / "work"
    work.mkdir()
    probe = (
        "import sys; from aq_core.cli import main; code = main(['--root', sys.argv[1], 'add', sys.argv[2]]); "
        "print(code, sorted(m for m in ('pluggy', 'yaml', 'aq_claude', 'importlib.metadata') if m in sys.modules))"
    )
    outputs = []
    for n in range(2):
        job = tmp_path / f"light-{n}.md"
        job.write_text(f"---\nengine: command\ncommand: [/bin/true]\ncwd: {work}\ntimeout: 30m\n---\nDo it.\n")
        run = subprocess.run([sys.executable, "-c", probe, str(root), str(job)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout.splitlines()[-1])
    assert outputs[0].startswith("0 [") and "pluggy" in outputs[0]  # no index yet: the plugins were loaded
    assert outputs[1] == "0 []"
    assert state_of(root, "light-1") == "inbox"
