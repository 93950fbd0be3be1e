"""Writing values in Hydra's command-line override grammar, without importing Hydra.

verl's ``main_ppo`` reads its configuration from ``key=value`` overrides, and Hydra
parses each value: an unquoted ``a,b`` is a sweep, ``[a`` a syntax error, ``1e-6`` a
float and ``null`` None. A path or a name from the user is therefore quoted unless it
is made only of characters that read back as the same string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = ["HydraValue", "hydra_value", "override", "override_key"]

HydraValue = str | int | float | bool | None | Sequence[str | int | float | bool | None]
"""What an override may set: a scalar or a list of scalars."""

# Characters Hydra's grammar reads back unchanged in an unquoted value; the first
# character excludes digits and signs so nothing here reads as a number.
_BARE = re.compile(r"[A-Za-z_/.][A-Za-z0-9_./:@-]*")
# Unquoted words Hydra turns into something other than a string.
_KEYWORDS = frozenset({"true", "false", "null", "nan", "inf"})
# Backslashes Hydra treats as escapes in a quoted value: those before a quote or at
# the end of the value.
_ESCAPED_BACKSLASHES = re.compile(r"(\\+)(?='|$)")


def _scalar(value: str | int | float | bool | None) -> str:
    # bool before int: True is an int in Python.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return repr(value)
    if "${" in value:
        # Quoted or not, OmegaConf would resolve it as an interpolation.
        raise ValueError(
            f"contains '${{', which verl's configuration reads as an interpolation: {value!r}"
        )
    if _BARE.fullmatch(value) and value.lower() not in _KEYWORDS:
        return value
    doubled = _ESCAPED_BACKSLASHES.sub(lambda m: m.group(1) * 2, value)
    return "'" + doubled.replace("'", "\\'") + "'"


def hydra_value(value: HydraValue) -> str:
    """``value`` written so that Hydra's override parser reads it back exactly.

    >>> hydra_value("/data/notes v2/train.parquet")
    "'/data/notes v2/train.parquet'"
    >>> hydra_value(["console", "wandb"]), hydra_value(1e-06), hydra_value(True)
    ('[console,wandb]', '1e-06', 'true')

    Raises:
        ValueError: a float that is not finite, or a string holding ``${`` (OmegaConf
            would resolve it, quoted or not).
    """
    if isinstance(value, str) or not isinstance(value, Sequence):
        return _scalar(value)
    return "[" + ",".join(_scalar(item) for item in value) + "]"


def override(key: str, value: HydraValue, *, add: bool = False) -> str:
    """One ``key=value`` override; ``add`` prefixes ``+`` for a key verl's schema lacks.

    >>> override("reward.reward_kwargs.preset", "deepicd-r1", add=True)
    '+reward.reward_kwargs.preset=deepicd-r1'
    """
    return f"{'+' if add else ''}{key}={hydra_value(value)}"


def override_key(text: str) -> str:
    """The dotted key an override sets, without its ``+``, ``++`` or ``~`` prefix.

    >>> override_key("++trainer.logger=[console]"), override_key("~trainer.val_only")
    ('trainer.logger', 'trainer.val_only')
    """
    key = text.split("=", 1)[0].strip()
    return key.lstrip("+~")
