"""The Spinel RCP backend against OpenThread's own simulated ``ot-rcp``, on the simulated air
with an emulated AT86RF233 and an OpenThread CLI node.

Opt-in: ``OT_RCP`` names the ot-rcp simulation binary (examples/apps/ncp/ot-rcp) and, for the
CLI node, ``OT_CLI_FTD`` the ot-cli-ftd one (docs/radio-rcp.md). This module uses port offsets
1630..1633 (``OT_RCP_PORT_OFFSET`` moves them), away from the main suite (10..1609) and the other
interop tests (1620..1629). Each RCP and emulated radio has its own node id on its air.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from drivers.at86rf233.driver import At86rf233Radio
from drivers.fcs import fcs_ok
from drivers.radio import Radio, RxFrame, RxSubscription, TxStatus, open_radio
from drivers.spinel.backend import SpinelRadio
from gateway.errors import ParseError
from gateway.radio.client import RadioClient
from gateway.wire.mac802154 import ExtAddress, MacFrame
from tests.drivers.conftest import data_frame
from tests.interop.otnode import OtNode, form_leader, ot_cli_ftd
from tests.radio_backend import ot_rcp, rcp_url
from tests.runtime.helpers import Install, ServiceProcess

_RCP, _SKIP = ot_rcp()
pytestmark = [pytest.mark.skipif(_RCP is None, reason=_SKIP), pytest.mark.timeout(120)]

BASE = int(os.environ.get("OT_RCP_PORT_OFFSET", "1630"))
PAN = 0x1234
# An MLE Discovery Request as a real OpenThread joiner sends it (reference/openthread-sim-air.md),
# PSDU with its FCS.
DISCOVERY_REQUEST = bytes.fromhex(
    "01d807ffffffff2bcfc893faf973b19e267f3b02f04d4c4d4c12c3ff101a0480025800fd00"
)


def data_request(seq: int, src: int, dst: int, pan: int = PAN) -> bytes:
    """MAC command Data Request (0x04), short addresses, PAN ID compression, AR (no FCS)."""
    fcf = 0x0003 | 0x0020 | 0x0040 | (2 << 10) | (1 << 12) | (2 << 14)
    return (fcf.to_bytes(2, "little") + bytes((seq,)) + pan.to_bytes(2, "little")
            + dst.to_bytes(2, "little") + src.to_bytes(2, "little") + b"\x04")  # fmt: skip


async def next_frame(sub: RxSubscription, want: bytes, timeout: float = 3.0) -> RxFrame:
    """The next received frame whose payload (without FCS) is ``want``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        f = await sub.get(left)
        if f is not None and f.payload_without_fcs == want:
            return f
    raise AssertionError(f"no frame {want.hex()} within {timeout} s")


@pytest.fixture
async def air_pair(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[SpinelRadio, Radio]]:
    """The simulated RCP (node 2) and an emulated AT86RF233 (node 3) on air BASE."""
    monkeypatch.setenv("PORT_OFFSET", str(BASE))
    rcp = open_radio(rcp_url(2))
    emu = open_radio(f"emulated:?node=3&port_offset={BASE}")
    assert isinstance(rcp, SpinelRadio) and isinstance(emu, At86rf233Radio)
    async with rcp, emu:
        for radio, short in ((rcp, 0x0002), (emu, 0x0003)):
            await radio.set_channel(15)
            await radio.set_addresses(pan_id=PAN, short_addr=short)
        yield rcp, emu


async def test_rcp_identity(air_pair: tuple[SpinelRadio, Radio]) -> None:
    rcp, _emu = air_pair
    ident = rcp.identity
    assert ident.protocol_version == (4, 3)
    assert ident.firmware.startswith("OPENTHREAD/") and ident.platform == "SIMULATION"
    assert ident.rcp_api_version is not None and ident.rcp_api_version >= 4
    assert rcp.info.eui64 == bytes.fromhex("18b4300000000002")  # ot-rcp's EUI-64 for node 2


