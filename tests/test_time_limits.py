"""Time limits: slow third-party components, installed as real entry-point plugins.

The plugin below is a throwaway distribution (a ``*.dist-info`` directory with an
``entry_points.txt`` in the ``icdreward`` group, next to its module) on ``sys.path``:
the engines here find it through ``importlib.metadata`` exactly as they would a
plugin from PyPI. Its components sleep for real when a batch holds their trigger
code; the limits are a fraction of a second. No test measures how long anything
takes: they check what the engine reports while the slow call is still running.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from icdreward import ComponentFailure, ConfigError, RewardEngine
from icdreward_trl import TRLRewards
from icdreward_verl import RewardSettings
from icdreward_verl._settings import build_engine

from _texts import completion

GOLD = "M5116"
SLOW = "E119"  # the code that makes the slow components sleep

_PLUGIN = '''
import asyncio
import threading
import time

import attrs
import torch

from icdreward import Reward
from icdreward.plugin import hookimpl


@attrs.frozen
class SlowParams:
    sleep: float = 2.0
    trigger: str = "E119"


class Calls:
    """What the components saw: calls, calls that returned, cancellations."""

    lock = threading.Lock()
    started = 0
    finished = 0
    cancelled = 0
    done = threading.Event()
    threads: list = []

    @classmethod
    def reset(cls):
        cls.started = cls.finished = cls.cancelled = 0
        cls.done = threading.Event()
        cls.threads = []


class SlowSync(Reward):
    name = "slow_sync"
    Params = SlowParams

    def score(self, batch):
        with Calls.lock:
            Calls.started += 1
            Calls.threads.append(threading.current_thread().name)
        if self.params.trigger in batch.parsed.codes:
            time.sleep(self.params.sleep)
            with Calls.lock:
                Calls.finished += 1
            Calls.done.set()
        return torch.full((batch.size,), 3.0)


class SlowAsync(Reward):
    name = "slow_async"
    Params = SlowParams
    is_async = True

    async def ascore(self, batch):
        Calls.started += 1
        if self.params.trigger in batch.parsed.codes:
            try:
                await asyncio.sleep(self.params.sleep)
            except asyncio.CancelledError:
                Calls.cancelled += 1
                raise
            Calls.finished += 1
        return torch.full((batch.size,), 5.0)


@hookimpl
def icdreward_register_rewards(register):
    register(SlowSync)
    register(SlowAsync)
'''


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Installs the slow plugin for this module; yields its call counters."""
    root = tmp_path_factory.mktemp("slow-site")
    info = root / "slow_components-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slow-components\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[icdreward]\nslow = slow_components\n")
    (root / "slow_components.py").write_text(textwrap.dedent(_PLUGIN), encoding="utf-8")
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module("slow_components").Calls
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("slow_components", None)
        importlib.invalidate_caches()


@pytest.fixture
def fresh(calls: Any) -> Iterator[Any]:
    calls.reset()
    yield calls
    if calls.started:  # a sleeping call of this test must not leak into the next
        calls.done.wait(5)


def _engine(rewards: dict[str, Any], **top: Any) -> RewardEngine:
    return RewardEngine.from_config({"rewards": {"exact": {}, **rewards}, **top})


def _batch(*codes: str) -> tuple[list[str], list[str]]:
    return [completion(c) for c in codes], [GOLD] * len(codes)


def test_a_sync_component_past_its_limit_is_flagged_while_it_still_runs(
    fresh: Any, caplog: pytest.LogCaptureFixture
) -> None:
    engine = _engine({"slow_sync": {"time_limit": 0.3, "sleep": 3.0}})
    caplog.set_level(logging.WARNING, logger="icdreward")
    result = engine.score(*_batch("M5116", SLOW, "I10", "M5116"))
    assert fresh.started == 1 and fresh.finished == 0  # the engine did not wait for it
    assert result.failed["slow_sync"].tolist() == [True] * 4
    assert set(result.failure_reasons["slow_sync"]) == {"timed out after 0.3 s"}
    assert result.components["exact"].tolist() == [1.0, 0.0, 0.0, 1.0]  # the rest scored
    assert result.total.tolist() == [1.0, 0.0, 0.0, 1.0]  # fallback 0 by default
    assert "reward 'slow_sync' timed out after 0.3 s on a batch of 4 samples" in caplog.text
    assert fresh.threads == ["icdreward-worker"]


