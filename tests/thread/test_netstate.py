"""The border router's saved network role (gateway/border_router/netstate.py): the MLE frame
counter resumes at a bound written ahead of use, corrupt state stops the service."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from gateway.border_router.netstate import MLE_COUNTER_RESERVE, NetworkStateStore
from gateway.errors import GatewayError
from gateway.thread.network.router import RouterCore
from gateway.thread.network.snapshot import RouterSnapshot
from gateway.wire.mac802154 import ExtAddress
from tests.thread.network.world import dataset


def _core(saved: RouterSnapshot | None = None, counter: int | None = None) -> RouterCore:
    return RouterCore(dataset(), ExtAddress(bytes(range(8))), rng=random.Random(1),
                      saved=saved, mle_frame_counter=counter)  # fmt: skip


def test_counter_resumes_at_the_bound_and_never_below(tmp_path: Path) -> None:
    path = tmp_path / "thread-router.json"
    store = NetworkStateStore(path)
    core = _core()
    core.start(0.0)
    asyncio.run(store.save(core.snapshot(), core.keys.mle_frame_counter))
    assert store.covers(core.keys.key_sequence, core.keys.mle_frame_counter)
    for _ in range(700):  # MLE messages: the counter runs towards the bound
        core.keys.next_mle_counter()
    used = core.keys.mle_frame_counter
    assert store.covers(core.keys.key_sequence, used)  # 700 < 1000: no write needed yet
    assert not store.covers(core.keys.key_sequence, MLE_COUNTER_RESERVE + 1)
    asyncio.run(store.save(core.snapshot(), used))  # past half the reserve: the bound moves
    assert store.bound == used + MLE_COUNTER_RESERVE
    # "kill -9": a new store, a new core, from the file only
    saved = NetworkStateStore(path).load()
    assert saved is not None
    start = saved.start_counter()
    assert start >= used + MLE_COUNTER_RESERVE > used
    again = _core(saved.snapshot, start)
    again.start(1.0)
    assert again.keys.mle_frame_counter == start
    assert again.partition_id == core.partition_id and again.router_id == core.router_id


def test_corrupt_state_stops_rather_than_forming_a_new_network(tmp_path: Path) -> None:
    path = tmp_path / "thread-router.json"
    store = NetworkStateStore(path)
    core = _core()
    core.start(0.0)
    asyncio.run(store.save(core.snapshot(), 0))
    doc = json.loads(path.read_text())
    doc["body"]["mle_counter_bound"] = -1
    path.write_text(json.dumps(doc))
    with pytest.raises(GatewayError):  # checksum mismatch
        NetworkStateStore(path).load()
    path.write_text("{not json")
    with pytest.raises(GatewayError):
        NetworkStateStore(path).load()


def test_child_table_size_is_a_validated_setting() -> None:
    from gateway.runtime.settings import BorderRouterSettings

    assert BorderRouterSettings().max_children == 32
    BorderRouterSettings(max_children=511).validate()
    for bad in (0, 512):
        with pytest.raises(GatewayError, match="max_children"):
            BorderRouterSettings(max_children=bad).validate()
