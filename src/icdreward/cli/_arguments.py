"""Argument types shared by the commands: numbers checked with a message argparse shows."""

from __future__ import annotations

import argparse

__all__ = ["count", "positive_int"]


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def count(text: str) -> int:
    """A whole number of at least 0 (argparse ``type=``)."""
    return _whole_number(text, 0)


def positive_int(text: str) -> int:
    """A whole number of at least 1 (argparse ``type=``)."""
    return _whole_number(text, 1)
