"""Exceptions raised by icdreward.

Bad *completions* never raise: they are scores. These exceptions are for bad
configuration, bad input files, broken plugins and misuse of the API, and every
message names what the user has to fix (the file, the field and the value).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ComponentFailure",
    "ConfigError",
    "DuplicateComponentError",
    "IcdRewardError",
    "InputFileError",
    "PluginLoadError",
    "PluginWarning",
    "UnknownComponentError",
]


class IcdRewardError(Exception):
    """Base class of every error icdreward raises on purpose."""


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()
"""Default of an error's ``value``: none was given (``None`` itself may be the culprit)."""


def _describe_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ConfigError(IcdRewardError, ValueError):
    """A configuration (file, dict or preset) is malformed.

    Attributes:
        source: where the configuration came from (a file path, ``"<dict>"`` or
            ``"preset 'default'"``).
        field: dotted path of the offending field, e.g. ``"rewards.hierarchy.weight"``.
        value: the offending value.
    """

    def __init__(self, source: str, field: str, value: Any, message: str) -> None:
        self.source = source
        self.field = field
        self.value = value
        self.reason = message
        where = f"{source}: field {field!r}" if field else source
        shown = "" if value is _MISSING else f" (got {_describe_value(value)})"
        super().__init__(f"{where}: {message}{shown}")


class InputFileError(IcdRewardError, ValueError):
    """A data file (JSONL, CSV, parquet) cannot be read as scoring input."""

    def __init__(
        self,
        path: str,
        message: str,
        *,
        row: int | None = None,
        field: str | None = None,
        value: Any = _MISSING,
    ) -> None:
        self.path = path
        self.row = row
        self.field = field
        self.value = value
        parts = [path]
        if row is not None:
            parts.append(f"row {row}")
        if field is not None:
            parts.append(f"field {field!r}")
        shown = "" if value is _MISSING else f" (got {_describe_value(value)})"
        super().__init__(f"{', '.join(parts)}: {message}{shown}")


class PluginLoadError(IcdRewardError, ImportError):
    """A plugin failed to load and the plugin manager runs in strict mode."""


class PluginWarning(UserWarning):
    """A plugin was skipped because it failed to load; the message names it."""


class DuplicateComponentError(IcdRewardError):
    """Two plugins registered a component under the same name."""

    def __init__(self, kind: str, name: str, first: str, second: str) -> None:
        self.kind = kind
        self.name = name
        self.plugins = (first, second)
        super().__init__(
            f"{kind} component {name!r} is registered by both plugin {first!r} and "
            f"plugin {second!r}; disable one of them with plugins.disable = [...]"
        )


class UnknownComponentError(ConfigError):
    """A configuration names a component that no loaded plugin registers."""


class ComponentFailure(IcdRewardError):
    """A reward component failed on some samples and the failure policy is ``"raise"``."""

    def __init__(self, component: str, failures: dict[int, str]) -> None:
        self.component = component
        self.failures = failures
        first = next(iter(failures.items()))
        super().__init__(
            f"reward component {component!r} failed on {len(failures)} sample(s); "
            f"first: sample {first[0]}: {first[1]}"
        )
