"""Built-in configuration presets.

A preset is an ordinary configuration file shipped with the package; a
configuration that says ``preset = "NAME"`` is merged over it by
:func:`icdreward.config.load_config`. This package is data only: it imports nothing
of icdreward, so the configuration module can load it.

>>> available_presets()
('deepicd-r1', 'default')
"""

from __future__ import annotations

import copy
import functools
import tomllib
from importlib import resources
from typing import Any

__all__ = ["available_presets", "preset_config"]


@functools.cache
def available_presets() -> tuple[str, ...]:
    """Names of the shipped presets."""
    files = resources.files(__name__).iterdir()
    return tuple(sorted(f.name[: -len(".toml")] for f in files if f.name.endswith(".toml")))


@functools.cache
def _load(name: str) -> dict[str, Any]:
    text = resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def preset_config(name: str) -> dict[str, Any]:
    """A fresh copy of the preset's raw configuration (``KeyError`` if unknown)."""
    if name not in available_presets():
        raise KeyError(name)
    return copy.deepcopy(_load(name))  # the cached table must not be changed by callers
