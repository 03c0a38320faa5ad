"""The first start measures the channels and forms the network on the quietest one (the README
promises a quiet channel; before, the channel was drawn at random)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.runtime.network import load_network, open_or_create_network, quietest_channel
from gateway.runtime.paths import Paths
from gateway.runtime.settings import load_settings


def test_quietest_channel_prefers_the_gaps_between_wifi_channels_on_ties() -> None:
    flat = {c: -95 for c in range(11, 27)}
    assert quietest_channel(flat) == 15
    assert quietest_channel({**flat, 13: -99}) == 13
    assert quietest_channel({11: -90, 12: -90}) == 11
    with pytest.raises(ValueError):
        quietest_channel({})


async def test_first_start_takes_the_quietest_channel_and_scans_only_once(tmp_path: Path) -> None:
    settings = load_settings(Paths(tmp_path / "gateway.toml", tmp_path / "state", tmp_path / "run"))
    calls: list[tuple[list[int], float]] = []
    # a Wi-Fi network next door on 15-20, everything else at -90 but 24
    energy = {c: (-60 if 15 <= c <= 20 else -90) for c in range(11, 27)}
    energy[24] = -97

    async def scan(channels: list[int], duration: float) -> dict[int, int]:
        calls.append((channels, duration))
        return {c: energy[c] for c in channels}

    ds = await open_or_create_network(settings, scan)
    assert ds.channel == 24 and calls and calls[0][0] == list(range(11, 27))
    again = await open_or_create_network(settings, scan)
    assert again == ds and len(calls) == 1  # an existing network is never re-measured
    assert load_network(settings) == ds


async def test_a_configured_channel_wins_without_a_scan(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text("[thread]\nchannel = 21\n")
    settings = load_settings(Paths(tmp_path / "gateway.toml", tmp_path / "state", tmp_path / "run"))

    async def scan(channels: list[int], duration: float) -> dict[int, int]:
        raise AssertionError("no scan when [thread] channel is set")

    assert (await open_or_create_network(settings, scan)).channel == 21
