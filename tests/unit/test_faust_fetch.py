"""agents/faust_fetch.py: Faust's consumer holds a fetch 100 ms, not 1.5 s (the live delays
stepped up and stayed when a held fetch kept drained partitions from being fetched)."""

from __future__ import annotations

import inspect
from typing import Any

from faust.transport.drivers import aiokafka as driver

from agents import faust_fetch


class _Consumer:
    _fetch_max_wait_ms = 1500


class _Driver:
    made = 0

    def _create_worker_consumer(self, transport: Any) -> _Consumer:
        type(self).made += 1
        return _Consumer()


def test_faust_holds_fetches_1500_ms_by_itself() -> None:
    # what the patch replaces: if Faust changes it, look at agents/faust_fetch.py again
    assert "fetch_max_wait_ms=1500" in inspect.getsource(driver)
    assert callable(driver.AIOKafkaConsumerThread._create_worker_consumer)


def test_the_consumers_made_hold_a_fetch_100_ms_once_installed() -> None:
    assert _Driver()._create_worker_consumer(None)._fetch_max_wait_ms == 1500
    assert faust_fetch.install(cls=_Driver) is True
    assert faust_fetch.install(cls=_Driver) is True  # once: not wrapped twice
    made = _Driver.made
    assert _Driver()._create_worker_consumer(None)._fetch_max_wait_ms == 100
    assert _Driver.made == made + 1


def test_faust_s_own_driver_takes_the_patch() -> None:
    assert faust_fetch.install() is True
    patched = driver.AIOKafkaConsumerThread._create_worker_consumer
    assert patched._holds_fetch_ms == faust_fetch.FETCH_MAX_WAIT_MS == 100
