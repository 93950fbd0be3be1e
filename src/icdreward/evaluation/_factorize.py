"""Factorizing a column of values: distinct values in order of first occurrence, and
per row the index of its value, so that per-value work is done once and per-row work in C."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

__all__ = ["factorize"]

_T = TypeVar("_T")

_SEPARATOR = "\0"
"""Joins strings for Arrow to split (a value holding it is caught by the count)."""


def factorize(values: Sequence[_T]) -> tuple[list[_T], torch.Tensor]:
    """The distinct values in order of first occurrence, and per row the index of its
    value (``int64 [N]``), so that per-value work is done once and per-row work in C.

    Raises:
        TypeError: a value is unhashable.
    """
    encoded = _factorize_strings(values)
    if encoded is None:  # not all str or None: a dict finds the distinct values
        position = dict.fromkeys(values)
        position = dict(zip(position, range(len(position)), strict=True))
        rows = np.fromiter(map(position.__getitem__, values), np.int64, count=len(values))
        return list(position), torch.from_numpy(rows)
    distinct, index = encoded
    # Renumber in order of first occurrence (the order a dict gives): class ids follow
    # it, and with them the order of the sums over classes, hence the last bit of the
    # macro averages. Arrow keeps that order already, but does not promise it.
    n, k = int(index.numel()), len(distinct)
    first = torch.full((k,), n, dtype=torch.int64)
    first.scatter_reduce_(0, index, torch.arange(n), reduce="amin")  # first row of each
    is_first = torch.zeros(n, dtype=torch.bool)
    is_first[first] = True
    order = index[is_first]  # the distinct values by their first row (no sort: linear)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(k)
    return [distinct[i] for i in order.tolist()], rank[index]


def _factorize_strings(values: Sequence[_T]) -> tuple[list[_T], torch.Tensor] | None:
    """:func:`_factorize` by Arrow's dictionary encoding (hashing in C: several times
    faster than a dict on a million rows); ``None`` unless every value is a str or
    ``None``."""
    array = _string_array(values)
    if array is None:
        return None
    encoded = array.dictionary_encode(null_encoding="encode")
    index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)  # writable
    return cast(list[_T], encoded.dictionary.to_pylist()), torch.from_numpy(index)


def _string_array(values: Sequence[object]) -> pa.Array[Any] | None:
    """``values`` as an Arrow string array; ``None`` unless each is a str or ``None``."""
    try:
        joined = _SEPARATOR.join(cast(Sequence[str], values))
    except TypeError:  # a None, or not a str at all
        joined = None
    if joined is not None:
        # All str: one join and Arrow's split, twice as fast as converting each string
        try:
            text = pa.array([joined], pa.large_string())
        except (pa.ArrowException, ValueError):  # lone surrogates: not UTF-8
            return None
        pieces = pc.split_pattern(text, _SEPARATOR).flatten()
        if len(pieces) == len(values):  # else a value holds the separator itself
            return pieces
    try:
        array = pa.array(cast(Any, values))  # inferred: pa.string() would take bytes as text
    except (pa.ArrowException, TypeError, ValueError):  # other types, lone surrogates
        return None
    if not isinstance(array, pa.Array) or not (
        pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
    ):  # bytes, all None, or chunked (over 2 GiB of text)
        return None
    return array
