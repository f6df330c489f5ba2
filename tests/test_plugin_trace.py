"""Plugins as the user sees them: failures as one line naming the plugin, AQ_TRACE_PLUGINS, settings, aq plugins."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import aq, meta, state_of, write_job

from aq_core import plugins
from aq_core.engine import Outcome
from aq_core.hookspecs import hookimpl
from aq_core.usage import Usage

# A third-party plugin, installed the way pip leaves one: a module and a dist-info with its entry point.
PROBE = """
import json, os
from pathlib import Path

from aq_core.engine import Engine, Failure, LaunchSpec
from aq_core.hookspecs import hookimpl
from aq_core.usage import Usage


def _record(settings, hook):
    record = settings.get("record")
    if record:
        with open(record, "a") as fh:
            fh.write(json.dumps({"hook": hook, "settings": dict(settings)}) + "\\n")


@hookimpl
def register_engines():
    if os.environ.get("PROBE_BREAK") == "register_engines":
        raise RuntimeError("no engines today")
    return [Engine(name="probe", binary=None), Engine(name="crashy", binary=None)]


@hookimpl
def launch(engine, ctx):
    if engine == "crashy":
        raise ValueError("launch went wrong\\nsecond line never shown")
    if engine != "probe":
        return None
    _record(ctx.settings, "launch")
    return LaunchSpec(argv=["true"])


@hookimpl
def parse_usage(engine, log_path, settings):
    if engine != "probe":
        return None
    _record(settings, "parse_usage")
    return Usage(tokens_in=7)


@hookimpl
def classify_failure(engine, outcome, settings):
    if engine != "probe":
        return None
    _record(settings, "classify_failure")
    return Failure("ok")
