"""The AT86RF233 driver against the emulated chip on the simulated air: every radio feature."""

from __future__ import annotations

import asyncio

import pytest

from drivers.at86rf233 import regs
from drivers.at86rf233.regs import Reg
from drivers.errors import InvalidArgument, WrongChip
from drivers.radio import TxStatus, open_radio
from tests.drivers.conftest import chip, data_frame

PAN = 0x1234


async def pair(radios, **params):
    a = await radios(1, **params)
    b = await radios(2, **params)
    await a.set_addresses(pan_id=PAN, short_addr=0x0001)
    await b.set_addresses(pan_id=PAN, short_addr=0x0002)
    return a, b


async def test_probe_identity_and_init(radios):
    r = await radios(1)
    assert r.info.part == "AT86RF233"
    assert r.info.part_num == 0x0B and r.info.man_id == 0x1F
    assert len(r.info.eui64) == 8
    emu = chip(r)
    # initialised as documented: RX_AACK_ON, auto CRC, safe mode, TRX_END+CCA_ED_DONE IRQs
    assert emu.state == regs.State.RX_AACK_ON
    assert emu._regs[Reg.IRQ_MASK] == 0x18
    assert emu._regs[Reg.TRX_CTRL_2] & regs.RX_SAFE_MODE


async def test_wrong_chip_refused(port_offset):
    radio = open_radio(f"emulated:?node=1&port_offset={port_offset}&part=3")
    with pytest.raises(WrongChip, match="AT86RF231"):
        await radio.open()
    await radio.close()


async def test_acked_unicast_delivered_with_metadata(radios):
    a, b = await pair(radios, rssi=-72)
    with b.subscribe() as sub:
        res = await a.transmit(data_frame(7, dst=0x0002))
        assert res.status is TxStatus.SUCCESS and res.frame_retries == 0
        f = await sub.get(3.0)
    assert f is not None and f.crc_ok
    assert f.payload_without_fcs == data_frame(7, dst=0x0002)
    assert f.rssi_dbm == -72
    assert 0 < f.lqi <= 255
    assert f.channel == 11
    assert a.counters.tx_success == 1 and b.counters.rx_frames == 1


async def test_no_ack_after_retries(radios):
    a, _b = await pair(radios)
    res = await a.transmit(data_frame(8, dst=0x0099))  # nobody has 0x0099
    assert res.status is TxStatus.NO_ACK
    # the chip's 3 retries, then 2 rounds (emulated radios' default) of 1 + 3 attempts, each
    # after a pause in receive
    assert res.frame_retries == 3 + 2 * (1 + 3)
    res = await a.transmit(data_frame(9, dst=0x0099), retries=0)
    assert res.status is TxStatus.NO_ACK and res.frame_retries == 0
    assert a.counters.tx_no_ack == 2


async def test_address_and_pan_filtering(radios):
    a, b = await pair(radios)
    with b.subscribe() as sub:
        await a.transmit(data_frame(1, dst=0x0003, ack=False))  # other short address
        await a.transmit(data_frame(2, dst=0x0002, pan=0x9999, ack=False))  # other PAN
        await a.transmit(data_frame(3, dst=0xFFFF, ack=False))  # broadcast: accepted
        await a.transmit(data_frame(4, dst=0x0002, ack=False))  # ours: accepted
        got = [await sub.get(3.0), await sub.get(3.0)]
        assert await sub.get(0.5) is None
    assert [f.psdu[2] for f in got if f] == [3, 4]


async def test_extended_address_filter(radios):
    a, b = await pair(radios)
    ext = bytes.fromhex("1122334455667788")
    await b.set_addresses(ext_addr=ext)
    fcf = 0x0001 | 0x20 | 0x40 | (3 << 10) | (1 << 12) | (2 << 14)
    frame = (
        fcf.to_bytes(2, "little") + b"\x05" + PAN.to_bytes(2, "little") + ext[::-1] + b"\x01\x00x"
    )
    with b.subscribe() as sub:
        assert (await a.transmit(frame)).ok
        assert (await sub.get(3.0)) is not None
    other = (
        fcf.to_bytes(2, "little") + b"\x06" + PAN.to_bytes(2, "little") + bytes(8) + b"\x01\x00x"
    )
    assert (await a.transmit(other)).status is TxStatus.NO_ACK


async def test_channel_isolation(radios):
    a, b = await pair(radios)
    await b.set_channel(15)
    with b.subscribe() as sub:
        assert (await a.transmit(data_frame(1, dst=0x0002))).status is TxStatus.NO_ACK
        assert await sub.get(0.5) is None
        await a.set_channel(15)
        assert (await a.transmit(data_frame(2, dst=0x0002))).ok
        assert (await sub.get(3.0)) is not None
    assert a.channel == 15
    with pytest.raises(InvalidArgument):
        await a.set_channel(27)


async def test_promiscuous_receives_everything_and_does_not_ack(radios):
    a, b = await pair(radios)
    await b.set_promiscuous(True)
    with b.subscribe() as sub:
        res = await a.transmit(data_frame(1, dst=0x0042), retries=0)
        assert res.status is TxStatus.NO_ACK  # a sniffer never acknowledges
        f = await sub.get(3.0)
        assert f is not None and f.psdu[2] == 1
    await b.set_promiscuous(False)
    assert (await a.transmit(data_frame(2, dst=0x0002))).ok