def test_a_timed_out_batch_is_not_bisected(fresh: Any) -> None:
    engine = _engine({"slow_sync": {"time_limit": 0.2, "sleep": 1.0}})
    result = engine.score(*_batch(*[SLOW] * 16))
    assert result.failed["slow_sync"].all()
    assert fresh.done.wait(5)
    assert fresh.started == 1  # one call, not a bisection into 31


@pytest.mark.parametrize(
    ("policy", "expected_total", "included"),
    [("fallback", [1.5, 0.5], True), ("abstain", [1.0, 0.0], False)],
)
def test_the_failure_policy_applies_to_a_timed_out_component(
    fresh: Any, policy: str, expected_total: list[float], included: bool
) -> None:
    table = {"time_limit": 0.2, "sleep": 1.0, "on_failure": policy, "fallback": 0.5}
    engine = _engine({"slow_sync": table})
    result = engine.score(*_batch("M5116", SLOW))
    assert result.total.tolist() == expected_total
    assert result.included[:, 1].tolist() == [included, included]
    assert [r["failed"] for r in result.to_records()] == [["slow_sync"], ["slow_sync"]]


def test_the_raise_policy_names_the_component_and_the_time_limit(fresh: Any) -> None:
    engine = _engine({"slow_sync": {"time_limit": 0.2, "sleep": 1.0, "on_failure": "raise"}})
    with pytest.raises(ComponentFailure, match=r"'slow_sync'.*timed out after 0\.2 s"):
        engine.score(*_batch(SLOW))


def test_a_stuck_call_is_not_repeated_and_the_next_batch_is_not_blocked(fresh: Any) -> None:
    engine = _engine({"slow_sync": {"time_limit": 0.2, "sleep": 1.5}})
    first = engine.score(*_batch(SLOW))
    assert first.failure_reasons["slow_sync"] == ("timed out after 0.2 s",)
    # The stuck call still sleeps: the next batch gets its scores from every other
    # component at once, and this one is not called a second time beside itself.
    second = engine.score(*_batch("M5116", "I10"))
    assert fresh.finished == 0 and fresh.started == 1
    assert second.components["exact"].tolist() == [1.0, 0.0]
    reasons = second.failure_reasons["slow_sync"]
    assert reasons[0] is not None and reasons[0].startswith("not called: its call on an earlier")
    assert "still running" in reasons[0]
    # Once it has returned, the component is called as usual again. (The event is set
    # inside the call, a moment before it returns to the engine's thread.)
    assert fresh.done.wait(5)
    for _ in range(50):
        third = engine.score(*_batch("M5116", "I10"))
        if not third.failed["slow_sync"].any():
            break
        time.sleep(0.1)
    assert not third.failed["slow_sync"].any()
    assert third.components["slow_sync"].tolist() == [3.0, 3.0]
    assert fresh.started == 2


def test_an_async_component_is_cancelled_at_its_limit(fresh: Any) -> None:
    engine = _engine({"slow_async": {"time_limit": 0.3, "sleep": 20.0}})
    result = engine.score(*_batch("M5116", SLOW))
    assert result.failure_reasons["slow_async"] == ("timed out after 0.3 s",) * 2
    assert fresh.cancelled == 1 and fresh.finished == 0
    # A cancelled coroutine holds nothing: the next batch calls it normally.
    again = engine.score(*_batch("M5116", "I10"))
    assert again.components["slow_async"].tolist() == [5.0, 5.0]
    assert not again.failed["slow_async"].any()
    fresh.done.set()


