"""The checkpoint hook's context: every implementation is told its own settings from config.yaml."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aq_core import hookimpl, plugins
from aq_core.checkpoint import CheckpointContext


class OtherVcs:
    """A checkpoint plugin for another VCS: answers only for its own work trees."""

    def __init__(self, mine: Path) -> None:
        self.mine, self.seen = mine, []

    @hookimpl
    def checkpoint(self, stage: str, ctx: CheckpointContext) -> dict[str, str] | None:
        self.seen.append((stage, dict(ctx.settings)))
        if ctx.workdir != self.mine:
            return None
        return {"othervcs_commit": f"{ctx.job_id}:{ctx.result}:{ctx.settings.get('branch_prefix', '-')}"}


@pytest.fixture
def other(tmp_path: Path) -> Iterator[OtherVcs]:
    plugin = OtherVcs(tmp_path / "mine")
    pm = plugins.plugin_manager()
    pm.register(plugin, name="othervcs")
    try:
        yield plugin
    finally:
        pm.unregister(plugin)


def ctx(workdir: Path, result: str | None = "ok") -> CheckpointContext:
    return CheckpointContext(
        job_id="j1", workdir=workdir, result=result, meta={}, isolation="inplace", protected=("main",), log=print
    )


def test_each_plugin_gets_its_own_settings(other: OtherVcs, tmp_path: Path) -> None:
    settings = {"othervcs": {"branch_prefix": "wip/"}, "git": {"unused": True}}
    answer = plugins.checkpoint("commit", ctx(tmp_path / "mine"), settings=settings)
    assert answer == {"othervcs_commit": "j1:ok:wip/"}
    assert other.seen == [("commit", {"branch_prefix": "wip/"})]


def test_no_settings_is_an_empty_mapping_and_others_answer_after(other: OtherVcs, tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    assert plugins.checkpoint("commit", ctx(elsewhere)) == {}  # nobody's work tree: the git plugin passes too
    assert other.seen == [("commit", {})]
