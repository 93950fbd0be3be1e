"""The DeepICD-R1-7B GRPO launch with verl 0.9 on one node of 4 GPUs.

:func:`overrides` writes the Hydra overrides for ``python -m verl.trainer.main_ppo``,
:func:`command` the whole command line, and :func:`compose` composes verl's own
``ppo_trainer`` configuration from them and runs verl's ``validate_config`` on it, as
``main_ppo`` does before it starts Ray, so a dry run catches a misspelt key or batch
sizes that do not divide, on CPU, in seconds. From the shell::

    python -m icdreward_verl.recipe --model Qwen/Qwen2.5-7B-Instruct \\
        --train data/train.parquet --val data/val.parquet --output runs/deepicd-r1 \\
        [--judge-url http://127.0.0.1:8001/v1 --judge-model meta-llama/Llama-3.1-8B-Instruct] \\
        [--dry-run] [-- extra Hydra overrides]

The model card's hyperparameters and the verl 0.9.1 keys that carry them
(:data:`CARD_SETTINGS`; batch sizes are in verl's units)::

    GRPO                        algorithm.adv_estimator=grpo
    base Qwen2.5-7B-Instruct    actor_rollout_ref.model.path=<--model>
    train batch 64              data.train_batch_size=64
                                  (prompts per step; x n = 512 responses)
    PPO mini-batch 64           actor_rollout_ref.actor.ppo_mini_batch_size=64
                                  (prompts: one update of 512 responses per step)
    micro-batch per GPU 16      actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16
                                and, for the log-prob passes,
                                actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16
                                actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16
    lr 1e-6                     actor_rollout_ref.actor.optim.lr=1e-06
    warmup 80 steps             actor_rollout_ref.actor.optim.lr_warmup_steps=80
                                  (then verl's default constant schedule)
    1 epoch                     trainer.total_epochs=1
    prompt <= 2048 tokens       data.max_prompt_length=2048
                                data.filter_overlong_prompts=true
                                data.truncation=error
                                  (a longer prompt is dropped when the data loads, never cut)
    response <= 1024 tokens     data.max_response_length=1024
    rollout vLLM                actor_rollout_ref.rollout.name=vllm
    n = 8                       actor_rollout_ref.rollout.n=8
    temperature 0.9             actor_rollout_ref.rollout.temperature=0.9
    top-k off                   actor_rollout_ref.rollout.top_k=-1
    bf16                        actor_rollout_ref.rollout.dtype=bfloat16
                                actor_rollout_ref.actor.fsdp_config.dtype=bfloat16
                                  (FSDP keeps fp32 master weights: verl's model_dtype default)
    tensor parallel 1           actor_rollout_ref.rollout.tensor_model_parallel_size=1
    GPU memory utilization 0.4  actor_rollout_ref.rollout.gpu_memory_utilization=0.4
    entropy coefficient 0.001   actor_rollout_ref.actor.entropy_coeff=0.001
    KL controller coef. 0.001   algorithm.kl_ctrl.kl_coef=0.001
                                algorithm.use_kl_in_reward=false
                                  (verl's default: the coefficient is set but inert)
    KL loss off                 actor_rollout_ref.actor.use_kl_loss=false
                                  (so verl builds no reference model)
    gradient checkpointing on   actor_rollout_ref.model.enable_gradient_checkpointing=true
    torch compile on            actor_rollout_ref.actor.use_torch_compile=true
                                actor_rollout_ref.actor.fsdp_config.use_torch_compile=true
                                  (0.9's FSDP engine reads the second)
    no FSDP param offload       actor_rollout_ref.actor.fsdp_config.param_offload=false
                                actor_rollout_ref.ref.fsdp_config.param_offload=false
    no optimizer offload        actor_rollout_ref.actor.fsdp_config.optimizer_offload=false
    4 GPUs, 1 node              trainer.n_gpus_per_node=<--n-gpus, 4>
                                trainer.nnodes=<--nnodes, 1>

Not on the card, chosen here: ``trainer.save_freq`` and ``trainer.test_freq`` (50 steps:
verl saves nothing at all with its default -1), ``trainer.logger`` (``["console"]``),
the project and experiment names, ``trainer.default_local_dir`` (``--output``).

The reward is icdreward's batching reward manager for verl's reward loop, set with the
keys verl 0.9's ``main_ppo`` reads (:data:`REWARD_MANAGER_OVERRIDES`) and its settings
under ``reward.reward_kwargs`` (``preset``, or ``config``, and ``judge_base_url`` with
``judge_model``). The legacy ``custom_reward_function.*`` and
``reward_model.reward_manager`` keys still compose in 0.9 but ``main_ppo`` ignores
them; the recipe never writes them and rejects them among the extra overrides.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import attrs

from icdreward.errors import ConfigError
from icdreward_verl import _recipe_fields as fields
from icdreward_verl._recipe_compose import RecipeError, compose
from icdreward_verl._recipe_hydra import HydraValue, override
from icdreward_verl._recipe_preflight import preflight
from icdreward_verl._recipe_report import report, shell_lines
from icdreward_verl._settings import DEFAULT_PRESET, settings_conflict

__all__ = [
    "CARD_SETTINGS",
    "DEFAULT_PRESET",
    "REWARD_MANAGER_OVERRIDES",
    "REWARD_WORKERS",
    "SAMPLER_OVERRIDES",
    "CardSetting",
    "RecipeError",
    "RecipeOptions",
    "command",
    "compose",
    "main",
    "overrides",
]

REWARD_WORKERS = 2
"""verl's reward-loop workers (its default is 8). The rollout sends each response to
a random worker: fewer workers gather bigger batches, and two score far more responses
per second than a GRPO step produces."""

REWARD_MANAGER_OVERRIDES: tuple[str, ...] = (
    "reward.reward_manager.source=importlib",
    "reward.reward_manager.name=IcdRewardManager",
    "reward.reward_manager.module.path=pkg://icdreward_verl.reward_manager",
)
"""How verl 0.9's reward loop finds :class:`icdreward_verl.reward_manager.IcdRewardManager`."""

