"""Two emulated radios in separate processes on the simulated air exchanging acknowledged
frames, with retries under link loss."""

from __future__ import annotations

import asyncio
import json
import sys

from drivers.radio import TxStatus, open_radio
from tests.drivers.conftest import data_frame


async def start_peer(url: str, duration: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.drivers.peer_responder", url, "0x1234", "0x0002", str(duration),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert json.loads(line) == {"ready": True}
    return proc


async def test_acknowledged_frames_with_retries_under_loss(port_offset):
    peer = await start_peer(f"emulated:?node=2&port_offset={port_offset}&loss=0.2", 30)
    try:
        async with open_radio(f"emulated:?node=1&port_offset={port_offset}&loss=0.2&seed=7") as a:
            await a.set_addresses(pan_id=0x1234, short_addr=0x0001)
            results = [await a.transmit(data_frame(i, dst=0x0002), retries=7) for i in range(40)]
    finally:
        peer.terminate()
        out, _ = await peer.communicate()
    assert all(r.status is TxStatus.SUCCESS for r in results), [r.status for r in results]
    assert sum(r.frame_retries for r in results) > 0  # loss made retries necessary
    seqs = {json.loads(line)["seq"] for line in out.decode().splitlines()}
    assert seqs == set(range(40))  # every frame arrived at least once (duplicates possible)


async def test_other_port_offset_is_another_air(port_offset):
    peer = await start_peer(f"emulated:?node=2&port_offset={port_offset + 1}", 10)
    try:
        async with open_radio(f"emulated:?node=1&port_offset={port_offset}") as a:
            await a.set_addresses(pan_id=0x1234, short_addr=0x0001)
            res = await a.transmit(data_frame(1, dst=0x0002), retries=1)
    finally:
        peer.terminate()
        await peer.communicate()
    assert res.status is TxStatus.NO_ACK
