"""Validate plain mappings into typed attrs parameter classes (public API).

Components declare their parameters as attrs classes with type annotations; this
module turns a configuration table into an instance of such a class, checking
every field's type and naming the exact field and value when one is wrong. The
engine validates every component's ``Params`` with it, and integrations use it for
their own settings tables (``icdreward_verl.RewardSettings``), so that every
configuration error reads the same way.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from icdreward.errors import ConfigError

__all__ = ["structure_params"]


def structure_params(
    cls: type[Any],
    table: Mapping[str, Any],
    *,
    source: str,
    field: str,
    reserved: tuple[str, ...] = (),
) -> Any:
    """Build ``cls(**table)`` after checking names and types of every entry.

    Args:
        cls: an attrs class whose annotated fields are the allowed parameters.
        table: the parameters from the configuration.
        source: where the configuration came from, for error messages.
        field: dotted path of ``table`` in the configuration, e.g. ``"rewards.exact"``.
        reserved: keys the surrounding table also accepts (``weight`` ...); only used
            to suggest the right name for a misspelt key.

    Raises:
        ConfigError: naming the unknown or mistyped field and its value.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(source, field, table, "expected a table of parameters")
    fields = {f.name: f for f in attrs.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{field}.{key}" if field else str(key)
        if key not in fields:
            allowed = [*fields, *reserved]
            raise ConfigError(source, path, value, _unknown_message(str(key), allowed))
        kwargs[key] = _check(value, hints.get(key, Any), source, path)
        validator = fields[key].validator
        if validator is not None:
            # Run the field's own validator here, so its error names this field and value
            # rather than the whole table.
            try:
                validator(None, fields[key], kwargs[key])
            except (TypeError, ValueError) as exc:
                raise ConfigError(source, path, value, str(exc)) from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        # attrs validators raise these; the message names the attribute.
        raise ConfigError(source, field, dict(table), str(exc)) from None


def _unknown_message(key: str, allowed: list[str]) -> str:
    names = sorted(allowed)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(names) if names else "none"
    return f"unknown parameter{hint} (allowed: {listed})"


def _check(value: Any, hint: Any, source: str, path: str) -> Any:
    if hint is Any:
        return value
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is Literal:
        if value in args:
            return value
        allowed = ", ".join(repr(a) for a in args)
        raise ConfigError(source, path, value, f"must be one of {allowed}")
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return _check(value, option, source, path)
            except ConfigError:
                continue
        raise ConfigError(source, path, value, f"expected {_type_name(hint)}")
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(source, path, value, "expected null")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(source, path, value, "expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(source, path, value, "expected an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ConfigError(source, path, value, "expected a finite number")
            return number
        raise ConfigError(source, path, value, "expected a number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(source, path, value, "expected a string")
    if origin in (tuple, list) or hint in (tuple, list):
        if isinstance(value, (list, tuple)):
            item = args[0] if args else Any
            checked = [_check(v, item, source, f"{path}[{i}]") for i, v in enumerate(value)]
            return tuple(checked) if origin is tuple or hint is tuple else checked
        raise ConfigError(source, path, value, "expected a list")
    if origin in (dict, Mapping) or origin is getattr(typing, "Mapping", None):
        if isinstance(value, Mapping):
            key_t, val_t = args if args else (Any, Any)
            return {
                _check(k, key_t, source, f"{path}.{k}"): _check(v, val_t, source, f"{path}.{k}")
                for k, v in value.items()
            }
        raise ConfigError(source, path, value, "expected a table")
    if isinstance(hint, type) and attrs.has(hint):
        return structure_params(hint, value, source=source, field=path)
    return value


def _type_name(hint: Any) -> str:
    args = get_args(hint)
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))
