"""A chip thread that runs late must not mistake frames that were sent apart for a collision:
receptions are timed by the kernel's receive timestamp, not by when the thread reads them."""

from __future__ import annotations

import asyncio
import threading
import time

from drivers.radio import TxStatus
from tests.drivers.conftest import chip, data_frame


async def test_late_chip_thread_does_not_invent_collisions(radios):
    a = await radios(1)
    b = await radios(2)
    await a.set_addresses(pan_id=0x1234, short_addr=0x0001)
    await b.set_addresses(pan_id=0x1234, short_addr=0x0002)
    emu_b = chip(b)
    hold = threading.Event()

    def stall() -> None:  # the receiver's chip thread cannot run for 150 ms
        with emu_b._lock:
            hold.set()
            time.sleep(0.15)

    with b.subscribe() as sub:
        t = threading.Thread(target=stall)
        t.start()
        hold.wait(1)
        r1 = await a.transmit(data_frame(1, dst=0xFFFF, ack=False))
        await asyncio.sleep(0.02)
        r2 = await a.transmit(data_frame(2, dst=0xFFFF, ack=False))
        t.join()
        first = await sub.get(3.0)
    assert r1.status is TxStatus.SUCCESS and r2.status is TxStatus.SUCCESS
    assert first is not None and first.crc_ok and first.psdu[2] == 1
    assert emu_b.stats["collisions"] == 0
