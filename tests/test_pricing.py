"""Cost estimates: the core's arithmetic over the prices plugins declare, and config.yaml's overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import Fakes, codex_ok
from helpers import aq, meta, write_job

from aq_core import pricing
from aq_core.config import load_config
from aq_core.engine import Engine, ModelPrice
from aq_core.errors import UsageError

GPT5 = ModelPrice(input=1.25, cached=0.125, output=10.0)
TABLE = {
    "gpt-5": GPT5,
    "gpt-5-mini": ModelPrice(input=0.25, cached=0.025, output=2.0),
    "claude-opus-4": ModelPrice(input=15.0, cached=1.5, output=75.0),
    "claude-opus-4-5": ModelPrice(input=5.0, cached=0.5, output=25.0),
}


@pytest.mark.parametrize(
    ("model", "prefix"),
    [
        ("gpt-5", "gpt-5"),
        ("GPT-5-2025-08-07", "gpt-5"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("gpt-5.4", None),  # a newer model the table does not know
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-opus-4-1", "claude-opus-4"),
        ("claude-opus-4-5[1m]", "claude-opus-4-5"),
        ("other", None),
    ],
)
def test_longest_prefix_wins(model: str, prefix: str | None) -> None:
    assert pricing.match(model, TABLE) == prefix


def test_estimate_charges_cached_reads_at_the_cached_price() -> None:
    figures = {"model": "gpt-5", "tokens_in": 48210, "tokens_cached": 40960, "tokens_out": 2875}
    # (7250 * 1.25 + 40960 * 0.125 + 2875 * 10) / 1e6
    assert pricing.estimate(figures, TABLE, source="aq-x 1.0") == pricing.Estimate(0.042932, "aq-x 1.0")


def test_cache_writes_use_their_own_price_only_when_declared_and_reported() -> None:
    figures = {"model": "m", "tokens_in": 1_000_000, "tokens_cached": 0, "tokens_out": 0}
    plain = {"m": ModelPrice(input=3.0, cached=0.3, output=15.0)}
    with_write = {"m": ModelPrice(input=3.0, cached=0.3, output=15.0, cache_write=3.75)}
    assert pricing.estimate(figures, plain, cache_write=400_000).cost_usd == 3.0
    assert pricing.estimate(figures, with_write).cost_usd == 3.0
    assert pricing.estimate(figures, with_write, cache_write=400_000).cost_usd == 600_000 * 3e-6 + 400_000 * 3.75e-6


def test_no_estimate_without_a_price_tokens_or_when_the_engine_printed_a_cost() -> None:
    base = {"model": "gpt-5", "tokens_in": 10, "tokens_out": 5}
    assert pricing.estimate(base, {}) is None
    assert pricing.estimate({**base, "cost_usd": 0.5}, TABLE) is None
    assert pricing.estimate({**base, "tokens_out": None}, TABLE) is None
    assert pricing.estimate({**base, "model": None}, TABLE) is None
    assert pricing.estimate({**base, "tokens_in": True}, TABLE) is None


def test_config_overrides_win_on_a_tie_and_are_labelled() -> None:
    figures = {"model": "gpt-5-mini", "tokens_in": 1_000_000, "tokens_out": 0}
    overrides = {"gpt-5-mini": ModelPrice(input=1.0, cached=1.0, output=1.0)}
    assert pricing.estimate(figures, TABLE, overrides, "aq-x 1.0") == pricing.Estimate(1.0, "config.yaml")
    # A shorter override does not beat the engine's longer prefix.
    assert pricing.estimate(figures, TABLE, {"gpt-5": GPT5}, "aq-x 1.0") == pricing.Estimate(0.25, "aq-x 1.0")
    # A model only the config knows.
    assert pricing.estimate({**figures, "model": "gpt-5.4"}, TABLE, {"gpt-5.4": GPT5}).source == "config.yaml"


def test_installed_engines_declare_their_own_prices() -> None:
    codex = pricing.for_engine("codex", {"model": "gpt-5", "tokens_in": 1000, "tokens_out": 100})
    assert codex is not None and codex.source.startswith("aq-codex ") and codex.cost_usd == 0.00225
    claude = pricing.for_engine("claude", {"model": "claude-sonnet-4-5", "tokens_in": 1000, "tokens_out": 100})
    assert claude is not None and claude.source.startswith("aq-claude ")
    # The command engine declares nothing: no estimate, whatever the model.
    assert pricing.for_engine("command", {"model": "gpt-5", "tokens_in": 1000, "tokens_out": 100}) is None
    assert Engine(name="x").prices == {}


def test_no_model_name_in_the_core() -> None:
    core = Path(pricing.__file__).parent
    for module in core.glob("*.py"):
        text = module.read_text().lower()
        for word in ("gpt-", "claude-", "o4-mini", "sonnet", "opus"):
            assert word not in text, f"{module.name} names a model ({word})"


def test_config_prices_are_read(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "prices:\n  GPT-5.4: {input: 1.75, cached: 0.175, output: 14}\n  local: {input: 0, output: 0}\n"
    )
    prices = load_config(tmp_path).prices
    assert prices == {
        "gpt-5.4": ModelPrice(input=1.75, cached=0.175, output=14.0),
        "local": ModelPrice(input=0.0, cached=0.0, output=0.0),
    }


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("prices: 3", "prices: expected a mapping of model prefix to prices"),
        ("prices: {gpt-5: 1.25}", "prices.gpt-5: expected a mapping such as"),
        ("prices: {gpt-5: {input: 1, output: -2}}", "prices.gpt-5.output: -2: expected US dollars per million tokens"),
        ("prices: {gpt-5: {input: true, output: 2}}", "prices.gpt-5.input: True: expected US dollars"),
        ("prices: {gpt-5: {input: 1}}", "prices.gpt-5: missing output"),
        ("prices: {gpt-5: {inptu: 1, output: 2}}", "prices.gpt-5: unknown key 'inptu' (did you mean 'input'?)"),
        ("plugins: {claude: 3}", "plugins.claude: 3: expected a mapping of settings"),
    ],
)
def test_bad_prices_are_one_line_errors(tmp_path: Path, yaml: str, message: str) -> None:
    (tmp_path / "config.yaml").write_text(yaml + "\n")
    with pytest.raises(UsageError) as info:
        load_config(tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_prices_stop_aq_with_exit_2(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    root.mkdir()
    (root / "config.yaml").write_text("prices: {gpt-5: {input: cheap, output: 2}}\n")
    result = aq("status", root=root)
    assert result.returncode == 2
    assert "prices.gpt-5.input: 'cheap'" in result.stderr and "Traceback" not in result.stderr


def test_a_run_records_the_estimate_and_where_its_price_came_from(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    work = tmp_path / "w"
    work.mkdir()
    fakes = Fakes(tmp_path)
    fakes.engine("codex", [{"lines": codex_ok()}, {"lines": codex_ok()}])
    for job_id, model in (("listed", "gpt-5"), ("mine", "gpt-5.4")):
        job = write_job(tmp_path / "jobs", job_id, {"engine": "codex", "cwd": str(work), "model": model})
        assert aq("add", str(job), root=root, env=fakes.env).returncode == 0
    (root / "config.yaml").write_text("prices:\n  gpt-5.4: {input: 2, cached: 1, output: 10}\n")
    assert aq("run", "--once", root=root, env=fakes.env).returncode == 0
    # codex_ok: 2000 in (1500 cached), 300 out.
    listed, mine = meta(root, "listed"), meta(root, "mine")
    assert float(listed["cost_usd"]) == pytest.approx((500 * 1.25 + 1500 * 0.125 + 300 * 10) / 1e6, abs=1e-6)
    assert listed["estimated"] == "cost_usd" and listed["pricing"].startswith("aq-codex ")
    assert float(mine["cost_usd"]) == pytest.approx((500 * 2 + 1500 * 1 + 300 * 10) / 1e6, abs=1e-6)
    assert mine["pricing"] == "config.yaml"