def test_ascore_limits_sync_and_async_components_on_the_callers_loop(fresh: Any) -> None:
    engine = _engine(
        {
            "slow_sync": {"time_limit": 0.2, "sleep": 1.0},
            "slow_async": {"time_limit": 0.2, "sleep": 20.0},
        }
    )
    ticks = 0

    async def main() -> Any:
        nonlocal ticks

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        try:
            return await engine.ascore(*_batch(SLOW))
        finally:
            ticker.cancel()

    result = asyncio.run(main())
    assert result.failed["slow_sync"].all() and result.failed["slow_async"].all()
    assert fresh.finished == 0
    assert ticks > 1  # the caller's loop kept running while the engine waited


def test_the_engine_wide_limit_and_switching_it_off_per_component(fresh: Any) -> None:
    limited = _engine({"slow_sync": {"sleep": 1.0}}, limits={"time_limit": 0.2})
    assert limited.score(*_batch(SLOW)).failure_reasons["slow_sync"] == ("timed out after 0.2 s",)
    assert fresh.done.wait(5)
    fresh.reset()
    unlimited = _engine(
        {"slow_sync": {"sleep": 0.4, "time_limit": False}}, limits={"time_limit": 0.2}
    )
    result = unlimited.score(*_batch(SLOW))
    assert fresh.finished == 1  # waited for it to the end
    assert result.components["slow_sync"].tolist() == [3.0]


def test_without_limits_components_run_in_the_callers_thread(fresh: Any) -> None:
    engine = _engine({"slow_sync": {"sleep": 0.0}}, limits={"time_limit": False})
    engine.score(*_batch(SLOW))
    assert fresh.threads == [threading.current_thread().name]


def test_errors_and_length_checks_still_reach_the_caller(fresh: Any) -> None:
    engine = _engine({"slow_sync": {"time_limit": 5.0}})
    with pytest.raises(ValueError, match="golds has 1 entries for 2 completions"):
        engine.score([completion("I10")] * 2, [GOLD])


def test_a_config_file_time_limit_reaches_the_verl_engine(fresh: Any, tmp_path: Path) -> None:
    path = tmp_path / "rewards.toml"
    path.write_text(
        'preset = "deepicd-r1"\n[rewards.slow_sync]\nweight = 0.0\nsleep = 1.0\ntime_limit = 0.2\n',
        encoding="utf-8",
    )
    engine = build_engine(RewardSettings.from_kwargs({"config": str(path)}))
    result = engine.score(*_batch(SLOW))
    assert result.failure_reasons["slow_sync"] == ("timed out after 0.2 s",)


def test_the_verl_time_limit_setting(fresh: Any) -> None:
    settings = RewardSettings.from_kwargs({"preset": "default", "time_limit": 0.25})
    assert settings.engine_config() == {"preset": "default", "limits": {"time_limit": 0.25}}
    assert build_engine(settings).config.limits.time_limit == 0.25
    off = RewardSettings.from_kwargs({"preset": "default", "time_limit": False})
    assert build_engine(off).config.limits.time_limit is None
    with pytest.raises(ConfigError, match="time_limit"):
        build_engine(RewardSettings.from_kwargs({"preset": "default", "time_limit": -1}))


def test_trl_gets_none_where_a_timed_out_component_abstains(fresh: Any) -> None:
    table = {"time_limit": 0.2, "sleep": 1.0, "on_failure": "abstain"}
    rewards = TRLRewards(_engine({"slow_sync": table}))
    texts, golds = _batch("M5116", SLOW)
    slow = next(f for f in rewards.functions if f.__name__.endswith("slow_sync"))
    values = slow(prompts=["p", "p"], completions=texts, codes=[[g] for g in golds])
    assert values == [None, None]