"""


@pytest.fixture
def probe_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "aq_probe.py").write_text(PROBE)
    info = site / "aq_probe-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aq-probe\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[aq]\nprobe = aq_probe\n")
    (info / "RECORD").write_text("")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def _run(tmp_path: Path, env: dict[str, str], *jobs: tuple[str, str]) -> Path:
    root = tmp_path / "queue"
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    for job_id, engine in jobs:
        path = write_job(tmp_path / "jobs", job_id, {"engine": engine, "cwd": str(work)})
        added = aq("add", str(path), root=root, env=env)
        assert added.returncode == 0, added.stderr
    return root


def test_settings_reach_every_engine_hook(tmp_path: Path, probe_env: dict[str, str]) -> None:
    root = _run(tmp_path, probe_env, ("p1", "probe"))
    record = tmp_path / "record.jsonl"
    (root / "config.yaml").write_text(f"plugins:\n  probe:\n    record: {record}\n    flags: [--fast]\n")
    result = aq("run", "--once", root=root, env=probe_env)
    assert result.returncode == 0, result.stderr
    assert state_of(root, "p1") == "done"
    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert [s["hook"] for s in seen] == ["launch", "classify_failure", "parse_usage"]
    assert all(s["settings"] == {"record": str(record), "flags": ["--fast"]} for s in seen)
    assert meta(root, "p1")["tokens_in"] == "7"


def test_settings_under_the_distribution_name(tmp_path: Path, probe_env: dict[str, str]) -> None:
    root = _run(tmp_path, probe_env, ("p1", "probe"))
    record = tmp_path / "record.jsonl"
    (root / "config.yaml").write_text(f"plugins:\n  aq-probe: {{record: {record}}}\n")
    assert aq("run", "--once", root=root, env=probe_env).returncode == 0
    assert len(record.read_text().splitlines()) == 3


def test_a_launch_that_raises_is_a_crash_named_after_the_plugin(tmp_path: Path, probe_env: dict[str, str]) -> None:
    root = _run(tmp_path, probe_env, ("c1", "crashy"))
    result = aq("run", "--once", root=root, env=probe_env)
    assert result.returncode == 0
    assert state_of(root, "c1") == "failed"
    assert meta(root, "c1")["result"] == "crash"
    lines = [line for line in result.stderr.splitlines() if "launch failed" in line]
    assert lines == ["aq: plugin aq-probe (probe): launch failed: ValueError: launch went wrong"]
    assert "Traceback" not in result.stderr + result.stdout and "second line" not in result.stderr


def test_trace_reports_each_hook_call(tmp_path: Path, probe_env: dict[str, str]) -> None:
    root = _run(tmp_path, probe_env, ("p1", "probe"))
    quiet = aq("run", "--once", root=root, env=probe_env)
    assert "trace:" not in quiet.stderr
    _run(tmp_path, probe_env, ("p2", "probe"))
    traced = aq("run", "--once", root=root, env={**probe_env, "AQ_TRACE_PLUGINS": "1"})
    assert traced.returncode == 0 and state_of(root, "p2") == "done"
    trace = [line for line in traced.stderr.splitlines() if line.startswith("aq: trace: ")]
    hooks = {line.split()[2] for line in trace}
    assert {"register_engines", "launch", "parse_usage", "classify_failure", "checkpoint", "work_lock"} <= hooks
    assert any(
        line.startswith("aq: trace: launch aq-probe (probe) ") and line.endswith(" ms: answered") for line in trace
    )
    assert any(line.startswith("aq: trace: parse_usage aq-probe (probe) ") for line in trace)
    # firstresult: once probe answered, no plugin after it (the built-in command engine) is asked.
    assert not any(line.startswith("aq: trace: launch aq-core (command) ") for line in trace)


def test_a_broken_engine_list_is_one_line_and_the_rest_still_works(tmp_path: Path, probe_env: dict[str, str]) -> None:
    env = {**probe_env, "PROBE_BREAK": "register_engines"}
    result = aq("engines", "--json", root=tmp_path / "queue", env=env)
    assert result.returncode == 0, result.stderr
    names = {row["name"] for row in json.loads(result.stdout)["engines"]}
    assert "command" in names and "probe" not in names
    assert result.stderr.count("register_engines failed") == 1
    assert "aq: plugin aq-probe (probe): register_engines failed: RuntimeError: no engines today" in result.stderr
    assert "Traceback" not in result.stderr


def test_aq_plugins_lists_built_ins_and_installed_plugins(tmp_path: Path, probe_env: dict[str, str]) -> None:
    result = aq("plugins", "--json", root=tmp_path / "queue", env=probe_env)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["plugins"]}
    assert rows["git"] == {
        "name": "git",
        "distribution": "aq-core",
        "version": rows["git"]["version"],
        "builtin": True,
        "hooks": ["checkpoint", "work_lock"],
        "engines": [],
    }
    assert rows["notify"]["builtin"] and rows["notify"]["hooks"] == ["notify"]
    assert rows["command"]["engines"] == ["command"]
    assert rows["probe"] == {
        "name": "probe",
        "distribution": "aq-probe",
        "version": "1.2.3",
        "builtin": False,
        "hooks": ["classify_failure", "launch", "parse_usage", "register_engines"],
        "engines": ["crashy", "probe"],
    }
    text = aq("plugins", root=tmp_path / "queue", env=probe_env).stdout
    lines = text.splitlines()
    assert lines[0].split() == ["PLUGIN", "DISTRIBUTION", "VERSION", "BUILT-IN", "HOOKS", "ENGINES"]
    probe = next(line for line in lines if line.startswith("probe "))
    assert probe.split()[:4] == ["probe", "aq-probe", "1.2.3", "no"] and probe.endswith("crashy, probe")
    only_core = json.loads(
        aq("plugins", "--json", root=tmp_path / "q", env={**probe_env, "AQ_LOAD_PLUGINS": ""}).stdout
    )
    assert {row["distribution"] for row in only_core["plugins"]} == {"aq-core"}


class _Broken:
    @hookimpl
    def parse_usage(self, engine, log_path):
        if engine != "in-process-broken":
            return None
        raise KeyError("usage")

    @hookimpl
    def classify_failure(self, engine, outcome):
        if engine != "in-process-broken":
            return None
        raise ZeroDivisionError("division by zero")


@pytest.fixture
def broken():
    pm = plugins.plugin_manager()
    plugin = _Broken()
    pm.register(plugin, name="in-process-broken")
    yield
    pm.unregister(plugin)


def test_a_failing_hook_is_one_line_and_the_core_goes_on(
    tmp_path: Path, broken: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "a.log"
    log.write_text("anything\n")
    assert plugins.parse_usage("in-process-broken", log) == Usage()
    failure = plugins.classify_failure("in-process-broken", Outcome(3, False, log, 1e9))
    assert (failure.cls, failure.detail) == ("crash", "engine ended with exit 3")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "aq: plugin in-process-broken: parse_usage failed: KeyError: 'usage'",
        "aq: plugin in-process-broken: classify_failure failed: ZeroDivisionError: division by zero",
    ]


def test_trace_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    monkeypatch.setenv("AQ_TRACE_PLUGINS", "1")
    plugins.parse_usage("command", log)
    err = capsys.readouterr().err.splitlines()
    assert any(
        line.startswith("aq: trace: parse_usage aq-core (command) ") and line.endswith("answered") for line in err
    )
    monkeypatch.setenv("AQ_TRACE_PLUGINS", "0")
    plugins.parse_usage("command", log)
    assert capsys.readouterr().err == ""
