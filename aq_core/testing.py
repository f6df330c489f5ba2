"""The contract test kit every engine plugin runs against itself.

A plugin's conformance test is one subclass in its own ``tests/``::

    from pathlib import Path
    from aq_core.testing import EngineContract

    class TestClaudeContract(EngineContract):
        engine = "claude"
        fixtures = Path(__file__).parent / "fixtures"

The base class has no ``Test`` prefix, so pytest collects only the subclass. Fixtures are golden
files: ``<case>.log`` (a real-format log) beside ``<case>.expected.json``::

    {"usage": {"model": "m", "tokens_in": 10},            # exactly the figures parse_usage returns
     "outcome": {"exit_code": 1, "timed_out": false},     # optional: classify this log ...
     "failure": {"cls": "auth_error", "reset_at": null}}  # ... as this class

Set ``AQ_UPDATE_GOLDENS=1`` to rewrite the ``usage`` part of every expected file from the parser
(then review the diff).
"""

from __future__ import annotations

import json
import math
import os
import tracemalloc
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import pytest

from aq_core import plugins
from aq_core.engine import CORE_FAILURE_CLASSES, Engine, LaunchContext, ModelPrice, Outcome
from aq_core.errors import AqError
from aq_core.job import Job
from aq_core.usage import INT_FIELDS, USAGE_FIELDS, Usage

CANARY = "AQ-CANARY-7f3c1b2e the secret prompt text"
#: Settings no plugin knows: every hook must accept them (and may ignore them).
ODD_SETTINGS = MappingProxyType({"aq-contract-unknown-key": {"nested": [1, 2]}, "aq-contract-other": None})


def fixture_cases(fixtures: Path | None) -> list[Path]:
    """Return the golden ``<case>.log`` files that have an ``<case>.expected.json`` beside them."""
    if fixtures is None or not fixtures.is_dir():
        return []
    return sorted(p for p in fixtures.glob("*.log") if p.with_suffix(".expected.json").exists())


def _expected(case: Path) -> dict[str, Any]:
    return json.loads(case.with_suffix(".expected.json").read_text())


def make_job(engine: str, tmp_path: Path, **overrides: Any) -> Job:
    """Return a minimal valid job for ``engine`` whose prompt is the canary."""
    values: dict[str, Any] = {"id": "contract-job", "engines": (engine,), "cwd": tmp_path, "prompt": CANARY}
    values.update(overrides)
    return Job(**values)