async def test_frames_both_ways_with_acks(air_pair: tuple[SpinelRadio, Radio]) -> None:
    rcp, emu = air_pair
    with emu.subscribe() as emu_rx, rcp.subscribe() as rcp_rx:
        out = data_frame(10, dst=0x0003, src=0x0002, payload=b"from the RCP")
        res = await rcp.transmit(out)
        assert res.status is TxStatus.SUCCESS  # the emulated chip ACKed it
        got = await next_frame(emu_rx, out)
        assert fcs_ok(got.psdu) and got.channel == 15
        back = data_frame(11, dst=0x0002, src=0x0003, payload=b"from the AT86RF233")
        res = await emu.transmit(back)
        assert res.status is TxStatus.SUCCESS  # ot-rcp's simulated radio ACKed it
        got = await next_frame(rcp_rx, back)
        assert fcs_ok(got.psdu) and got.rssi_dbm == -20  # the simulation's fixed RSSI
    # nobody has short address 9: OpenThread's sub-MAC retries, then reports no ACK
    res = await rcp.transmit(data_frame(12, dst=0x0009, src=0x0002), retries=1)
    assert res.status is TxStatus.NO_ACK
    assert rcp.counters.tx_no_ack == 1 and rcp.counters.tx_success == 1


async def test_source_match_sets_frame_pending_per_address(
    air_pair: tuple[SpinelRadio, Radio],
) -> None:
    rcp, emu = air_pair
    await rcp.set_source_match([0x0003], [])
    res = await emu.transmit(data_request(20, src=0x0003, dst=0x0002))
    assert res.status is TxStatus.SUCCESS_DATA_PENDING
    await rcp.set_source_match([0x0007], [])  # another child has data, not this one
    res = await emu.transmit(data_request(21, src=0x0003, dst=0x0002))
    assert res.status is TxStatus.SUCCESS
    await rcp.set_source_match([], [])
    await rcp.set_frame_pending(True)  # chip-wide: every poll
    res = await emu.transmit(data_request(22, src=0x0003, dst=0x0002))
    assert res.status is TxStatus.SUCCESS_DATA_PENDING


async def test_channel_and_sleep(air_pair: tuple[SpinelRadio, Radio]) -> None:
    rcp, emu = air_pair
    scan = await rcp.energy_scan([11, 15, 26], 0.01)
    assert set(scan) == {11, 15, 26} and all(-128 <= v <= 0 for v in scan.values())
    assert rcp.channel == 15
    await rcp.sleep()
    res = await emu.transmit(data_frame(30, dst=0x0002, src=0x0003))
    assert res.status is TxStatus.NO_ACK  # a sleeping RCP does not receive
    await rcp.wake()
    res = await emu.transmit(data_frame(31, dst=0x0002, src=0x0003))
    assert res.status is TxStatus.SUCCESS


async def test_rcp_reset_and_recovery(air_pair: tuple[SpinelRadio, Radio]) -> None:
    rcp, emu = air_pair
    await rcp.reset()
    assert rcp.channel == 15 and rcp.counters.recoveries == 1
    res = await emu.transmit(data_frame(40, dst=0x0002, src=0x0003))
    assert res.status is TxStatus.SUCCESS  # configuration restored after the reset


# --- with an OpenThread CLI node --------------------------------------------------------------


@pytest.fixture
def ot_leader_node() -> Iterator[OtNode]:
    binary, reason = ot_cli_ftd()
    if binary is None:
        pytest.skip(reason)
    node = OtNode(binary, 1, BASE + 1)
    try:
        form_leader(node)
        yield node
    finally:
        node.close()


