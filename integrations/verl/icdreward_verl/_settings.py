"""The reward settings verl passes to icdreward, and one engine per process for them.

Both verl routes give the settings as keyword arguments: the reward function gets
``reward.custom_reward_function.reward_kwargs``, the reward manager reads
``reward.reward_kwargs``. They are checked here once, with the same messages as the
rest of the configuration (the field, the value, the closest valid key).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from icdreward.config import load_config, merge_config, read_config_file
from icdreward.engine import RewardEngine
from icdreward.errors import ConfigError
from icdreward.params import structure_params

__all__ = [
    "DEFAULT_PRESET",
    "VERL_KEYS",
    "RewardSettings",
    "build_engine",
    "settings_conflict",
    "shared_engine",
]

DEFAULT_PRESET = "deepicd-r1"
"""The preset used when neither ``preset`` nor ``config`` is given: the published reward."""

VERL_KEYS = frozenset({"reward_router_address", "reward_model_tokenizer"})
"""Keyword arguments verl itself adds to reward-function calls; they are not settings."""


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be greater than 0")


def _not_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be at least 0")


@attrs.frozen
class RewardSettings:
    """What verl's ``reward_kwargs`` may hold.

    Attributes:
        preset: a shipped preset (``"deepicd-r1"``, ``"default"``); the default when
            ``config`` is not given either.
        config: path of a reward configuration file (TOML, YAML, JSON); exclusive with
            ``preset`` (a file can name a preset itself).
        judge_base_url: adds the ``judge`` component with this OpenAI-compatible
            endpoint, scaled as in the published recipe (+0.8·s, −0.8 without a valid
            code or trace; failures abstain). Needs ``judge_model``.
        judge_model: the judge's model name, as the server's ``/v1/models`` lists it.
        note_key: the key of ``extra_info`` that holds the admission note.
        max_batch_size: the reward manager scores at most this many samples at once.
        max_wait_ms: how long the reward manager waits for more samples after the
            first one of a batch arrives.
        time_limit: seconds each reward component may spend on one batch (the
            configuration's ``[limits] time_limit``; ``false``: no limit; None: what
            the configuration or preset says, by default 600 s).

    >>> RewardSettings.from_kwargs({"preset": "default"}).engine_config()
    {'preset': 'default'}
    >>> RewardSettings.from_kwargs({"presett": "default"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    icdreward.errors.ConfigError: reward_kwargs: field 'presett': unknown parameter; did you ...
    """

    preset: str | None = None
    config: str | None = None
    judge_base_url: str | None = None
    judge_model: str | None = None
    note_key: str = "note"
    max_batch_size: int = attrs.field(default=512, validator=_positive)
    max_wait_ms: float = attrs.field(default=10.0, validator=_not_negative)
    time_limit: float | bool | None = None

    @classmethod
    def from_kwargs(
        cls, kwargs: Mapping[str, Any], *, source: str = "reward_kwargs"
    ) -> RewardSettings:
        """Check ``kwargs`` (verl's ``reward_kwargs``; verl's own extra keys are ignored).

        Raises:
            ConfigError: an unknown key, a value of the wrong type, ``preset`` together
                with ``config``, or only one of the two judge keys.
        """
        table = {str(k): _plain(v) for k, v in kwargs.items() if k not in VERL_KEYS}
        settings: RewardSettings = structure_params(cls, table, source=source, field="")
        problem = settings_conflict(
            settings.preset, settings.config, settings.judge_base_url, settings.judge_model
        )
        if problem is not None:
            raise ConfigError(source, *problem)
        return settings

    def engine_config(self) -> dict[str, Any]:
        """The engine configuration these settings describe (a config file is read).

        Raises:
            ConfigError: the configuration file cannot be read or parsed.
        """
        if self.config is not None:
            config = read_config_file(Path(self.config))
        else:
            config = {"preset": self.preset or DEFAULT_PRESET}
        if self.judge_base_url is not None:
            judge = {
                "base_url": self.judge_base_url,
                "model": self.judge_model,
                # The published recipe's scaling: +0.8·s for s in 1..5, and 0.8 x -1
                # where there is no valid code or no trace to judge.
                "scale": 0.8,
                "mapping": "raw",
                "not_sent": -1.0,
                "on_failure": "abstain",
            }
            config = merge_config(config, {"rewards": {"judge": judge}})
        if self.time_limit is not None:
            # Checked with the rest of the configuration, with its messages.
            config = merge_config(config, {"limits": {"time_limit": self.time_limit}})
        return config

    @property
    def source(self) -> str:
        """Where the engine configuration comes from, as error messages name it."""
        return self.config if self.config is not None else "reward_kwargs"


def _plain(value: Any) -> Any:
    # verl hands over OmegaConf containers; the checks expect plain Python values.
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - verl always brings omegaconf
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def settings_conflict(
    preset: str | None,
    config: str | None,
    judge_base_url: str | None,
    judge_model: str | None,
) -> tuple[str, Any, str] | None:
    """The first settings that do not go together, as ``(field, value, message)``.

    Shared by :class:`RewardSettings` and the recipe's options, so that both refuse
    the same combinations with the same words.
    """
    if preset is not None and config is not None:
        return (
            "config",
            config,
            f"give either preset ({preset!r}) or config, not both "
            "(a reward configuration file may name its preset itself)",
        )
    if (judge_base_url is None) != (judge_model is None):
        given, missing = (
            ("judge_base_url", "judge_model")
            if judge_model is None
            else ("judge_model", "judge_base_url")
        )
        return missing, None, f"{given} is set, so {missing} is needed too"
    return None


_engines: dict[RewardSettings, RewardEngine] = {}
_engines_lock = threading.Lock()


def shared_engine(settings: RewardSettings) -> RewardEngine:
    """The process's engine for ``settings``, built on first use.

    verl calls the reward function from a pool of threads and builds one reward
    manager per worker; building an engine loads plugins and the code set (about
    0.3 s), so every caller in a process shares one per distinct settings.

    Raises:
        ConfigError: the configuration is invalid.
    """
    with _engines_lock:
        engine = _engines.get(settings)
        if engine is None:
            engine = build_engine(settings)
            _engines[settings] = engine
        return engine


def build_engine(settings: RewardSettings) -> RewardEngine:
    """A new engine for ``settings`` (:func:`shared_engine` keeps one per process).

    Raises:
        ConfigError: the configuration is invalid (an unknown component or parameter too).
    """
    return RewardEngine(load_config(settings.engine_config(), source=settings.source))
