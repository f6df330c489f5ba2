"""The queue config: ``config.yaml`` in the queue root, validated like job files.

``load_config`` gives the ``QueueConfig`` (``config_model``); ``load_settings`` gives the same checked
values as a plain mapping, for ``aq add``, which needs only ``profiles:`` and no dataclass.
"""

from __future__ import annotations

from pathlib import Path

from aq_core.durations import parse_duration
from aq_core.errors import ConfigInvalid, UsageError

TYPE_CHECKING = False  # typing and dataclasses cost `aq add` milliseconds: only type checkers read these
if TYPE_CHECKING:
    from typing import Any

    from aq_core.config_model import QueueConfig
    from aq_core.engine import ModelPrice


def __getattr__(name: str) -> object:
    if name == "QueueConfig":  # imported on first use (see load_settings)
        from aq_core.config_model import QueueConfig

        return QueueConfig
    raise AttributeError(f"module 'aq_core.config' has no attribute {name!r}")


CONFIG_NAME = "config.yaml"
KEYS = (
    "engines",
    "protected_branches",
    "notify",
    "notify_timeout",
    "on_limit",
    "limit_hold",
    "limit_hold_max",
    "limit_margin",
    "budgets",
    "estimate_cost",
    "plugins",
    "prices",
    "report_on_drain",
    "sandbox",
    "profiles",
)
ENGINE_KEYS = ("bin",)
PRICE_KEYS = ("input", "cached", "output", "cache_write")


def _near(key: str, choices: tuple[str, ...]) -> str:
    import difflib  # only a misspelt key needs it

    match = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def load_config(root: Path) -> QueueConfig:
    """Return the queue's config (defaults when there is no file); raise ``UsageError`` naming every problem."""
    from aq_core.config_model import QueueConfig

    return QueueConfig(**load_settings(root))


def load_settings(root: Path) -> dict[str, Any]:
    """The ``QueueConfig`` fields ``config.yaml`` sets (none when there is no file), checked as
    ``load_config`` checks them: raise ``UsageError`` naming every problem."""
    path = root / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    import yaml

    try:
        from aq_core.job import yaml_loader

        data = yaml.load(text, Loader=yaml_loader()) or {}  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings")
    problems: list[str] = []
    values: dict[str, Any] = {"raw": data}
    for key in data:
        if key not in KEYS:
            problems.append(f"{path}: unknown key {key!r}{_near(str(key), KEYS)}")
    engines = data.get("engines") or {}
    if not isinstance(engines, dict):
        problems.append(f"{path}: engines: expected a mapping of engine name to settings")
    else:
        bins = {}
        for name, settings in engines.items():
            if not isinstance(settings, dict):
                problems.append(f"{path}: engines.{name}: expected a mapping (bin: ...)")
                continue
            for key in settings:
                if key not in ENGINE_KEYS:
                    problems.append(f"{path}: engines.{name}: unknown key {key!r}{_near(str(key), ENGINE_KEYS)}")
            if "bin" in settings:
                if not isinstance(settings["bin"], str) or not settings["bin"].strip():
                    problems.append(f"{path}: engines.{name}.bin: expected a path")
                else:
                    bins[str(name)] = settings["bin"].strip()
        values["engine_bins"] = bins
    if "protected_branches" in data:
        branches = data["protected_branches"]
        if not isinstance(branches, list) or not all(isinstance(b, str) for b in branches):
            problems.append(f"{path}: protected_branches: expected a list of branch names")
        else:
            values["protected_branches"] = tuple(dict.fromkeys(["main", "master", *branches]))
    if "notify" in data and data["notify"] is not None:
        notify = data["notify"]
        if isinstance(notify, str) and notify.strip():
            values["notify"] = notify
        elif isinstance(notify, list) and notify and all(isinstance(a, str) for a in notify):
            values["notify"] = list(notify)
        else:
            problems.append(f"{path}: notify: expected a command string or a list of arguments")
    for key in ("notify_timeout", "limit_hold", "limit_hold_max", "limit_margin"):
        if key in data:
            try:
                values[key] = parse_duration(data[key])
            except ValueError as exc:
                problems.append(f"{path}: {key}: {data[key]!r}: {exc}")
    if "plugins" in data:
        if not isinstance(data["plugins"], dict):
            problems.append(f"{path}: plugins: expected a mapping of plugin name to its settings")
        else:
            values["plugins"] = {str(k): {} if v is None else v for k, v in data["plugins"].items()}
            for name, settings in values["plugins"].items():
                if not isinstance(settings, dict):
                    problems.append(f"{path}: plugins.{name}: {settings!r}: expected a mapping of settings")
    if "prices" in data:
        values["prices"] = _prices(path, data["prices"], problems)
    if "estimate_cost" in data:
        if not isinstance(data["estimate_cost"], bool):
            problems.append(f"{path}: estimate_cost: {data['estimate_cost']!r}: expected true or false")
        else:
            values["estimate_cost"] = data["estimate_cost"]
    if "report_on_drain" in data:
        if not isinstance(data["report_on_drain"], bool):
            problems.append(f"{path}: report_on_drain: {data['report_on_drain']!r}: expected true or false")
        else:
            values["report_on_drain"] = data["report_on_drain"]
    if "sandbox" in data:
        if not isinstance(data["sandbox"], bool):
            problems.append(f"{path}: sandbox: {data['sandbox']!r}: expected true or false")
        else:
            values["sandbox"] = data["sandbox"]
    if "on_limit" in data:
        if data["on_limit"] not in ("wait", "fail"):
            problems.append(f"{path}: on_limit: {data['on_limit']!r}: expected wait or fail")
        else:
            values["on_limit"] = data["on_limit"]
    if "budgets" in data:
        budgets = data["budgets"]
        if not isinstance(budgets, dict):
            problems.append(f"{path}: budgets: expected a mapping such as {{daily_usd: 20, claude: 10}}")
        else:
            parsed = {}
            for name, amount in budgets.items():
                if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
                    problems.append(f"{path}: budgets.{name}: {amount!r}: expected a number of US dollars")
                else:
                    parsed[str(name)] = float(amount)
            values["budgets"] = parsed
    if "profiles" in data:
        values["profiles"] = _profiles(path, data["profiles"], problems)
    if problems:
        raise ConfigInvalid(problems)
    return values


