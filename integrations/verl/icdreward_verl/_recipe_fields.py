"""Converters and checks of :class:`icdreward_verl.recipe.RecipeOptions` fields.

Each check raises :class:`~icdreward_verl.recipe.RecipeError` naming the option and its
value, so a wrong launch argument fails before anything of verl is imported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from icdreward_verl._recipe_compose import RecipeError
from icdreward_verl._recipe_hydra import override_key

__all__ = [
    "absolute",
    "check_count",
    "check_extra",
    "check_files",
    "check_frequency",
    "check_logger",
    "check_optional_text",
    "check_text",
    "fail",
    "files",
    "model_path",
    "optional_absolute",
    "tuple_of_str",
]

# Top-level sections of verl < 0.7 that 0.9's main_ppo composes but never reads.
_LEGACY_SECTIONS = ("custom_reward_function", "reward_model", "sandbox_fusion")
_DATA_SUFFIXES = (".parquet", ".json", ".jsonl")  # what verl's RLHFDataset reads


def fail(field: str, value: Any, message: str) -> RecipeError:
    """The error for option ``field``; a ``value`` of ``None`` (a missing option) is not shown."""
    shown = "" if value is None else f" (got {value!r})"
    return RecipeError(f"recipe option {field}: {message}{shown}", field=field, value=value)


def absolute(value: Any) -> Any:
    """A local path made absolute (Ray actors need not share the launcher's directory).

    ``scheme://`` locations and values that are not paths are returned as they are.
    """
    if isinstance(value, str | os.PathLike) and str(value) and "://" not in str(value):
        return str(Path(value).expanduser().absolute())
    return value


def files(value: Any) -> Any:
    """One path or a sequence of them, as a tuple of absolute paths."""
    if isinstance(value, str | os.PathLike):
        value = (value,)
    if isinstance(value, Sequence):
        return tuple(absolute(item) for item in value)
    return value


def model_path(value: Any) -> Any:
    """An existing local model directory made absolute; anything else (a hub id) as is."""
    if isinstance(value, str | os.PathLike) and str(value) and Path(value).expanduser().exists():
        return absolute(value)
    return str(value) if isinstance(value, os.PathLike) else value


def optional_absolute(value: Any) -> Any:
    return None if value is None else absolute(value)


def _text(field: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise fail(field, value, "must be a non-empty string")
    if "${" in value:
        raise fail(
            field,
            value,
            "must not contain '${' (verl's configuration reads it as an interpolation)",
        )


def check_text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _text(attribute.name, value)


def check_optional_text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _text(attribute.name, value)


def check_files(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise fail(attribute.name, value, "needs at least one data file")
    for item in value:
        _text(attribute.name, item)
        if not item.endswith(_DATA_SUFFIXES):
            raise fail(attribute.name, item, "verl reads only .parquet, .json and .jsonl files")


def check_count(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise fail(attribute.name, value, "must be a whole number of at least 1")


def check_frequency(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise fail(attribute.name, value, "must be a number of steps, or -1 for never")


def check_logger(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise fail(attribute.name, value, "needs at least one logger, e.g. ('console',)")
    for item in value:
        _text(attribute.name, item)


def check_extra(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple):
        raise fail(attribute.name, value, "must be a tuple of Hydra overrides")
    for item in value:
        if not isinstance(item, str) or not ("=" in item or item.startswith("~")):
            raise fail(attribute.name, item, "an override is key=value (or ~key to delete)")
        section = override_key(item).split(".", 1)[0]
        if section in _LEGACY_SECTIONS:
            raise fail(
                attribute.name,
                item,
                f"verl 0.9's main_ppo ignores the legacy section {section!r}; the reward is "
                "set under reward.* (reward.reward_manager.*, reward.reward_kwargs.*)",
            )


def tuple_of_str(value: Any) -> Any:
    """One string or a sequence of them, as a tuple."""
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, Sequence) else value