SAMPLER_OVERRIDES: tuple[str, ...] = (
    "trainer.v1.sampler.custom_sampler.path=pkg://icdreward_verl.sampler",
    "trainer.v1.sampler.custom_sampler.name=IcdRewardReplayBuffer",
)
"""verl's sync replay buffer plus per-step ``icdreward/<key>`` metrics
(:mod:`icdreward_verl.sampler`). With an async ``trainer.v1.trainer_mode`` override
``...custom_sampler.name=IcdRewardReplayBufferAsync``; ``...custom_sampler.path=null``
restores verl's own buffer (and DAPO's group filter)."""


@attrs.frozen
class CardSetting:
    """One model-card hyperparameter at the verl 0.9.1 key that carries it.

    Attributes:
        card: the model card's wording.
        key: the dotted verl configuration key.
        value: the value set there.
    """

    card: str
    key: str
    value: str | int | float | bool


_A = "actor_rollout_ref.actor."
_R = "actor_rollout_ref.rollout."

CARD_SETTINGS: tuple[CardSetting, ...] = (
    CardSetting("GRPO", "algorithm.adv_estimator", "grpo"),
    CardSetting("KL controller coefficient 0.001", "algorithm.kl_ctrl.kl_coef", 0.001),
    CardSetting("KL controller coefficient 0.001", "algorithm.use_kl_in_reward", False),
    CardSetting("train batch 64", "data.train_batch_size", 64),
    CardSetting("prompt <= 2048 tokens", "data.max_prompt_length", 2048),
    CardSetting("prompt <= 2048 tokens", "data.filter_overlong_prompts", True),
    CardSetting("prompt <= 2048 tokens", "data.truncation", "error"),
    CardSetting("response <= 1024 tokens", "data.max_response_length", 1024),
    CardSetting(
        "gradient checkpointing on", "actor_rollout_ref.model.enable_gradient_checkpointing", True
    ),
    CardSetting("lr 1e-6", _A + "optim.lr", 1e-6),
    CardSetting("warmup 80 steps", _A + "optim.lr_warmup_steps", 80),
    CardSetting("PPO mini-batch 64", _A + "ppo_mini_batch_size", 64),
    CardSetting("micro-batch per GPU 16", _A + "ppo_micro_batch_size_per_gpu", 16),
    CardSetting("entropy coefficient 0.001", _A + "entropy_coeff", 0.001),
    CardSetting("KL loss off", _A + "use_kl_loss", False),
    CardSetting("torch compile on", _A + "use_torch_compile", True),
    CardSetting("torch compile on", _A + "fsdp_config.use_torch_compile", True),
    CardSetting("bf16", _A + "fsdp_config.dtype", "bfloat16"),
    CardSetting("no FSDP param offload", _A + "fsdp_config.param_offload", False),
    CardSetting("no optimizer offload", _A + "fsdp_config.optimizer_offload", False),
    CardSetting("rollout vLLM", _R + "name", "vllm"),
    CardSetting("n = 8", _R + "n", 8),
    CardSetting("temperature 0.9", _R + "temperature", 0.9),
    CardSetting("top-k off", _R + "top_k", -1),
    CardSetting("bf16", _R + "dtype", "bfloat16"),
    CardSetting("tensor parallel 1", _R + "tensor_model_parallel_size", 1),
    CardSetting("GPU memory utilization 0.4", _R + "gpu_memory_utilization", 0.4),
    CardSetting("micro-batch per GPU 16", _R + "log_prob_micro_batch_size_per_gpu", 16),
    CardSetting(
        "micro-batch per GPU 16", "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu", 16
    ),
    CardSetting("no FSDP param offload", "actor_rollout_ref.ref.fsdp_config.param_offload", False),
    CardSetting("1 epoch", "trainer.total_epochs", 1),
)
"""The fixed DeepICD-R1-7B hyperparameters, in the order :func:`overrides` writes them.

The model path and the GPU counts come from :class:`RecipeOptions`.
"""

