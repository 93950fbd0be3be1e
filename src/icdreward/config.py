"""Declarative, typed engine configuration.

A configuration names a parser and reward components, each with a weight and
parameters. It can start from a preset and override parts of it::

    preset = "default"

    [rewards.hierarchy]
    weight = 2.0

    [rewards.reasoning]
    enabled = false

Configurations load from TOML, YAML or JSON files and from dicts; every error
names the source, the dotted field and the offending value. Component parameters
are checked later, against the ``Params`` class of the component that the field
names, when the engine is built.

>>> cfg = load_config({"preset": "deepicd-r1"})
>>> [r.key for r in cfg.rewards]
['format', 'outcome', 'trace', 'exact_match']
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

import attrs

from icdreward.errors import ConfigError
from icdreward.presets import available_presets, preset_config

__all__ = [
    "DEFAULT_TIME_LIMIT",
    "RESERVED_KEYS",
    "ComponentConfig",
    "EngineConfig",
    "FailureConfig",
    "FailurePolicy",
    "LimitsConfig",
    "ParserConfig",
    "PluginsConfig",
    "load_config",
    "merge_config",
]

FailurePolicy = Literal["fallback", "abstain", "raise"]
_POLICIES: tuple[str, ...] = ("fallback", "abstain", "raise")
_TOP_LEVEL = ("preset", "parser", "rewards", "failure", "limits", "plugins", "codeset", "monitors")
# Keys of a reward table that configure the engine's handling of the component;
# everything else in the table is a parameter of the component itself. (The judge
# takes a `timeout` of its own, per HTTP request: the engine's limit is `time_limit`.)
RESERVED_KEYS = ("component", "weight", "enabled", "on_failure", "fallback", "time_limit")
DEFAULT_TIME_LIMIT = 600.0
"""Seconds one component may spend on one batch unless configured otherwise: far above
what a healthy component takes (microseconds per sample; a judge's own batch deadline
is 300 s by default), so it fires only on a hung call."""
# Keys of ScoreResult.to_records() besides the components: no component may take them.
RECORD_KEYS = ("score", "code", "parse_failure", "invalid_code", "gold_missing", "failed")


@attrs.frozen
class ParserConfig:
    """Which registered parser turns completions into a parsed batch, and its parameters."""

    name: str = "tags"
    params: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ComponentConfig:
    """One reward component in the configuration.

    Attributes:
        key: the component's name in the results (the key under ``[rewards]``).
        component: the registered component to build (defaults to ``key``; set it to
            use one component twice with different parameters).
        weight: multiplier in the weighted total; 0 makes the component a logged metric.
        params: the component's own parameters (validated against its ``Params``).
        on_failure: failure policy for this component (None: the engine-wide one).
        fallback: value used by the ``"fallback"`` policy (None: the engine-wide one).
        time_limit: seconds the component may spend on one batch; ``False`` for no
            limit, None for the engine-wide one (:class:`LimitsConfig`).
    """

    key: str
    component: str
    weight: float = 1.0
    params: Mapping[str, Any] = attrs.field(factory=dict)
    on_failure: FailurePolicy | None = None
    fallback: float | None = None
    time_limit: float | Literal[False] | None = None


@attrs.frozen
class FailureConfig:
    """What a sample counts when a component could not score it.

    ``"fallback"`` uses :attr:`fallback`; ``"abstain"`` leaves the component out of
    that sample's total; ``"raise"`` raises :class:`~icdreward.errors.ComponentFailure`.
    """

    policy: FailurePolicy = "fallback"
    fallback: float = 0.0


@attrs.frozen
class LimitsConfig:
    """Time limits of the reward components (the ``[limits]`` table).

    Attributes:
        time_limit: seconds each component may spend on one batch, unless its own
            table sets ``time_limit``; None: no limit. A component past its limit
            fails on every sample of the batch ("timed out after N s") and its failure
            policy applies; the engine stops waiting for it.
    """

    time_limit: float | None = DEFAULT_TIME_LIMIT


@attrs.frozen
class PluginsConfig:
    """Plugin loading: plugin (entry point) names to skip, and strict loading."""

    disable: tuple[str, ...] = ()
    strict: bool = False


@attrs.frozen
class EngineConfig:
    """A validated engine configuration (see :func:`load_config`)."""

    rewards: tuple[ComponentConfig, ...]
    parser: ParserConfig = attrs.field(factory=ParserConfig)
    failure: FailureConfig = attrs.field(factory=FailureConfig)
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    plugins: PluginsConfig = attrs.field(factory=PluginsConfig)
    codeset_year: int = 2026
    monitors: bool = True
    preset: str | None = None
    source: str = "<dict>"


def load_config(
    config: str | Path | Mapping[str, Any], *, source: str | None = None
) -> EngineConfig:
    """Load and validate a configuration from a file path or a mapping.

    Files ending in ``.toml``, ``.yaml``/``.yml`` or ``.json`` are read; a mapping is
    used as is. A ``preset`` key merges the configuration over that preset.

    Raises:
        ConfigError: the file cannot be read or parsed, or a field is invalid.
    """
    if isinstance(config, Mapping):
        raw = dict(config)
        origin = source or "<dict>"
    else:
        origin = source or str(config)
        raw = read_config_file(Path(config))
    return _validate(_resolve_preset(raw, origin), origin)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file into a dict, with errors naming the file."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, "", str(path), f"cannot read file: {exc.strerror}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(source, "", suffix, "unknown file type; use .toml, .yaml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # each parser has its own error type; all mean "malformed"
        raise ConfigError(source, "", str(path), f"malformed {suffix[1:]} file: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, "", data, "the top level must be a table of settings")
    return data


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` onto ``base`` (tables merge, other values replace)."""
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_config(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolve_preset(raw: dict[str, Any], source: str) -> dict[str, Any]:
    name = raw.get("preset")
    if name is None:
        return raw
    if not isinstance(name, str) or name not in available_presets():
        names = ", ".join(available_presets())
        raise ConfigError(source, "preset", name, f"unknown preset (available: {names})")
    merged = merge_config(preset_config(name), {k: v for k, v in raw.items() if k != "preset"})
    merged["preset"] = name
    return merged


def _validate(raw: Mapping[str, Any], source: str) -> EngineConfig:
    for key, value in raw.items():
        if key not in _TOP_LEVEL:
            raise ConfigError(source, str(key), value, _unknown("setting", str(key), _TOP_LEVEL))
    preset = raw.get("preset")
    return EngineConfig(
        rewards=_rewards(raw.get("rewards", {}), source),
        parser=_parser(raw.get("parser", {}), source),
        failure=_failure(raw.get("failure", {}), source),
        limits=_limits(raw.get("limits", {}), source),
        plugins=_plugins(raw.get("plugins", {}), source),
        codeset_year=_codeset_year(raw.get("codeset", {}), source),
        monitors=_monitors(raw.get("monitors", True), source),
        preset=preset if isinstance(preset, str) else None,
        source=source,
    )


def _table(value: Any, source: str, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(source, field, value, "expected a table")
    return value


def _unknown(what: str, key: str, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what}{hint} (allowed: {', '.join(allowed)})"


def _number(value: Any, source: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(source, field, value, "expected a number")
    number = float(value)
    if number != number or abs(number) == float("inf"):
        raise ConfigError(source, field, value, "expected a finite number")
    return number


def _policy(value: Any, source: str, field: str) -> FailurePolicy:
    if value not in _POLICIES:
        raise ConfigError(source, field, value, f"must be one of {', '.join(map(repr, _POLICIES))}")
    return cast(FailurePolicy, value)


def _rewards(value: Any, source: str) -> tuple[ComponentConfig, ...]:
    table = _table(value, source, "rewards")
    out: list[ComponentConfig] = []
    for key, entry in table.items():
        field = f"rewards.{key}"
        if key in RECORD_KEYS:
            raise ConfigError(
                source, field, entry, f"{key!r} is a key of every result record; rename the reward"
            )
        if entry is False:  # `hierarchy = false` switches off a preset's component
            continue
        if entry is True:
            entry = {}
        entry = _table(entry, source, field)
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(source, f"{field}.enabled", enabled, "expected true or false")
        if not enabled:
            continue
        component = entry.get("component", key)
        if not isinstance(component, str) or not component:
            raise ConfigError(source, f"{field}.component", component, "expected a component name")
        on_failure = entry.get("on_failure")
        fallback = entry.get("fallback")
        time_limit = entry.get("time_limit")
        out.append(
            ComponentConfig(
                key=str(key),
                component=component,
                weight=_number(entry.get("weight", 1.0), source, f"{field}.weight"),
                params={k: v for k, v in entry.items() if k not in RESERVED_KEYS},
                on_failure=None
                if on_failure is None
                else _policy(on_failure, source, f"{field}.on_failure"),
                fallback=None
                if fallback is None
                else _number(fallback, source, f"{field}.fallback"),
                time_limit=None
                if time_limit is None
                else _time_limit(time_limit, source, f"{field}.time_limit"),
            )
        )
    if not out:
        raise ConfigError(source, "rewards", dict(table), "no reward component is enabled")
    return tuple(out)


def _parser(value: Any, source: str) -> ParserConfig:
    table = _table(value, source, "parser")
    name = table.get("name", "tags")
    if not isinstance(name, str) or not name:
        raise ConfigError(source, "parser.name", name, "expected a parser name")
    return ParserConfig(name=name, params={k: v for k, v in table.items() if k != "name"})


def _failure(value: Any, source: str) -> FailureConfig:
    table = _table(value, source, "failure")
    for key, entry in table.items():
        if key not in ("policy", "fallback"):
            raise ConfigError(
                source,
                f"failure.{key}",
                entry,
                _unknown("setting", str(key), ["policy", "fallback"]),
            )
    return FailureConfig(
        policy=_policy(table.get("policy", "fallback"), source, "failure.policy"),
        fallback=_number(table.get("fallback", 0.0), source, "failure.fallback"),
    )


def _time_limit(value: Any, source: str, field: str) -> float | Literal[False]:
    if value is False:
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(source, field, value, "expected seconds (a number > 0) or false")
    seconds = float(value)
    if not 0 < seconds < float("inf"):
        raise ConfigError(
            source, field, value, "expected seconds greater than 0 (false: no time limit)"
        )
    return seconds


def _limits(value: Any, source: str) -> LimitsConfig:
    table = _table(value, source, "limits")
    for key, entry in table.items():
        if key != "time_limit":
            raise ConfigError(
                source, f"limits.{key}", entry, _unknown("setting", str(key), ["time_limit"])
            )
    if "time_limit" not in table:
        return LimitsConfig()
    seconds = _time_limit(table["time_limit"], source, "limits.time_limit")
    return LimitsConfig(time_limit=None if seconds is False else seconds)


def _plugins(value: Any, source: str) -> PluginsConfig:
    table = _table(value, source, "plugins")
    for key, entry in table.items():
        if key not in ("disable", "strict"):
            raise ConfigError(
                source,
                f"plugins.{key}",
                entry,
                _unknown("setting", str(key), ["disable", "strict"]),
            )
    disable = table.get("disable", [])
    if not isinstance(disable, (list, tuple)) or not all(isinstance(d, str) for d in disable):
        raise ConfigError(source, "plugins.disable", disable, "expected a list of plugin names")
    strict = table.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(source, "plugins.strict", strict, "expected true or false")
    return PluginsConfig(disable=tuple(disable), strict=strict)


def _monitors(value: Any, source: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(source, "monitors", value, "expected true or false")
    return value


def _codeset_year(value: Any, source: str) -> int:
    table = _table(value, source, "codeset")
    for key, entry in table.items():
        if key != "year":
            raise ConfigError(
                source, f"codeset.{key}", entry, _unknown("setting", str(key), ["year"])
            )
    year = table.get("year", 2026)
    if isinstance(year, bool) or not isinstance(year, int):
        raise ConfigError(source, "codeset.year", year, "expected a year such as 2026")
    return year
