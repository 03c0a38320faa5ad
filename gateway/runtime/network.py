"""The gateway's Thread network (its active operational dataset), shared by the services.

Whichever service starts first creates it, under a file lock in the state directory so two
services starting together cannot create two networks; both then read the same file. The file
holds keys (network key, PSKc): mode 0600, written atomically, never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from gateway.errors import ParseError, StateError
from gateway.runtime.logs import register_secret
from gateway.runtime.settings import Settings
from gateway.runtime.state import JsonState
from gateway.wire.dataset import ActiveDataset, new_active_dataset

FILE = "thread-network.json"


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / ".thread-network.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _store(settings: Settings) -> JsonState:
    return JsonState(settings.paths.state_dir / FILE, "gateway-thread-network", 1)


def _parse(body: dict[str, object], path: Path) -> ActiveDataset:
    raw = body.get("active_dataset")
    if not isinstance(raw, str):
        raise StateError(f"{path}: no active dataset")
    try:
        ds = ActiveDataset.from_hex(raw)
    except ParseError as exc:
        raise StateError(f"{path}: the active dataset is corrupt ({exc})") from None
    if not ds.is_complete:
        raise StateError(f"{path}: the active dataset lacks {', '.join(ds.missing())}")
    _register(ds)
    return ds


def _register(ds: ActiveDataset) -> None:
    for secret in (ds.network_key, ds.pskc):
        if secret:
            register_secret(secret)


def load_network(settings: Settings) -> ActiveDataset | None:
    store = _store(settings)
    body = store.load()
    return None if body is None else _parse(body, store.path)


def load_or_create_network(settings: Settings, channel: int | None = None) -> ActiveDataset:
    """The active dataset; created on first start (``channel``: the creator's choice, e.g. the
    quietest channel it measured; [thread] channel in the configuration wins)."""
    with _locked(settings.paths.state_dir):
        existing = load_network(settings)
        if existing is not None:
            return existing
        t = settings.thread
        ds = new_active_dataset(
            network_name=t.network_name or None,
            channel=t.channel or channel,
        )
        _store(settings).save({"active_dataset": ds.to_hex()})
        _register(ds)
        return ds


LOG = logging.getLogger(__name__)
# Between the Wi-Fi channels 1, 6 and 11 (2412, 2437, 2462 MHz): 802.15.4 channels 15 (2425),
# 20 (2450) and 25/26 (2475/2480 MHz) overlap them least. Among channels that measure the same,
# these come first.
PREFERRED_CHANNELS = (15, 20, 25, 26)
SCAN_SECONDS_PER_CHANNEL = 0.05  # 0.8 s for the 16 channels, once, at the first start


def quietest_channel(energy: dict[int, int]) -> int:
    """The channel with the least energy; ties go to :data:`PREFERRED_CHANNELS`, then to the
    lower channel."""
    if not energy:
        raise ValueError("no channel was measured")

    def rank(ch: int) -> tuple[int, int, int]:
        pref = PREFERRED_CHANNELS.index(ch) if ch in PREFERRED_CHANNELS else len(PREFERRED_CHANNELS)
        return (energy[ch], pref, ch)

    return min(energy, key=rank)


EnergyScan = Callable[[list[int], float], Awaitable[dict[int, int]]]


async def open_or_create_network(settings: Settings, scan: EnergyScan) -> ActiveDataset:
    """The active dataset, or on first start a new network on the quietest channel, measured
    with ``scan`` (an energy scan of channels 11-26) unless ``[thread] channel`` names one. The
    file work runs off the event loop."""
    existing = await asyncio.to_thread(load_network, settings)
    if existing is not None:
        return existing
    channel: int | None = settings.thread.channel or None
    if channel is None:
        energy = await scan(list(range(11, 27)), SCAN_SECONDS_PER_CHANNEL)
        channel = quietest_channel(energy)
        LOG.info("first start: channel %d is the quietest (%d dBm; %s)", channel, energy[channel],
                 " ".join(f"{c}:{e}" for c, e in sorted(energy.items())))  # fmt: skip
    return await asyncio.to_thread(load_or_create_network, settings, channel)


def save_network(settings: Settings, ds: ActiveDataset) -> None:
    if not ds.is_complete:
        raise StateError(
            f"refusing to save an incomplete dataset (lacks {', '.join(ds.missing())})"
        )
    with _locked(settings.paths.state_dir):
        _store(settings).save({"active_dataset": ds.to_hex()})
    _register(ds)