# What the dry run lists under "hyperparameters": the card's keys, then the options'.
_REPORTED_KEYS = (
    *dict.fromkeys(setting.key for setting in CARD_SETTINGS),
    "actor_rollout_ref.model.path",
    "trainer.n_gpus_per_node",
    "trainer.nnodes",
)


@attrs.frozen
class RecipeOptions:
    """What varies between DeepICD-R1 GRPO launches; everything else is the model card.

    Local paths are made absolute (Ray workers need not share the launcher's working
    directory); ``scheme://`` paths are kept as they are. Every check raises
    :class:`RecipeError` naming the option and its value.

    Attributes:
        model: the base model: a local directory, or a hub id such as
            ``"Qwen/Qwen2.5-7B-Instruct"`` (kept as given when no such directory exists).
        train_files: the training data (``icdreward prepare``'s ``train.parquet``); one
            path or several.
        val_files: the validation data (``val.parquet``); one path or several.
        output_dir: checkpoints go here (``trainer.default_local_dir``).
        n_gpus: GPUs per node (``trainer.n_gpus_per_node``); the card used 4.
        nnodes: nodes (``trainer.nnodes``); the card used 1.
        preset: an icdreward reward preset; ``None`` means :data:`DEFAULT_PRESET` unless
            ``config`` is given. Exclusive with ``config``.
        config: an icdreward reward configuration file (TOML, YAML, JSON).
        judge_base_url: the OpenAI-compatible endpoint of the LLM judge, e.g.
            ``"http://127.0.0.1:8001/v1"``; needs ``judge_model``. Without it the run has
            no judge.
        judge_model: the judge's model name as its server lists it.
        project_name, experiment_name: ``trainer.project_name``,
            ``trainer.experiment_name``.
        logger: verl's logging backends (``trainer.logger``).
        save_freq: steps between checkpoints, -1 for none (the last step is always
            saved when it is positive).
        test_freq: steps between validations, -1 for none.
        extra_overrides: further Hydra overrides, applied last (so they win).
    """

    model: str = attrs.field(converter=fields.model_path, validator=fields.check_text)
    train_files: tuple[str, ...] = attrs.field(converter=fields.files, validator=fields.check_files)
    val_files: tuple[str, ...] = attrs.field(converter=fields.files, validator=fields.check_files)
    output_dir: str = attrs.field(converter=fields.absolute, validator=fields.check_text)
    n_gpus: int = attrs.field(default=4, validator=fields.check_count)
    nnodes: int = attrs.field(default=1, validator=fields.check_count)
    preset: str | None = attrs.field(default=None, validator=fields.check_optional_text)
    config: str | None = attrs.field(
        default=None, converter=fields.optional_absolute, validator=fields.check_optional_text
    )
    judge_base_url: str | None = attrs.field(default=None, validator=fields.check_optional_text)
    judge_model: str | None = attrs.field(default=None, validator=fields.check_optional_text)
    project_name: str = attrs.field(default="icdreward", validator=fields.check_text)
    experiment_name: str = attrs.field(default="deepicd-r1-7b-grpo", validator=fields.check_text)
    logger: tuple[str, ...] = attrs.field(
        default=("console",), converter=fields.tuple_of_str, validator=fields.check_logger
    )
    save_freq: int = attrs.field(default=50, validator=fields.check_frequency)
    test_freq: int = attrs.field(default=50, validator=fields.check_frequency)
    extra_overrides: tuple[str, ...] = attrs.field(
        default=(), converter=fields.tuple_of_str, validator=fields.check_extra
    )

    def __attrs_post_init__(self) -> None:
        problem = settings_conflict(self.preset, self.config, self.judge_base_url, self.judge_model)
        if problem is not None:
            raise fields.fail(*problem)
        if self.preset is not None:
            from icdreward.presets import available_presets

            if self.preset not in available_presets():
                names = ", ".join(available_presets())
                raise fields.fail(
                    "preset", self.preset, f"unknown reward preset (available: {names})"
                )
        if self.judge_base_url is not None and not self.judge_base_url.startswith(
            ("http://", "https://")
        ):
            raise fields.fail(
                "judge_base_url",
                self.judge_base_url,
                "must be an http:// or https:// URL, e.g. http://127.0.0.1:8001/v1",
            )

    @property
    def reward_preset(self) -> str | None:
        """The preset the reward uses: ``preset``, or the default when no ``config``."""
        if self.preset is not None:
            return self.preset
        return DEFAULT_PRESET if self.config is None else None


