"""The dry run's launch checks: the trainer imports, the data fills a batch, the sampler fits.

verl's configuration is composed by Hydra from verl's own files; the trainer class is
imported for real. A missing module is simulated by hiding it from ``import`` (a
``None`` entry in ``sys.modules``), the way a plain ``pip install verl`` lacks it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

from icdreward_verl import recipe
from icdreward_verl._recipe_launch import check_data, check_sampler, check_trainer
from icdreward_verl.recipe import RecipeError, RecipeOptions

MODEL = "Qwen/Qwen2.5-7B-Instruct"


def write_rows(path: Path, rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"data_source": ["icdreward/icd10cm"] * rows}), path)
    return path


def compose(tmp_path: Path, train: int, val: int, *extra: str) -> DictConfig:
    options = RecipeOptions(
        MODEL,
        write_rows(tmp_path / "train.parquet", train),
        write_rows(tmp_path / "val.parquet", val),
        tmp_path / "out",
        extra_overrides=extra,
    )
    return recipe.compose(recipe.overrides(options))


def test_the_default_trainer_class_is_imported(tmp_path: Path) -> None:
    config = compose(tmp_path, 64, 4)
    assert check_trainer(config) == "verl.trainer.ppo.v1.trainer_sync.PPOTrainerSync"


def test_a_missing_transfer_queue_is_named_with_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = compose(tmp_path, 64, 4)
    monkeypatch.setitem(sys.modules, "transfer_queue", None)  # as plain `pip install verl`
    with pytest.raises(RecipeError) as caught:
        check_trainer(config)
    message = str(caught.value)
    assert "no module named 'transfer_queue'" in message
    assert "'transferqueue'" in message and "icdreward[verl]" in message


def test_the_dry_run_fails_without_transfer_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    train = write_rows(tmp_path / "train.parquet", 64)
    val = write_rows(tmp_path / "val.parquet", 4)
    monkeypatch.setitem(sys.modules, "transfer_queue", None)
    argv = ["--dry-run", "--model", MODEL, "--train", str(train), "--val", str(val)]
    assert recipe.main([*argv, "--output", str(tmp_path / "o")]) == 2
    assert "no module named 'transfer_queue'" in capsys.readouterr().err


def test_an_unknown_trainer_mode_is_named(tmp_path: Path) -> None:
    config = compose(tmp_path, 64, 4)
    config.trainer.v1.trainer_mode = "turbo"
    with pytest.raises(RecipeError, match=r"trainer_mode: Unknown trainer 'turbo'"):
        check_trainer(config)


def test_fewer_training_rows_than_one_batch_fail_naming_file_and_numbers(tmp_path: Path) -> None:
    config = compose(tmp_path, 2, 4)
    with pytest.raises(RecipeError) as caught:
        check_data(config)
    message = str(caught.value)
    assert str(tmp_path / "train.parquet") in message
    assert "2 training rows" in message and "data.train_batch_size=64" in message


def test_an_empty_validation_file_fails_while_validation_runs(tmp_path: Path) -> None:
    config = compose(tmp_path, 64, 0)
    with pytest.raises(RecipeError) as caught:
        check_data(config)
    assert f"{tmp_path / 'val.parquet'} has no rows" in str(caught.value)
    # Without validation it is only a note.
    quiet = compose(tmp_path, 64, 0, "trainer.val_before_train=false", "trainer.test_freq=-1")
    assert check_data(quiet) == [
        "data.train_files: 64 rows make 1 step per epoch",
        f"data.val_files: {tmp_path / 'val.parquet'} has no rows",
    ]


def test_enough_rows_pass_and_the_main_dry_run_reports_too_few(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_data(compose(tmp_path, 128, 4)) == []
    train = write_rows(tmp_path / "small.parquet", 2)
    argv = ["--dry-run", "--model", MODEL, "--train", str(train)]
    argv += ["--val", str(tmp_path / "val.parquet"), "--output", str(tmp_path / "o")]
    assert recipe.main(argv) == 2
    assert "hold 2 training rows, fewer than one batch" in capsys.readouterr().err


def test_the_recipe_sets_the_sampler_and_checks_it_fits(tmp_path: Path) -> None:
    config = compose(tmp_path, 64, 4)
    sampler = config.trainer.v1.sampler.custom_sampler
    assert (sampler.path, sampler.name) == ("pkg://icdreward_verl.sampler", "IcdRewardReplayBuffer")
    check_sampler(config)
    async_mode = compose(tmp_path, 64, 4, "trainer.v1.trainer_mode=colocate_async")
    with pytest.raises(RecipeError, match="use IcdRewardReplayBufferAsync"):
        check_sampler(async_mode)
    dapo = compose(
        tmp_path, 64, 4, "algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=acc"
    )
    with pytest.raises(RecipeError, match=r"custom_sampler\.path=null"):
        check_sampler(dapo)
    without = compose(tmp_path, 64, 4, "trainer.v1.sampler.custom_sampler.path=null")
    check_sampler(without)  # verl's own buffer: nothing to check


def test_the_reward_function_route_notes_a_slow_first_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from icdreward_verl import _recipe_launch
    from icdreward_verl._recipe_preflight import preflight

    # The code set (and its free-text index) is shared per process, so an earlier test
    # may have built it already: any warm-up counts as slow here.
    monkeypatch.setattr(_recipe_launch, "SLOW_FIRST_BATCH_S", -1.0)
    config = compose(
        tmp_path,
        64,
        4,
        "reward.reward_manager.source=register",
        "reward.reward_manager.name=naive",
        "reward.custom_reward_function.path=pkg://icdreward_verl.reward_function",
        "+reward.custom_reward_function.reward_kwargs.preset=default",
    )
    notes = preflight(config, launching=False)
    assert any("the first batch on each reward worker would take" in n for n in notes), notes
