"""icdreward as verl's custom reward function.

Point verl at it with a package path or a file path; the reward settings travel as
reward keyword arguments (see :class:`~icdreward_verl.RewardSettings`)::

    reward.custom_reward_function.path=pkg://icdreward_verl.reward_function
    # or the file: reward.custom_reward_function.path=/abs/path/to/reward_function.py
    +reward.custom_reward_function.reward_kwargs.preset=deepicd-r1

verl 0.9 calls :func:`compute_score` once per sample, from a pool of threads; verl
before 0.7 (its ``batch`` reward manager) calls the same name with lists
(``data_sources=``, ``solution_strs=``, ...), which :func:`compute_score` accepts too
(or use :func:`compute_score_batch`). Either way each sample gets a dict with
``"score"`` and the same numeric keys (the components and flags), which verl logs as
``reward_extra_info``. For throughput, prefer the batching reward manager
(:mod:`icdreward_verl.reward_manager`): it scores whole batches at once.

>>> out = compute_score(
...     "icd10cm", "Disc disorder with radiculopathy.</think><diagnosis>M51.16</diagnosis>",
...     ["M5116"], {"note": "..."})
>>> out["score"], out["exact_match"], out["parse_failure"]
(76.0, 1.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from icdreward_verl._records import note_of, sample_scores
from icdreward_verl._settings import RewardSettings, shared_engine

__all__ = ["compute_score", "compute_score_batch"]


def compute_score(
    data_source: object = None,
    solution_str: object = None,
    ground_truth: object = None,
    extra_info: Mapping[str, Any] | None = None,
    *,
    data_sources: Sequence[object] | None = None,
    solution_strs: Sequence[object] | None = None,
    ground_truths: Sequence[object] | None = None,
    extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
    **reward_kwargs: Any,
) -> Any:
    """Score one sample (verl 0.9) or, given ``solution_strs``, a batch (verl < 0.7).

    Args:
        data_source: the row's ``data_source`` (not used for scoring).
        solution_str: the decoded response: the text after the prompt's opened ``<think>``.
        ground_truth: ``reward_model.ground_truth``: one code or a list (primary first).
        extra_info: the row's ``extra_info``; its ``note`` (see ``note_key``) feeds the
            grounding and judge rewards.
        data_sources, solution_strs, ground_truths, extra_infos: the batched call.
        reward_kwargs: :class:`~icdreward_verl.RewardSettings` fields.

    Returns:
        ``{"score": float, <component>: float, ..., "parse_failure": 0/1,
        "invalid_code": 0/1, "gold_missing": 0/1, "failed": n}``, or a list of those
        for the batched call. Never NaN; a malformed response is a low score.

    Raises:
        ConfigError: ``reward_kwargs`` are invalid (on the first call, not per sample).
    """
    if solution_strs is not None:
        return compute_score_batch(
            data_sources=data_sources,
            solution_strs=solution_strs,
            ground_truths=ground_truths,
            extra_infos=extra_infos,
            **reward_kwargs,
        )
    return compute_score_batch(
        data_sources=[data_source],
        solution_strs=[solution_str],
        ground_truths=[ground_truth],
        extra_infos=[extra_info],
        **reward_kwargs,
    )[0]


def compute_score_batch(
    data_sources: Sequence[object] | None = None,
    solution_strs: Sequence[object] = (),
    ground_truths: Sequence[object] | None = None,
    extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
    **reward_kwargs: Any,
) -> list[dict[str, float]]:
    """Score a batch: the call of verl's ``batch`` reward manager (verl < 0.7).

    Raises:
        ValueError: the lists differ in length.
        ConfigError: ``reward_kwargs`` are invalid.
    """
    settings = _settings(reward_kwargs)
    engine = shared_engine(settings)
    completions = list(solution_strs)
    size = len(completions)
    golds = list(ground_truths) if ground_truths is not None else [None] * size
    infos = list(extra_infos) if extra_infos is not None else [None] * size
    if len(golds) != size or len(infos) != size:
        raise ValueError(
            f"{size} solution_strs, {len(golds)} ground_truths and {len(infos)} extra_infos"
        )
    notes = [note_of(info, settings.note_key) for info in infos]
    return sample_scores(engine.score(completions, golds, notes=notes))


_SETTINGS_MEMO: dict[tuple[tuple[str, Any], ...], RewardSettings] = {}


def _settings(reward_kwargs: dict[str, Any]) -> RewardSettings:
    # Called once per sample with the same few kwargs: check them once.
    try:
        key = tuple(sorted(reward_kwargs.items()))
        hash(key)
    except TypeError:  # an unhashable value (verl's tokenizer object): no memo
        return RewardSettings.from_kwargs(reward_kwargs)
    settings = _SETTINGS_MEMO.get(key)
    if settings is None:
        settings = _SETTINGS_MEMO.setdefault(key, RewardSettings.from_kwargs(reward_kwargs))
    return settings