def _files_value(files: tuple[str, ...]) -> HydraValue:
    return files[0] if len(files) == 1 else list(files)


def overrides(options: RecipeOptions) -> list[str]:
    """The Hydra overrides of ``verl.trainer.main_ppo`` for this run, extra ones last.

    Values are written in Hydra's override grammar (a path with spaces or commas is
    quoted, ``trainer.logger`` is a list), each one an element of ``argv``: no shell
    quoting is involved.
    """
    result = [
        override("data.train_files", _files_value(options.train_files)),
        override("data.val_files", _files_value(options.val_files)),
        override("actor_rollout_ref.model.path", options.model),
    ]
    result += [override(setting.key, setting.value) for setting in CARD_SETTINGS]
    result += [
        override("trainer.n_gpus_per_node", options.n_gpus),
        override("trainer.nnodes", options.nnodes),
        override("trainer.project_name", options.project_name),
        override("trainer.experiment_name", options.experiment_name),
        override("trainer.logger", list(options.logger)),
        override("trainer.default_local_dir", options.output_dir),
        override("trainer.save_freq", options.save_freq),
        override("trainer.test_freq", options.test_freq),
        override("reward.num_workers", REWARD_WORKERS),
        *REWARD_MANAGER_OVERRIDES,
        *SAMPLER_OVERRIDES,
    ]
    kwargs = "reward.reward_kwargs."
    if options.config is not None:
        result.append(override(kwargs + "config", options.config, add=True))
    else:
        result.append(override(kwargs + "preset", options.reward_preset, add=True))
    if options.judge_base_url is not None:
        result.append(override(kwargs + "judge_base_url", options.judge_base_url, add=True))
        result.append(override(kwargs + "judge_model", options.judge_model, add=True))
    result += options.extra_overrides
    return result