async def test_openthread_node_emulated_chip_and_rcp_share_the_air(
    ot_leader_node: OtNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    leader = ot_leader_node
    channel = int(await asyncio.to_thread(leader.value, "channel"))
    leader_ext = ExtAddress.from_hex(await asyncio.to_thread(leader.value, "extaddr"))
    request = MacFrame.from_bytes(DISCOVERY_REQUEST, fcs=True)
    joiner = request.src
    assert isinstance(joiner, ExtAddress) and request.src_pan is not None
    monkeypatch.setenv("PORT_OFFSET", str(BASE + 1))
    rcp = open_radio(rcp_url(2))
    # airtime=0: OpenThread's simulated radios ACK as soon as a frame's datagram arrives, which
    # the emulator's airtime model would take for a collision with the frame still on the air
    emu = open_radio(f"emulated:?node=3&port_offset={BASE + 1}&airtime=0")
    async with rcp, emu:
        await rcp.set_channel(channel)
        await emu.set_channel(channel)
        await emu.set_promiscuous(True)  # a sniffer on the same air
        # the RCP plays the joiner: the Discovery Response comes back to its address, ACKed
        await rcp.set_addresses(pan_id=request.src_pan, ext_addr=joiner.octets)
        # OpenThread answers a joiner's discovery only while joining is allowed
        mark = leader.mark()
        await asyncio.to_thread(leader.cmd, "commissioner start")
        await asyncio.to_thread(leader.wait_for, r"Commissioner: active", 10.0, mark)
        await asyncio.to_thread(leader.cmd, "commissioner joiner add * J01NME")
        before = await asyncio.to_thread(leader.counters_mac)
        with rcp.subscribe() as rcp_rx, emu.subscribe() as sniff:
            response = None
            for _attempt in range(4):  # the leader updates its network data first
                res = await rcp.transmit(DISCOVERY_REQUEST[:-2])
                assert res.ok
                deadline = time.monotonic() + 1.5
                while response is None and (left := deadline - time.monotonic()) > 0:
                    f = await rcp_rx.get(left)
                    if f is None:
                        break
                    mf = _mac(f)
                    if mf is not None and mf.src == leader_ext and mf.dst == joiner:
                        response = mf
                if response is not None:
                    break
            assert response is not None, "no MLE Discovery Response from the OpenThread leader"
            await asyncio.sleep(0.3)  # the emulated sniffer reads its frame buffer on its own
            heard = [_mac(f) for f in _drain(sniff)]
        # the sniffer too
        assert any(m is not None and m.dst == joiner and m.src == leader_ext for m in heard), [
            (m.src, m.dst) if m else None for m in heard
        ]
        assert any(m is not None and m.dst == joiner and m.src == leader_ext for m in heard)
        for _ in range(30):
            after = await asyncio.to_thread(leader.counters_mac)
            if after["TxAcked"] > before["TxAcked"]:
                break
            await asyncio.sleep(0.1)
        assert after["TxAcked"] > before["TxAcked"]  # the RCP ACKed OpenThread's response
        assert after["TxDirectMaxRetryExpiry"] == before["TxDirectMaxRetryExpiry"]


def _mac(f: RxFrame) -> MacFrame | None:
    """The frame, or None when it does not parse (an ACK, a frame damaged on the air)."""
    try:
        return MacFrame.from_bytes(f.psdu, fcs=True)
    except ParseError:
        return None


def _drain(sub: RxSubscription) -> list[RxFrame]:
    out = []
    while not sub._q.empty():
        f = sub._q.get_nowait()
        if f is not None:
            out.append(f)
    return out


# --- the radio service on the RCP --------------------------------------------------------------


async def test_radio_service_on_the_rcp(tmp_path: Path) -> None:
    offset = BASE + 2
    inst = Install(tmp_path / "gw", offset, node=1, radio_params="")
    svc = ServiceProcess(
        inst, "radio", env={"GATEWAY_RADIO_URL": rcp_url(1), "PORT_OFFSET": str(offset)}
    )
    emu = open_radio(f"emulated:?node=3&port_offset={offset}")
    try:
        await asyncio.to_thread(svc.start().wait_ready, 30.0)
        st = await asyncio.to_thread(svc.status)
        radio = st["radio"]
        assert radio["backend"] == "spinel-forkpty" and radio["healthy"]
        assert radio["rcp"]["protocol_version"] == "4.3"
        client = RadioClient(inst.radio_socket, "interop-test", reconnect=False)
        async with emu:
            await client.start()
            try:
                await client.set_channel(17)
                await client.set_addresses(pan_id=PAN, short_addr=0x0001)
                await emu.set_channel(17)
                await emu.set_addresses(pan_id=PAN, short_addr=0x0003)
                events = await client.subscribe()
                with emu.subscribe() as emu_rx:
                    frame = data_frame(0, dst=0x0003, src=0x0001, payload=b"service via RCP")
                    res = await client.transmit(frame)
                    assert res["ok"] and res["status"] == "success"
                    got = await emu_rx.get(3.0)
                    assert got is not None and got.payload_without_fcs[3:] == frame[3:]
                back = data_frame(1, dst=0x0001, src=0x0003, payload=b"to the service")
                assert (await emu.transmit(back)).status is TxStatus.SUCCESS
                async with asyncio.timeout(3):
                    while True:
                        ev = await events.get()
                        if not ev.tx and ev.psdu[:-2] == back:
                            break
            finally:
                await client.close()
        st = await asyncio.to_thread(svc.status)
        assert st["radio"]["counters"]["tx_success"] >= 1
        await asyncio.to_thread(svc.stop)
    finally:
        svc.cleanup()