async def test_frame_pending_in_ack_of_data_request(radios):
    a, b = await pair(radios)
    await b.set_frame_pending(True)
    # MAC command Data Request (0x04), short addresses, PAN ID compression, AR
    fcf = 0x0003 | 0x20 | 0x40 | (2 << 10) | (1 << 12) | (2 << 14)
    cmd = fcf.to_bytes(2, "little") + b"\x11" + PAN.to_bytes(2, "little") + b"\x02\x00\x01\x00\x04"
    res = await a.transmit(cmd)
    assert res.status is TxStatus.SUCCESS_DATA_PENDING and res.frame_pending
    # a data frame is acknowledged without frame pending
    assert (await a.transmit(data_frame(3, dst=0x0002))).status is TxStatus.SUCCESS
    await b.set_frame_pending(False)
    assert (await a.transmit(cmd)).status is TxStatus.SUCCESS


async def test_source_match_without_a_table_sets_frame_pending_for_every_poll(radios):
    """The AT86RF233 has no source-match table: a non-empty set turns AACK_SET_PD on for every
    Data Request (from any source), an empty one turns it off."""
    a, b = await pair(radios)
    assert not b.has_source_match
    fcf = 0x0003 | 0x20 | 0x40 | (2 << 10) | (1 << 12) | (2 << 14)
    cmd = fcf.to_bytes(2, "little") + b"\x12" + PAN.to_bytes(2, "little") + b"\x02\x00\x01\x00\x04"
    await b.set_source_match([0x0005], [])
    res = await a.transmit(cmd)  # 0x0001 is not in the set: chip-wide, still pending
    assert res.status is TxStatus.SUCCESS_DATA_PENDING
    await b.set_source_match([], [bytes.fromhex("1122334455667788")])
    assert (await a.transmit(cmd)).status is TxStatus.SUCCESS_DATA_PENDING
    await b.set_source_match([], [])
    assert (await a.transmit(cmd)).status is TxStatus.SUCCESS


async def test_channel_access_failure_on_busy_channel(radios):
    a = await radios(1, interference="11:-50")
    res = await a.transmit(data_frame(1, dst=0x0002))
    assert res.status is TxStatus.CHANNEL_ACCESS_FAILURE
    assert res.csma_retries == 4
    assert a.counters.tx_channel_access_failure == 1
    # without CSMA-CA the frame goes out regardless
    res = await a.transmit(data_frame(2, dst=0x0002, ack=False), csma=False)
    assert res.status is TxStatus.SUCCESS


async def test_tx_power_table(radios):
    r = await radios(1)
    assert await r.set_tx_power(4) == 4.0
    assert await r.set_tx_power(-5) == -6.0  # the highest step not above the request
    assert chip(r)._regs[Reg.PHY_TX_PWR] == 0x0C
    assert await r.set_tx_power(-40) == -17.0


async def test_energy_scan_sees_interference_and_traffic(radios):
    r = await radios(1, interference="20:-70,25:-55")
    res = await r.energy_scan(range(11, 27), 0.01)
    assert res[20] == -70 and res[25] == -55
    assert res[11] == -94
    assert r.channel == 11 and chip(r).state == regs.State.RX_AACK_ON  # restored


async def test_sleep_and_wake(radios):
    a, b = await pair(radios)
    await b.sleep()
    assert chip(b).state == regs.State.SLEEP
    assert (await a.transmit(data_frame(1, dst=0x0002), retries=0)).status is TxStatus.NO_ACK
    await b.wake()
    assert chip(b).state == regs.State.RX_AACK_ON
    assert (await a.transmit(data_frame(2, dst=0x0002))).ok
    with pytest.raises(InvalidArgument):
        await b.sleep() or await b.transmit(data_frame(3, dst=0x0001))


async def test_many_frames_both_ways(radios):
    a, b = await pair(radios)
    with a.subscribe() as sa, b.subscribe() as sb:
        for i in range(20):
            assert (await a.transmit(data_frame(i, dst=0x0002, src=0x0001))).ok
            assert (await b.transmit(data_frame(i, dst=0x0001, src=0x0002))).ok
        ra = [await sa.get(3.0) for _ in range(20)]
        rb = [await sb.get(3.0) for _ in range(20)]
    assert [f.psdu[2] for f in ra if f] == list(range(20))
    assert [f.psdu[2] for f in rb if f] == list(range(20))


async def test_full_length_frame(radios):
    a, b = await pair(radios)
    payload = bytes(range(116))
    frame = data_frame(5, dst=0x0002, payload=payload)
    assert len(frame) == 125
    with b.subscribe() as sub:
        assert (await a.transmit(frame)).ok
        f = await sub.get(3.0)
    assert f is not None and len(f.psdu) == 127
    with pytest.raises(InvalidArgument):
        await a.transmit(frame + b"x")


async def test_close_ends_subscriptions(radios, port_offset):
    r = open_radio(f"emulated:?node=5&port_offset={port_offset}")
    await r.open()
    sub = r.subscribe()
    getter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0.01)
    await r.close()
    assert await getter is None