def command(options: RecipeOptions) -> list[str]:
    """``[sys.executable, "-m", "verl.trainer.main_ppo", *overrides(options)]``."""
    return [sys.executable, "-m", "verl.trainer.main_ppo", *overrides(options)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m icdreward_verl.recipe",
        description="Launch the DeepICD-R1-7B GRPO run with verl 0.9 (the model card's "
        "hyperparameters, icdreward's reward manager). Hydra overrides after '--' are "
        "applied last.",
    )
    parser.add_argument(
        "--model", required=True, metavar="PATH_OR_ID", help="base model: local directory or hub id"
    )
    parser.add_argument(
        "--train", required=True, nargs="+", metavar="FILE", help="training parquet file(s)"
    )
    parser.add_argument(
        "--val", required=True, nargs="+", metavar="FILE", help="validation parquet file(s)"
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="checkpoint directory")
    parser.add_argument(
        "--n-gpus", type=int, default=4, metavar="N", help="GPUs per node (default: 4)"
    )
    parser.add_argument("--nnodes", type=int, default=1, metavar="N", help="nodes (default: 1)")
    reward = parser.add_mutually_exclusive_group()
    reward.add_argument(
        "--preset", metavar="NAME", help=f"reward preset (default: {DEFAULT_PRESET})"
    )
    reward.add_argument("--config", metavar="FILE", help="icdreward reward configuration file")
    parser.add_argument(
        "--judge-url", metavar="URL", help="LLM judge endpoint, e.g. http://127.0.0.1:8001/v1"
    )
    parser.add_argument("--judge-model", metavar="NAME", help="the judge's model name")
    parser.add_argument("--project-name", default="icdreward", metavar="NAME")
    parser.add_argument("--experiment-name", default="deepicd-r1-7b-grpo", metavar="NAME")
    parser.add_argument(
        "--logger", nargs="+", default=["console"], metavar="NAME", help="default: console"
    )
    parser.add_argument(
        "--save-freq", type=int, default=50, metavar="STEPS", help="steps between checkpoints"
    )
    parser.add_argument(
        "--test-freq", type=int, default=50, metavar="STEPS", help="steps between validations"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="compose and validate verl's configuration, print it and exit (no GPU needed)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for a configuration error).

    Without ``--dry-run`` the verl command is printed and then replaces this process
    (``os.execv``), after the same checks as the dry run pass.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, extra = args[:cut], args[cut + 1 :]
    ns = _parser().parse_args(args)
    try:
        options = RecipeOptions(
            model=ns.model,
            train_files=ns.train,
            val_files=ns.val,
            output_dir=ns.output,
            n_gpus=ns.n_gpus,
            nnodes=ns.nnodes,
            preset=ns.preset,
            config=ns.config,
            judge_base_url=ns.judge_url,
            judge_model=ns.judge_model,
            project_name=ns.project_name,
            experiment_name=ns.experiment_name,
            logger=ns.logger,
            save_freq=ns.save_freq,
            test_freq=ns.test_freq,
            extra_overrides=extra,
        )
        argv_verl = command(options)
        config = compose(argv_verl[3:])
        notes = preflight(config, launching=not ns.dry_run)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if ns.dry_run:
        print(report(config, argv_verl, _REPORTED_KEYS), end="")
        return 0
    print(shell_lines(argv_verl), flush=True)
    sys.stderr.flush()
    os.execv(argv_verl[0], argv_verl)
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
