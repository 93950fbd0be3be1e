"""Shared fixtures: engines are built once per session (plugins and code set load once)."""

from __future__ import annotations

import pytest

from icdreward import RewardEngine
from icdreward.codeset import CodeSet, load_codeset


@pytest.fixture(scope="session")
def codeset() -> CodeSet:
    return load_codeset()


@pytest.fixture(scope="session")
def deepicd() -> RewardEngine:
    return RewardEngine.from_preset("deepicd-r1")


@pytest.fixture(scope="session")
def default_engine() -> RewardEngine:
    return RewardEngine.from_preset("default")
