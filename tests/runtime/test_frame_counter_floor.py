"""After a restore, a key the backup never listed must not start from 0 either."""

from __future__ import annotations

import pytest

from gateway.errors import StateError
from gateway.runtime.state import FrameCounterStore


def test_bump_raises_the_floor_for_unknown_keys(tmp_path):
    path = tmp_path / "fc.json"
    store = FrameCounterStore(path, reserve=16)
    used = [store.next("thread-mac") for _ in range(40)]
    store.bump(1000)
    restarted = FrameCounterStore(path, reserve=16)
    assert restarted.next("kek") > max(used)  # a key id the store never saw
    assert restarted.next("thread-mac") > max(used) + 1000 - 1
    assert restarted.floor >= max(used)


def test_floor_key_is_not_usable(tmp_path):
    with pytest.raises(StateError):
        FrameCounterStore(tmp_path / "fc.json").next("*")


def test_an_exhausted_key_does_not_exhaust_new_keys(tmp_path):
    path = tmp_path / "fc.json"
    store = FrameCounterStore(path, reserve=16)
    store.next("old")
    store._next["old"] = store._stored["old"] = 0xFFFFFFF0  # worn out by years of use
    store.bump(100)
    assert FrameCounterStore(path).next("new") < 0xFFFF0000
