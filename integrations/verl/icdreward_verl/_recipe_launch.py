"""Dry-run checks that the run would start and train: trainer imports, data sizes, samplers.

``main_ppo`` imports the trainer only inside its Ray task runner, so a missing module
(verl 0.9's default v1 trainer needs ``transfer_queue``, which plain ``verl`` does not
install) fails minutes into a launch; a training set smaller than one batch trains
zero steps (verl drops the incomplete last batch), and an empty validation file fails
at the first validation. The checks here find all of that in the launching process.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icdreward_verl._recipe_compose import RecipeError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from icdreward.engine import RewardEngine

__all__ = [
    "PROVIDERS",
    "SLOW_FIRST_BATCH_S",
    "check_data",
    "check_sampler",
    "check_trainer",
    "first_batch_note",
]

PROVIDERS = {
    "transfer_queue": "the 'transferqueue' package (verl's verl-core extra)",
    "uvicorn": "the 'uvicorn' package",
    "fastapi": "the 'fastapi' package",
    "cachetools": "the 'cachetools' package",
}
"""Modules verl's trainer imports that plain ``verl`` does not install, and their package."""

SLOW_FIRST_BATCH_S = 0.5
"""A warm-up longer than this, paid by the first batch, is worth a note."""

_SAMPLER_MODULE = "pkg://icdreward_verl.sampler"


def check_trainer(config: DictConfig) -> str:
    """Import the trainer class ``main_ppo`` would run; returns its qualified name.

    ``trainer.use_v1=true`` (the default): ``transfer_queue`` and
    ``verl.trainer.ppo.v1.get_trainer_cls(trainer.v1.trainer_mode)``, as
    ``TaskRunnerV1.run`` does; otherwise the legacy ``main_ppo_v0.TaskRunner``.

    Raises:
        RecipeError: a module is missing (the message names it and the package that
            provides it) or the trainer mode is unknown.
    """
    use_v1 = bool(config.trainer.get("use_v1", True))
    mode = str(config.trainer.v1.trainer_mode) if use_v1 else ""
    try:
        with warnings.catch_warnings():
            # verl lists every training engine it could not import (megatron, ...).
            warnings.filterwarnings("ignore", message=".*engine is not available")
            cls: Any = _import_trainer(use_v1, mode)
    except ModuleNotFoundError as exc:
        missing = (exc.name or str(exc)).split(".")[0]
        provider = PROVIDERS.get(missing, f"the package that provides {missing!r}")
        trainer = f"v1 trainer ({mode})" if use_v1 else "legacy trainer"
        raise RecipeError(
            f"verl's {trainer} cannot be imported: no module named {missing!r}; install "
            f"{provider}, e.g. pip install 'icdreward[verl]'",
            field="trainer.use_v1",
            value=use_v1,
        ) from exc
    except ValueError as exc:  # get_trainer_cls: an unknown mode
        raise RecipeError(
            f"trainer.v1.trainer_mode: {exc}", field="trainer.v1.trainer_mode", value=mode
        ) from exc
    name = getattr(cls, "__qualname__", None) or type(cls).__name__
    return f"{getattr(cls, '__module__', '?')}.{name}"


def _import_trainer(use_v1: bool, mode: str) -> Any:
    if use_v1:
        import transfer_queue  # noqa: F401  (TaskRunnerV1.run imports it first)
        from verl.trainer.ppo.v1 import get_trainer_cls

        return get_trainer_cls(mode)
    from verl.trainer.main_ppo_v0 import TaskRunner

    return TaskRunner


def check_sampler(config: DictConfig) -> None:
    """icdreward's sampler: the class that fits the trainer mode, and no DAPO filter.

    Raises:
        RecipeError: the sync buffer with an async mode (or the reverse), or
            ``algorithm.filter_groups.enable=true``, which verl does not pass to a
            custom sampler (it would be silently off).
    """
    custom = config.trainer.v1.sampler.get("custom_sampler") or {}
    if custom.get("path") != _SAMPLER_MODULE or not bool(config.trainer.get("use_v1", True)):
        return
    mode = str(config.trainer.v1.trainer_mode)
    want = "IcdRewardReplayBuffer" if mode == "sync" else "IcdRewardReplayBufferAsync"
    if custom.get("name") != want:
        raise RecipeError(
            f"trainer.v1.sampler.custom_sampler.name: {custom.get('name')!r} does not fit "
            f"trainer.v1.trainer_mode={mode}; use {want}",
            field="trainer.v1.sampler.custom_sampler.name",
            value=custom.get("name"),
        )
    filter_groups = config.algorithm.get("filter_groups") or {}
    if bool(filter_groups.get("enable", False)):
        raise RecipeError(
            "algorithm.filter_groups.enable=true: verl gives a custom sampler no DAPO "
            "settings, so icdreward's sampler would train without the filter; drop the "
            "sampler (trainer.v1.sampler.custom_sampler.path=null) to use DAPO",
            field="algorithm.filter_groups.enable",
            value=True,
        )


