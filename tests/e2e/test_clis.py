"""The real-CLI cache: an unreachable registry is a clear reason (for the skip), said once per process; a killed
install is redone; an install that completed is reused without asking the registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from e2e import clis


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache, and registries on a closed loopback port."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("AQ_REALCLI_CACHE", str(cache))
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setattr(clis, "_FAILED", {})
    return cache


def test_an_unreachable_registry_is_a_reason_said_once(offline: Path) -> None:
    with pytest.raises(clis.Unavailable, match=r"npm install @qwen-code/qwen-code@0\.24\.4 failed: .+"):
        clis.executable("qwen")
    assert not (offline / "npm" / "_qwen-code+qwen-code_0.24.4").exists(), "a failed install leaves nothing"
    # The second test that needs it does not wait for the registry again.
    with pytest.raises(clis.Unavailable, match="failed"):
        clis.executable("qwen")


def test_a_completed_install_is_reused_and_a_killed_one_redone(offline: Path) -> None:
    root = offline / "npm" / "_google+gemini-cli_0.61.0"
    exe = root / "node_modules" / ".bin" / "gemini"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    # No completion mark: a half install (a killed process) is redone, here against the closed registry.
    with pytest.raises(clis.Unavailable):
        clis.executable("gemini")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    (root / ".complete").write_text("@google/gemini-cli@0.61.0\n")
    clis._FAILED.clear()
    assert clis.executable("gemini") == exe


def test_the_installer_script_reports_and_never_fails(offline: Path) -> None:
    script = Path(clis.__file__)
    proc = subprocess.run(
        [sys.executable, str(script), "--quiet", "codex"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    assert "real CLI codex: not installed (npm install @openai/codex@0.171.0 failed" in proc.stderr
    assert "end-to-end tests will be skipped" in proc.stderr