class EngineContract:
    """Conformance tests for one engine plugin. Subclass it and set ``engine`` and ``fixtures``."""

    #: The engine's name (required).
    engine: ClassVar[str]
    #: The folder of golden fixtures (``<case>.log`` + ``<case>.expected.json``).
    fixtures: ClassVar[Path | None] = None
    #: The engine resolves an executable (False for engines whose job names the program).
    has_executable: ClassVar[bool] = True
    #: ``launch`` honours ``yolo`` and ``model`` by changing the command line or environment.
    supports_yolo: ClassVar[bool] = True
    supports_model: ClassVar[bool] = True
    #: The engine accepts the prompt neither on stdin nor from a file (said in the plugin README).
    prompt_in_argv: ClassVar[bool] = False
    #: Extra job fields needed for a valid launch (e.g. ``{"command": ("true",)}``).
    job_fields: ClassVar[dict[str, Any]] = {}
    #: At least this many golden fixtures must exist.
    min_fixtures: ClassVar[int] = 1

    # -- helpers ------------------------------------------------------------------------------

    def _engine(self) -> Engine:
        name = getattr(self, "engine", None)
        if not name:
            raise NotImplementedError(f"{type(self).__name__} must set `engine`")
        return plugins.get_engine(name)

    def _ctx(self, tmp_path: Path, executable: str | None = "/opt/fake/bin/engine", **job: Any) -> LaunchContext:
        fields = dict(self.job_fields)
        fields.update(job)
        return LaunchContext(
            job=make_job(self.engine, tmp_path, **fields),
            attempt=1,
            executable=executable,
            workdir=tmp_path,
            prompt_file=tmp_path / "prompt.md",
        )

    def _launch(self, ctx: LaunchContext):
        return plugins.launch(self.engine, ctx)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "case" in metafunc.fixturenames:
            cases = fixture_cases(self.fixtures)
            metafunc.parametrize("case", cases, ids=[c.stem for c in cases])
        if "failure_case" in metafunc.fixturenames:
            cases = [c for c in fixture_cases(self.fixtures) if "failure" in _expected(c)]
            metafunc.parametrize("failure_case", cases, ids=[c.stem for c in cases])

    # -- registration -------------------------------------------------------------------------

    def test_engine_is_registered_through_entry_point(self) -> None:
        engine = self._engine()
        installed = plugins.installed_engines()[engine.name]
        assert installed.distribution, "the engine must come from an installed distribution"
        assert engine.env_var == "AQ_" + engine.name.upper().replace("-", "_") + "_BIN"
        assert set(engine.failure_classes).isdisjoint({"ok"}), "'ok' is not a failure class"

    def test_declared_prices_are_sane(self) -> None:
        from aq_core import pricing

        prices = self._engine().prices
        for prefix, price in prices.items():
            assert isinstance(prefix, str) and prefix.strip() == prefix and prefix, f"{prefix!r}: not a model prefix"
            assert prefix == prefix.lower() and "[" not in prefix, f"{prefix!r}: ids are matched lower case, no [...]"
            assert isinstance(price, ModelPrice), f"{prefix}: use aq_core.engine.ModelPrice"
            amounts = [price.input, price.cached, price.output] + ([price.cache_write] if price.cache_write else [])
            for amount in amounts:
                assert isinstance(amount, int | float) and not isinstance(amount, bool), f"{prefix}: {amount!r}"
                assert math.isfinite(amount) and 0 <= amount < 1000, f"{prefix}: {amount} USD per million tokens?"
            assert price.cached <= price.input, f"{prefix}: a cache read costs more than input"
            # A prefix prices its own model: the estimate the core would make is a positive number.
            figures = {"model": prefix, "tokens_in": 1_000_000, "tokens_out": 1_000_000}
            estimate = pricing.estimate(figures, prices)
            assert estimate is not None and estimate.cost_usd == round(price.input + price.output, 6)

    def test_fixtures_exist(self) -> None:
        cases = fixture_cases(self.fixtures)
        assert len(cases) >= self.min_fixtures, f"expected golden fixtures in {self.fixtures}"

    # -- launch -------------------------------------------------------------------------------

    @pytest.mark.parametrize("yolo", [False, True])
    @pytest.mark.parametrize("model", [None, "canary-model-1"])
    def test_prompt_never_in_argv(self, tmp_path: Path, yolo: bool, model: str | None) -> None:
        spec = self._launch(self._ctx(tmp_path, yolo=yolo, model=model))
        assert spec.argv, "argv must not be empty"
        assert all(isinstance(a, str) for a in spec.argv)
        if self.prompt_in_argv:
            assert spec.prompt == "argv"
            return
        assert spec.prompt in ("stdin", "file")
        for arg in spec.argv:
            assert "AQ-CANARY" not in arg, f"the prompt leaked into argv: {arg!r}"
        for value in spec.env.values():
            assert "AQ-CANARY" not in value, "the prompt leaked into the environment"
        if spec.prompt == "file":
            assert str(tmp_path / "prompt.md") in spec.argv, "argv must name the prompt file"

    def test_executable_override_is_honoured(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        engine = self._engine()
        if not self.has_executable:
            assert engine.binary is None, "an engine without its own executable has binary=None"
            return
        fake = str(tmp_path / "bin" / f"fake-{engine.name}")
        monkeypatch.setenv(engine.env_var, fake)
        resolved = engine.resolve()
        assert resolved == fake
        spec = self._launch(self._ctx(tmp_path, executable=resolved))
        assert spec.argv[0] == fake

    def test_not_installed_is_one_clear_error(self, tmp_path: Path) -> None:
        if not self.has_executable:
            assert self._launch(self._ctx(tmp_path, executable=None)).argv, "the job names the program"
            return
        with pytest.raises(AqError) as info:
            self._launch(self._ctx(tmp_path, executable=None))
        message = str(info.value)
        assert message and "\n" not in message and self.engine in message

    def test_yolo_is_honoured(self, tmp_path: Path) -> None:
        off = self._launch(self._ctx(tmp_path, yolo=False))
        on = self._launch(self._ctx(tmp_path, yolo=True))
        if not self.supports_yolo:
            assert off.argv == on.argv, "an engine without a permission mode ignores yolo"
            return
        assert (off.argv, off.env) != (on.argv, on.env), "yolo: true must change how the engine starts"

    def test_model_is_honoured(self, tmp_path: Path) -> None:
        without = self._launch(self._ctx(tmp_path))
        with_model = self._launch(self._ctx(tmp_path, model="canary-model-1"))
        if not self.supports_model:
            assert "canary-model-1" not in " ".join(with_model.argv), "model is not passed where unsupported"
            return
        assert "canary-model-1" not in " ".join(without.argv)
        assert "canary-model-1" in " ".join(with_model.argv) or "canary-model-1" in with_model.env.values()

    def test_state_dirs_are_safe_to_make_writable(self) -> None:
        # A sandboxed job makes these writable: each must be one precise place, never home or /.
        for entry in self._engine().state_dirs:
            assert isinstance(entry, str), f"state_dirs: {entry!r} is not a path string"
            assert entry.startswith("~/") or os.path.isabs(entry), (
                f"state_dirs: {entry!r}: use ~/... or an absolute path"
            )
            parts = entry.split("/")
            assert ".." not in parts, f"state_dirs: {entry!r}: no '..'"
            assert entry.rstrip("/") not in ("", "~"), f"state_dirs: {entry!r} would make all of / or home writable"

    def test_other_engines_are_not_answered(self, tmp_path: Path) -> None:
        pm = plugins.plugin_manager()
        ctx = self._ctx(tmp_path)
        ctx = replace(ctx, job=replace(ctx.job, engines=("no-such-engine-x",)))
        assert pm.hook.launch(engine="no-such-engine-x", ctx=ctx) is None
        log = tmp_path / "x.log"
        assert pm.hook.parse_usage(engine="no-such-engine-x", log_path=log, settings=ODD_SETTINGS) is None

    def test_settings_are_accepted(self, tmp_path: Path) -> None:
        # Settings the plugin does not know (or none) change nothing it must do: it still answers.
        spec = self._launch(replace(self._ctx(tmp_path), settings=ODD_SETTINGS))
        assert spec.argv and spec.argv == self._launch(self._ctx(tmp_path)).argv
        logs = fixture_cases(self.fixtures) or [tmp_path / "empty.log"]
        if not logs[0].exists():
            logs[0].write_text("")
        pm = plugins.plugin_manager()
        for log in logs[:3]:
            usage = pm.hook.parse_usage(engine=self.engine, log_path=log, settings=ODD_SETTINGS)
            assert usage is not None, "parse_usage must answer for its own engine, whatever the settings"
            assert usage.figures() == plugins.parse_usage(self.engine, log).figures()
            outcome = Outcome(exit_code=1, timed_out=False, log_path=log, finished_at=1e9)
            assert plugins.classify_failure(self.engine, outcome, ODD_SETTINGS) == plugins.classify_failure(
                self.engine, outcome
            )

    # -- parse_usage --------------------------------------------------------------------------

    def test_golden_usage(self, case: Path) -> None:
        expected_path = case.with_suffix(".expected.json")
        expected = json.loads(expected_path.read_text())
        usage = plugins.parse_usage(self.engine, case)
        self._check_usage(usage)
        got = usage.figures()
        if os.environ.get("AQ_UPDATE_GOLDENS"):
            expected["usage"] = got
            expected_path.write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
        assert got == expected.get("usage", {}), f"{case.name}: figures differ from {expected_path.name}"

    def test_golden_failure_class(self, failure_case: Path) -> None:
        case = failure_case
        expected = _expected(case)
        outcome = expected.get("outcome", {})
        failure = plugins.classify_failure(
            self.engine,
            Outcome(
                exit_code=outcome.get("exit_code", 1),
                timed_out=outcome.get("timed_out", False),
                log_path=case,
                finished_at=outcome.get("finished_at", 1_764_000_000.0),
            ),
        )
        known = set(CORE_FAILURE_CLASSES) | set(self._engine().failure_classes) | {"ok"}
        assert failure.cls in known, f"{failure.cls!r} is not a declared class"
        want = expected["failure"]
        assert failure.cls == want["cls"], f"{case.name}: classified {failure.cls!r}"
        if "reset_at" in want:
            assert failure.reset_at == want["reset_at"]

    def test_classify_returns_a_known_class(self, tmp_path: Path) -> None:
        known = set(CORE_FAILURE_CLASSES) | set(self._engine().failure_classes) | {"ok"}
        logs = fixture_cases(self.fixtures) or [tmp_path / "empty.log"]
        if not logs[0].exists():
            logs[0].write_text("")
        for log in logs:
            for exit_code, timed_out in ((0, False), (1, False), (-9, True), (None, False)):
                failure = plugins.classify_failure(
                    self.engine, Outcome(exit_code=exit_code, timed_out=timed_out, log_path=log, finished_at=1e9)
                )
                assert failure.cls in known, f"{log.name}: {failure.cls!r} is not a known class"
                if timed_out:
                    assert failure.cls != "ok"

    def _check_usage(self, usage: Usage) -> None:
        assert isinstance(usage, Usage)
        figures = usage.figures()
        assert set(figures) <= set(USAGE_FIELDS)
        for name in INT_FIELDS:
            if name in figures:
                assert isinstance(figures[name], int) and not isinstance(figures[name], bool)
                assert figures[name] >= 0
        if "cost_usd" in figures:
            assert isinstance(figures["cost_usd"], float) and figures["cost_usd"] >= 0
        if "model" in figures:
            assert isinstance(figures["model"], str) and figures["model"]
        if "tokens_cached" in figures and "tokens_in" in figures:
            assert figures["tokens_cached"] <= figures["tokens_in"], "tokens_in includes cache reads"

    @pytest.mark.parametrize(
        "content",
        [
            b"",
            b"\x00\xff\xfe garbage \x00\n\x01",
            b'{"type":"result"',
            b'{not json}\n[1,2,3]\nnull\n"str"\n',
            b'{"type": 5, "usage": "lots", "modelUsage": [], "msg": null}\n',
            b"tokens used\n-5\nTokens \xe2\x86\x91 x\n",
        ],
        ids=["empty", "binary", "torn", "not-objects", "wrong-types", "bad-text"],
    )
    def test_parse_usage_never_raises(self, tmp_path: Path, content: bytes) -> None:
        log = tmp_path / "junk.log"
        log.write_bytes(content)
        usage = plugins.plugin_manager().hook.parse_usage(engine=self.engine, log_path=log, settings={})
        assert usage is not None, "parse_usage must answer for its own engine"
        self._check_usage(usage)

    def test_truncated_last_line_is_dropped(self, tmp_path: Path) -> None:
        for case in fixture_cases(self.fixtures):
            data = case.read_bytes()
            if not data.endswith(b"\n"):
                continue
            # Cut inside the last line: whatever it held must not be half-read.
            lines = data.rstrip(b"\n").split(b"\n")
            torn = b"\n".join(lines[:-1]) + b"\n" + lines[-1][: max(1, len(lines[-1]) // 2)]
            log = tmp_path / case.name
            log.write_bytes(torn)
            self._check_usage(plugins.parse_usage(self.engine, log))

    def test_parse_usage_streams_in_constant_memory(self, tmp_path: Path) -> None:
        cases = fixture_cases(self.fixtures)
        assert cases, f"expected golden fixtures in {self.fixtures}"
        sample = max(cases, key=lambda p: p.stat().st_size).read_bytes()
        if not sample.endswith(b"\n"):
            sample += b"\n"
        log = tmp_path / "big.log"
        target = 8 << 20
        with open(log, "wb") as fh:
            written = 0
            while written < target:
                fh.write(sample)
                written += len(sample)
        tracemalloc.start()
        try:
            self._check_usage(plugins.parse_usage(self.engine, log))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < target // 2, f"parse_usage held {peak} bytes for an {target}-byte log: it must stream"