def check_data(config: DictConfig) -> list[str]:
    """Row counts of the local parquet files against the batch size; returns notes.

    Raises:
        RecipeError: fewer training rows than ``data.train_batch_size`` (no step would
            run), or a validation file without rows while validation runs
            (``trainer.val_before_train`` or ``trainer.test_freq > 0``).
    """
    from omegaconf import OmegaConf

    notes: list[str] = []
    train = _rows(OmegaConf.select(config, "data.train_files"), notes)
    batch = int(config.data.train_batch_size)
    limit = config.data.get("train_max_samples", -1)
    if train is not None:
        files, rows = train
        if limit is not None and int(limit) > 0:
            rows = min(rows, int(limit))
        if rows < batch:
            raise RecipeError(
                f"data.train_files: {', '.join(files)} hold {rows} training rows, fewer than "
                f"one batch (data.train_batch_size={batch}): verl drops the incomplete batch "
                "and would train 0 steps",
                field="data.train_files",
                value=files[0],
            )
        if rows // batch < 2:
            notes.append(f"data.train_files: {rows} rows make {rows // batch} step per epoch")
    val = _rows(OmegaConf.select(config, "data.val_files"), notes, each=True)
    validates = bool(config.trainer.get("val_before_train", True)) or (
        int(config.trainer.get("test_freq", -1)) > 0
    )
    for path, rows in val[1] if val is not None else ():
        if rows:
            continue
        message = f"data.val_files: {path} has no rows"
        if validates:
            raise RecipeError(
                message + " and validation runs (trainer.val_before_train, "
                "trainer.test_freq); give a validation file with rows, or set "
                "trainer.val_before_train=false trainer.test_freq=-1",
                field="data.val_files",
                value=path,
            )
        notes.append(message)
    return notes


def _rows(value: Any, notes: list[str], *, each: bool = False) -> Any:
    # (files, total rows), or with each=True (files, [(file, rows)]); None when no
    # local file could be counted (a remote path, a file not there yet).
    from omegaconf import ListConfig

    paths = [str(p) for p in (list(value) if isinstance(value, list | ListConfig) else [value])]
    counted: list[tuple[str, int]] = []
    for path in paths:
        local = Path(path).expanduser()
        if "://" in path or not local.is_file():
            continue
        try:
            import pyarrow.parquet as pq

            counted.append((path, int(pq.ParquetFile(local).metadata.num_rows)))
        except Exception as exc:
            notes.append(f"{path}: rows not counted ({type(exc).__name__}: {exc})")
    if not counted or (not each and len(counted) != len(paths)):
        return None
    files = [path for path, _ in counted]
    return (files, counted) if each else (files, sum(rows for _, rows in counted))


def first_batch_note(engine: RewardEngine, *, warmed_by_manager: bool) -> str | None:
    """Warm ``engine`` and say what the first batch would pay without a warm-up.

    ``warmed_by_manager``: the reward is :class:`~icdreward_verl.reward_manager.IcdRewardManager`,
    which warms its engine as verl builds it, so the first batch does not pay.
    """
    from icdreward_verl._warmup import warm_engine

    started = time.perf_counter()
    seconds = warm_engine(engine) or (time.perf_counter() - started)
    if seconds < SLOW_FIRST_BATCH_S:
        return None
    if warmed_by_manager:
        return (
            f"reward: the engine's warm-up takes {seconds:.1f} s; IcdRewardManager does it "
            "as each reward worker starts, not in the first step"
        )
    return (
        f"reward: the first batch on each reward worker would take {seconds:.1f} s more "
        "(indexes built on first use); IcdRewardManager warms them at start-up"
    )
