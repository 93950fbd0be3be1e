"""Checks of a composed verl configuration that verl itself makes only once Ray is up.

``validate_config`` checks batch sizes; the trainer finds a missing data file, an
unknown logger or a reward manager that does not import only after it has started
its workers, and the reward workers read the reward settings later still. The same
checks here take seconds and need no GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from icdreward_verl._recipe_compose import RecipeError
from icdreward_verl._recipe_launch import (
    check_data,
    check_sampler,
    check_trainer,
    first_batch_note,
)

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["preflight"]


def preflight(config: DictConfig, *, launching: bool) -> list[str]:
    """Check what verl would only find out after starting; return notes for the user.

    A local data file or model directory that does not exist is an error when
    ``launching`` and a note otherwise (a dry run may well precede the data).

    Raises:
        RecipeError: an interpolation that does not resolve, an unknown
            ``trainer.logger`` backend, a missing local file when
            launching, a reward manager that does not load as a verl
            ``RewardManagerBase``, a trainer class that does not import (a missing
            module), fewer training rows than one batch, an empty validation file
            while validation runs, or icdreward's sampler with the wrong trainer
            mode or with DAPO's group filter.
        ConfigError: icdreward's reward settings (``reward.reward_kwargs``) or the
            reward configuration they name are invalid.
    """
    from omegaconf import OmegaConf

    _check_resolves(config)
    loggers = config.trainer.get("logger")
    _check_loggers(OmegaConf.to_container(loggers) if OmegaConf.is_config(loggers) else loggers)
    notes: list[str] = []
    for key in ("data.train_files", "data.val_files", "actor_rollout_ref.model.path"):
        notes += _check_paths(key, OmegaConf.select(config, key), launching=launching)
    check_trainer(config)
    check_sampler(config)
    notes += check_data(config)
    notes += _check_reward(config)
    return notes


def _check_resolves(config: DictConfig) -> None:
    # verl's task runner prints the fully resolved configuration first thing.
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as exc:
        key = str(getattr(exc, "full_key", "") or "")
        raise RecipeError(
            f"verl's configuration does not resolve: {exc}", field=key, value=None
        ) from exc


def _check_loggers(loggers: Any) -> None:
    from verl.utils.tracking import Tracking

    for name in [loggers] if isinstance(loggers, str) else list(loggers or ()):
        if name not in Tracking.supported_backend:
            known = ", ".join(Tracking.supported_backend)
            raise RecipeError(
                f"trainer.logger: verl has no logging backend {name!r} (it has: {known})",
                field="trainer.logger",
                value=name,
            )


def _check_paths(key: str, value: Any, *, launching: bool) -> list[str]:
    from omegaconf import ListConfig

    paths = list(value) if isinstance(value, list | ListConfig) else [value]
    notes = []
    for path in map(str, paths):
        local = key != "actor_rollout_ref.model.path" or path.startswith(("/", ".", "~"))
        if "://" in path or not local or Path(path).expanduser().exists():
            continue
        if launching:
            raise RecipeError(f"{key}: no such file or directory: {path}", field=key, value=path)
        notes.append(f"{key}: {path} does not exist (yet)")
    return notes


def _check_reward(config: DictConfig) -> list[str]:
    from omegaconf import OmegaConf
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
    from verl.trainer.ppo.reward import resolve_reward_manager_cls

    manager = config.reward.reward_manager
    where = f"{manager.name!r} ({manager.source}: {manager.module.path})"
    try:
        cls = resolve_reward_manager_cls(config)
    except Exception as exc:
        raise RecipeError(
            f"reward.reward_manager: verl cannot load the reward manager {where}: {exc}",
            field="reward.reward_manager.module.path",
            value=manager.module.path,
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, RewardManagerBase)):
        raise RecipeError(
            f"reward.reward_manager: {where} is not a verl RewardManagerBase subclass",
            field="reward.reward_manager.name",
            value=manager.name,
        )
    if cls.__name__ != "IcdRewardManager":  # by pkg:// or by file path alike
        return _check_reward_function(config)
    from icdreward_verl import RewardSettings
    from icdreward_verl._settings import build_engine

    raw = config.reward.get("reward_kwargs")
    kwargs = OmegaConf.to_container(raw, resolve=True) if raw is not None else {}
    assert isinstance(kwargs, dict)
    settings = RewardSettings.from_kwargs(
        {str(key): value for key, value in kwargs.items()}, source="reward.reward_kwargs"
    )
    # Build the engine the reward workers will build: a component name or parameter
    # that does not exist is found only then. The manager warms it at start-up.
    build_engine(settings).close()
    return []


def _check_reward_function(config: DictConfig) -> list[str]:
    # icdreward's reward function under verl's own managers: nothing warms its engine,
    # so the first batch of each worker builds the indexes (say how long that takes).
    from omegaconf import OmegaConf

    function = config.reward.get("custom_reward_function") or {}
    if "icdreward_verl" not in str(function.get("path") or "").replace("/", "."):
        return []
    from icdreward_verl import RewardSettings
    from icdreward_verl._settings import build_engine

    raw = function.get("reward_kwargs")
    kwargs = OmegaConf.to_container(raw, resolve=True) if raw is not None else {}
    assert isinstance(kwargs, dict)
    settings = RewardSettings.from_kwargs(
        {str(key): value for key, value in kwargs.items()},
        source="reward.custom_reward_function.reward_kwargs",
    )
    engine = build_engine(settings)
    try:
        note = first_batch_note(engine, warmed_by_manager=False)
    finally:
        engine.close()
    return [note] if note else []