def _profiles(path: Path, profiles: Any, problems: list[str]) -> dict[str, dict[str, Any]]:
    """Read ``profiles: {NAME: {job keys}}``, each checked like a job's keys (engines and failure
    classes are checked against the plugins when a job uses the profile)."""
    from aq_core.job_keys import PROFILE_KEYS, check_keys

    if profiles is None:
        return {}
    if not isinstance(profiles, dict):
        problems.append(
            f"{path}: profiles: expected a mapping of profile name to job keys, such as {{fast: {{engine: codex}}}}"
        )
        return {}
    parsed: dict[str, dict[str, Any]] = {}
    for name, keys in profiles.items():
        where = f"{path}: profiles.{name}"
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{path}: profiles: {name!r}: expected a profile name")
            continue
        if not isinstance(keys, dict):
            problems.append(f"{where}: {keys!r}: expected a mapping of job keys")
            continue

        def bad(key: str | None, message: str, where: str = where) -> None:
            problems.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")

        check_keys(
            keys,
            bad,
            engines=None,
            failure_classes=None,
            path=path,
            default_cwd=None,
            check_cwd=False,
            allowed=PROFILE_KEYS,
        )
        parsed[name.strip()] = keys
    return parsed


def _prices(path: Path, prices: Any, problems: list[str]) -> dict[str, ModelPrice]:
    """Read ``prices: {model-prefix: {input: 1.25, cached: 0.125, output: 10}}`` (USD per million tokens)."""
    from aq_core.engine import ModelPrice

    example = "{my-model: {input: 1.25, cached: 0.125, output: 10}}"
    if not isinstance(prices, dict):
        problems.append(f"{path}: prices: expected a mapping of model prefix to prices, such as {example}")
        return {}
    parsed = {}
    for model, price in prices.items():
        where = f"{path}: prices.{model}"
        if not isinstance(model, str) or not model.strip():
            problems.append(f"{where}: expected a model id prefix")
            continue
        if not isinstance(price, dict):
            problems.append(f"{where}: expected a mapping such as {{input: 1.25, cached: 0.125, output: 10}}")
            continue
        numbers: dict[str, float] = {}
        for key, amount in price.items():
            if key not in PRICE_KEYS:
                problems.append(f"{where}: unknown key {key!r}{_near(str(key), PRICE_KEYS)}")
            elif isinstance(amount, bool) or not isinstance(amount, int | float) or not 0 <= amount < float("inf"):
                problems.append(f"{where}.{key}: {amount!r}: expected US dollars per million tokens")
            else:
                numbers[key] = float(amount)
        missing = [key for key in ("input", "output") if key not in price]
        if missing:
            problems.append(f"{where}: missing {' and '.join(missing)} (US dollars per million tokens)")
            continue
        if len(numbers) == sum(1 for key in price if key in PRICE_KEYS):
            numbers.setdefault("cached", numbers["input"])  # no cache discount known: charge reads as input
            parsed[model.strip().lower()] = ModelPrice(**numbers)
    return parsed
