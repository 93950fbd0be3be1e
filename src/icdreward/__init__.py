"""icdreward: plugin-based, vectorized rewards for ICD-10-CM clinical reasoning models.

>>> from icdreward import RewardEngine
>>> engine = RewardEngine.from_preset("default")
>>> completion = "Disc disorder with radiculopathy.</think><diagnosis>M51.16</diagnosis>"
>>> result = engine.score([completion], ["M5116"])
>>> sorted(result.components) == sorted(engine.names)
True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from icdreward.batch import Feature, ParsedBatch, ScoringBatch
from icdreward.components import ComponentContext, NoParams, Parser, Reward, RewardOutput
from icdreward.config import EngineConfig, load_config
from icdreward.engine import RewardEngine
from icdreward.errors import (
    ComponentFailure,
    ConfigError,
    DuplicateComponentError,
    IcdRewardError,
    InputFileError,
    PluginLoadError,
    PluginWarning,
)
from icdreward.groups import GroupStats
from icdreward.result import ScoreResult

try:
    __version__ = version("icdreward")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0.0.0"

__all__ = [
    "ComponentContext",
    "ComponentFailure",
    "ConfigError",
    "DuplicateComponentError",
    "EngineConfig",
    "Feature",
    "GroupStats",
    "IcdRewardError",
    "InputFileError",
    "NoParams",
    "ParsedBatch",
    "Parser",
    "PluginLoadError",
    "PluginWarning",
    "Reward",
    "RewardEngine",
    "RewardOutput",
    "ScoreResult",
    "ScoringBatch",
    "__version__",
    "load_config",
]
