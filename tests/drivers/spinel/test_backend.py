"""The Spinel RCP backend against a peer the test drives byte for byte (tests/drivers/spinel/
peer.py): start-up as OpenThread's host does it, the radio operations mapped onto Spinel, and
every fault: bad FCS, truncated frames, version and capability mismatches, no answer, a reset in
the middle of a transmission, a silent reset, a lost link."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from drivers.errors import (
    InvalidArgument,
    NoSuchDevice,
    RadioClosed,
    RadioTransientError,
    RadioUrlError,
    RcpIncompatible,
    RcpNotResponding,
)
from drivers.fcs import append_fcs
from drivers.radio import TxStatus, open_radio
from drivers.spinel import rcp
from drivers.spinel.backend import SpinelRadio, Timeouts
from drivers.spinel.codec import SpinelFrame, pack
from drivers.spinel.consts import Cmd, Prop, RadioCaps, Status
from drivers.spinel.hdlc import encode_frame
from drivers.spinel.link import ForkPtyLink, SerialLink
from tests.drivers.conftest import data_frame
from tests.drivers.spinel.peer import RcpModel, RcpState, SocketPeer

FAST = Timeouts(response_s=0.3, reset_s=0.3, tx_s=0.5, health_period_s=60, scan_extra_s=0.3)
EXT = bytes.fromhex("1122334455667788")

Factory = Callable[..., Any]


@pytest.fixture
async def rcp_radio() -> AsyncIterator[Factory]:
    made: list[tuple[SpinelRadio, SocketPeer]] = []

    async def make(
        state: RcpState | None = None,
        *,
        restartable: bool = False,
        timeouts: Timeouts = FAST,
        open_it: bool = True,
        model: RcpModel | None = None,
    ) -> tuple[SpinelRadio, RcpModel, SocketPeer]:
        model = model or RcpModel(state)
        peer = SocketPeer(model, restartable)
        radio = SpinelRadio("spinel+hdlc+uart:///dev/test", peer.link, timeouts=timeouts)
        made.append((radio, peer))
        if open_it:
            await radio.open()
        return radio, model, peer

    yield make
    for radio, peer in made:
        await radio.close()
        await peer.close()


def hdlc(hex_frame: str) -> bytes:
    return encode_frame(bytes.fromhex(hex_frame))


async def until(pred: Callable[[], object], timeout: float = 3.0) -> None:
    """Poll ``pred`` (the radio's own tasks make it true; there is no event to wait on)."""
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# --- start-up ----------------------------------------------------------------------------------


async def test_start_up_byte_for_byte(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    # what the host wrote, frame by frame (header with TID, command, property, value)
    expected = [
        "800102",  # RESET (STACK), TID 0
        "810201",  # GET PROTOCOL_VERSION
        "820202",  # GET NCP_VERSION
        "830208",  # GET HWADDR
        "840205",  # GET CAPS
        "8502b001",  # GET RCP_API_VERSION (0xB0: a two-byte packed uint)
        "8602b101",  # GET RCP_MIN_HOST_API_VERSION
        "87028b24",  # GET RADIO_CAPS (0x120B)
        "880227",  # GET PHY_RX_SENSITIVITY
        "89032001",  # SET PHY_ENABLED true
        "8a0336ffff",  # SET MAC_15_4_PANID 0xFFFF
        "8b0335ffff",  # SET MAC_15_4_SADDR 0xFFFF
        "8c033418b4300000000001",  # SET MAC_15_4_LADDR: the EUI-64, big-endian as OpenThread's host
        "8d03210b",  # SET PHY_CHAN 11
        "8e032500",  # SET PHY_TX_POWER 0 dBm
        "8f033800",  # SET MAC_PROMISCUOUS_MODE off
        "81038426",  # SET MAC_SRC_MATCH_SHORT_ADDRESSES [] (0x1304); TIDs wrap 15 -> 1
        "82038526",  # SET MAC_SRC_MATCH_EXTENDED_ADDRESSES [] (0x1305)
        "8303832601",  # SET MAC_SRC_MATCH_ENABLED true (0x1303)
        "84033701",  # SET MAC_RAW_STREAM_ENABLED true
    ]
    got = [f.to_bytes().hex() for f in model.frames]
    assert got == expected
    # and the bytes on the wire are exactly those frames in HDLC-lite
    assert bytes(model.rx_bytes) == b"".join(hdlc(h) for h in expected)
    assert model.state.phy_enabled and model.state.raw_stream and model.state.src_match_enabled
    assert model.state.laddr == bytes.fromhex("18b4300000000001")
    assert radio.healthy


async def test_identity_is_reported(rcp_radio: Factory) -> None:
    radio, _model, _peer = await rcp_radio()
    info = radio.info.as_dict()
    assert info["eui64"] == "18b4300000000001"
    assert info["part"] == "OpenThread RCP (SIMULATION)"
    assert info["version_num"] == 11
    assert info["rcp"]["protocol_version"] == "4.3"
    assert info["rcp"]["firmware"].startswith("OPENTHREAD/thread-reference-20250612")
    assert "MAC_RAW" in info["rcp"]["caps"] and "CONFIG_RADIO" in info["rcp"]["caps"]
    assert "tx-retries" in info["rcp"]["radio_caps"]
    assert info["rcp"]["supported_rcp_api"] == "4..11"
    assert info["rcp"]["rx_sensitivity_dbm"] == -100
    assert radio.has_source_match


# --- compatibility -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, words",
    [
        ({"protocol": (4, 2)}, ["4.2", "4.3"]),
        ({"protocol": (5, 0)}, ["5.0", "exactly 4.3"]),
        ({"api": 3}, ["RCP API version 3", "4..11"]),
        ({"min_host": 12}, ["12", "at 11", "4..11"]),
        ({"caps": [5, 32, 513, 64, 65]}, ["an NCP", "CAP_CONFIG_RADIO"]),
        ({"caps": [5, 34, 64, 65]}, ["CAP_MAC_RAW"]),
        ({"radio_caps": 0x7F & ~RadioCaps.ACK_TIMEOUT}, ["ack-timeout"]),
        ({"radio_caps": 0}, ["ack-timeout", "tx-retries", "CSMA-backoff", "energy-scan"]),
    ],
)
async def test_mismatch_names_versions_range_and_remedy(
    rcp_radio: Factory, change: dict[str, Any], words: list[str]
) -> None:
    state = RcpState(**change)
    with pytest.raises(RcpIncompatible) as err:
        await rcp_radio(state)
    assert err.value.exit_code == 5 and err.value.code == "RAD010"
    for word in words:
        assert word in err.value.message, err.value.message
    assert "Flash" in err.value.hint and "ot-rcp" in err.value.hint
    assert "RCP API 4..11" in err.value.hint and "4.3" in err.value.hint


async def test_newer_rcp_api_is_accepted_with_a_warning(
    rcp_radio: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    radio, _model, _peer = await rcp_radio(RcpState(api=12, min_host=4))
    assert radio.healthy
    assert any("newer than 11" in w for w in radio.identity.warnings)
    assert "newer than 11" in caplog.text


async def test_old_rcp_without_api_version_property(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio(RcpState(caps=[5, 34, 513]))
    assert radio.identity.rcp_api_version is None
    assert not model.requests(Prop.RCP_API_VERSION)


# --- operations --------------------------------------------------------------------------------


async def test_configuration_reaches_the_rcp(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    await radio.set_channel(20)
    await radio.set_addresses(pan_id=0xFACE, short_addr=0x0042, ext_addr=EXT, coordinator=True)
    assert await radio.set_tx_power(20.4) == 8.0  # the RCP clamps and reports what it set
    assert await radio.set_tx_power(-3.6) == -4.0
    await radio.set_promiscuous(True)
    s = model.state
    assert (s.channel, s.pan_id, s.short, s.tx_power, s.promiscuous) == (20, 0xFACE, 0x42, -4, 2)
    assert s.laddr == EXT  # big-endian, as OpenThread's host sends it
    await radio.set_promiscuous(False)
    assert s.promiscuous == 0
    with pytest.raises(InvalidArgument):
        await radio.set_channel(27)


async def test_transmit_maps_results(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    await radio.set_channel(15)
    model.tx_results.extend(
        [(Status.OK, False), (Status.OK, True), (Status.NO_ACK, False), (Status.CCA_FAILURE, False)]
    )
    frame = data_frame(7, dst=0x0002)
    results = [await radio.transmit(frame) for _ in range(4)]
    assert [r.status for r in results] == [
        TxStatus.SUCCESS,
        TxStatus.SUCCESS_DATA_PENDING,
        TxStatus.NO_ACK,
        TxStatus.CHANNEL_ACCESS_FAILURE,
    ]
    tx = model.transmitted[0]
    assert tx.psdu == frame + b"\x00\x00"  # the RCP computes the FCS
    assert (tx.channel, tx.max_frame_retries, tx.max_csma_backoffs, tx.csma) == (15, 3, 4, True)
    # the frame was secured by the host: the RCP must leave its header and security alone
    assert tx.header_updated and tx.security_processed and not tx.retransmission
    c = radio.counters
    assert (c.tx_frames, c.tx_success, c.tx_no_ack, c.tx_channel_access_failure) == (4, 2, 1, 1)


async def test_transmit_options(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    await radio.transmit(data_frame(1, dst=2), csma=False, retries=7)
    assert (model.transmitted[-1].csma, model.transmitted[-1].max_frame_retries) == (False, 7)
    model.tx_results.append((Status.NO_ACK, False))
    res = await radio.transmit(data_frame(2, dst=2), basic=True)
    assert res.status is TxStatus.SUCCESS  # basic: one frame on the air, no ACK handling
    assert (model.transmitted[-1].max_frame_retries, model.transmitted[-1].csma) == (0, False)
    with pytest.raises(InvalidArgument):
        await radio.transmit(b"\x01\x02")
    with pytest.raises(InvalidArgument):
        await radio.transmit(data_frame(3, dst=2), retries=16)


async def test_receive_stream(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    psdu = append_fcs(data_frame(9, dst=0x0001))
    with radio.subscribe() as sub:
        model.received_frame(psdu, rssi=-55, lqi=180)
        f = await sub.get(2.0)
    assert f is not None
    assert (f.psdu, f.rssi_dbm, f.lqi, f.channel, f.crc_ok) == (psdu, -55, 180, 11, True)
    assert radio.counters.rx_frames == 1


async def test_receive_fcs_rewritten_bad_fcs_and_errors(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    frame = data_frame(3, dst=0x0001)
    with radio.subscribe() as sub:
        # some RCPs do not hand over the FCS bytes: the RCP checked them, so they are rebuilt
        model.received_frame(frame + b"\x00\x00")
        f = await sub.get(2.0)
        assert f is not None and f.psdu == append_fcs(frame) and f.crc_ok
        # flagged with a bad FCS: dropped (kept only in promiscuous mode)
        bad = rcp.RawFrame(append_fcs(frame), -60, -128, 0x0004, 11, 0, 0, 0)
        model.notify(Prop.STREAM_RAW, rcp.encode_raw_frame(bad))
        # a receive error, and a value that does not parse
        err = rcp.RawFrame(b"", 0, -128, 0, 11, 0, 0, 11)
        model.notify(Prop.STREAM_RAW, rcp.encode_raw_frame(err))
        model.notify(Prop.STREAM_RAW, b"\x05\x00ab")
        assert await sub.get(0.3) is None
        await radio.set_promiscuous(True)
        model.notify(Prop.STREAM_RAW, rcp.encode_raw_frame(bad))
        f = await sub.get(2.0)
        assert f is not None and not f.crc_ok
    c = radio.counters.as_dict()
    assert c["rx_fcs_rewritten"] == 1 and c["rx_crc_errors"] == 2
    assert c["rx_errors_reported"] == 1 and c["spinel_malformed"] == 1


async def test_source_match_per_address(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    s = model.state
    await radio.set_source_match([0x0003, 0x0005], [EXT])
    assert sorted(s.src_short) == [3, 5] and s.src_ext == [EXT] and s.src_match_enabled
    await radio.set_source_match([0x0005], [EXT])
    assert s.src_short == [5]
    cmds = [(f.command, f.prop) for f in model.frames[-4:]]
    assert (Cmd.PROP_VALUE_REMOVE, Prop.MAC_SRC_MATCH_SHORT_ADDRESSES) in cmds
    inserts = model.requests(Prop.MAC_SRC_MATCH_EXTENDED_ADDRESSES)
    assert [f.command for f in inserts][-1] == Cmd.PROP_VALUE_INSERT
    assert inserts[-1].value == EXT
    # chip-wide Frame Pending: an OpenThread RCP sets it for every poll with source match off
    await radio.set_frame_pending(True)
    assert not s.src_match_enabled
    await radio.set_frame_pending(False)
    assert s.src_match_enabled and s.src_short == [5]


async def test_source_match_table_full_falls_back_to_chip_wide(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio(RcpState(src_capacity=2))
    s = model.state
    await radio.set_source_match([1, 2, 3], [])
    assert not s.src_match_enabled  # Frame Pending for every Data Request
    assert radio.counters.as_dict()["src_match_fallbacks"] == 1
    await radio.set_source_match([], [])
    assert s.src_match_enabled and s.src_short == []  # the table is back


async def test_source_match_survives_a_reset(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    await radio.set_source_match([7], [EXT])
    await radio.set_channel(19)
    await radio.reset()
    s = model.state
    assert s.src_short == [7] and s.src_ext == [EXT] and s.src_match_enabled
    assert s.channel == 19 and radio.counters.recoveries == 1


async def test_energy_scan(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    model.state.ed_rssi = -73
    seen: list[int] = []
    res = await radio.energy_scan([12, 25], 0.01, progress=lambda ch, _i, _n: seen.append(ch))
    assert res == {12: -73, 25: -73} and seen == [12, 25]
    assert model.state.scan_mask == bytes((25,)) and model.state.scan_period == 10
    model.state.ed_rssi = rcp.RSSI_INVALID
    assert await radio.energy_scan([11], 0.005) == {11: -100}  # the RCP's sensitivity


async def test_sleep_and_wake(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    await radio.sleep()
    assert not model.state.raw_stream and radio.asleep
    with pytest.raises(InvalidArgument):
        await radio.transmit(data_frame(1, dst=2))
    await radio.wake()
    assert model.state.raw_stream and not radio.asleep
    assert (await radio.transmit(data_frame(1, dst=2))).ok


async def test_close_stops_the_stream(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    with radio.subscribe() as sub:
        await radio.close()
        assert await sub.get(1.0) is None
    await until(lambda: not model.state.raw_stream)
    with pytest.raises(RadioClosed):
        await radio.set_channel(12)


# --- faults ------------------------------------------------------------------------------------


def corrupt_answer(model: RcpModel, prop: int, how: Callable[[bytes], list[bytes]]) -> None:
    """The next answer to a request for ``prop`` leaves the RCP mangled by ``how``."""

    def hook(req: SpinelFrame) -> list[bytes] | None:
        if req.prop != prop:
            return None
        model.on_request = None
        answer = SpinelFrame(Cmd.PROP_VALUE_IS, prop, pack("C", 20), tid=req.tid).to_bytes()
        return how(encode_frame(answer))

    model.on_request = hook


async def test_bad_fcs_is_dropped_then_recovered(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()

    def flip_fcs(frame: bytes) -> list[bytes]:
        return [frame[:-3] + bytes((frame[-3] ^ 0xFF,)) + frame[-2:]]

    corrupt_answer(model, Prop.PHY_CHAN, flip_fcs)
    await radio.set_channel(20)  # no (good) answer: reset, re-initialise, set it again
    c = radio.counters.as_dict()
    assert c["hdlc_bad_fcs"] == 1 and c["rcp_timeouts"] == 1 and c["recoveries"] == 1
    assert model.state.channel == 20 and radio.healthy


async def test_truncated_frames_are_dropped_then_recovered(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    good = encode_frame(SpinelFrame(Cmd.PROP_VALUE_IS, Prop.STREAM_DEBUG, b"hi\x00").to_bytes())
    # half a frame, cut short by the next frame's flag: its FCS fails, the next one is fine
    model.inject(good[: len(good) // 2] + good)
    # whole HDLC frames holding truncated Spinel frames (a header alone, half a command)
    model.inject(hdlc("81") + hdlc("8186"))
    await asyncio.sleep(0.05)
    c = radio.counters.as_dict()
    assert c["hdlc_bad_fcs"] == 1 and c["spinel_malformed"] == 2 and c["recoveries"] == 0
    # an answer cut short: no answer, so the RCP is reset and the setting made again
    corrupt_answer(model, Prop.PHY_CHAN, lambda frame: [frame[: len(frame) // 2]])
    await radio.set_channel(21)
    c = radio.counters.as_dict()
    assert c["rcp_timeouts"] == 1 and c["recoveries"] == 1 and model.state.channel == 21
    # a transmit result cut short (a status without the rest): a protocol error, recovered
    model.tx_results.append(
        lambda req: model.answer(req, Cmd.PROP_VALUE_IS, Prop.LAST_STATUS, b"\x00")
    )
    assert (await radio.transmit(data_frame(4, dst=2))).ok
    c = radio.counters.as_dict()
    assert c["rcp_protocol_errors"] == 1 and c["recoveries"] == 2


async def test_truncated_answer_at_start(rcp_radio: Factory) -> None:
    model = RcpModel()

    def short_version(req: SpinelFrame) -> list[bytes] | None:
        if req.prop == Prop.PROTOCOL_VERSION:
            return [
                SpinelFrame(
                    Cmd.PROP_VALUE_IS, Prop.PROTOCOL_VERSION, b"\x04", tid=req.tid
                ).to_bytes()
            ]
        return None

    model.on_request = short_version
    with pytest.raises(RcpNotResponding, match="PROTOCOL_VERSION"):
        await rcp_radio(model=model)


async def test_no_answer_at_start(rcp_radio: Factory) -> None:
    model = RcpModel()
    model.mute = True
    with pytest.raises(RcpNotResponding) as err:
        await rcp_radio(model=model)
    assert err.value.exit_code == 6 and err.value.code == "RAD011"
    assert "no answer" in err.value.message and "baud" in err.value.hint


async def test_rcp_that_stops_answering_is_reported_fatal(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    with radio.subscribe() as sub:
        model.mute = True
        with pytest.raises(RcpNotResponding) as err:
            await radio.set_channel(13)
        assert "could not be recovered" in err.value.message
        assert await sub.get(1.0) is None  # the stream ended
    assert not radio.healthy
    c = radio.counters
    assert c.recovery_failures == 1 and c.extra["rcp_timeouts"] >= 2
    with pytest.raises(RcpNotResponding):
        await radio.transmit(data_frame(1, dst=2))


async def test_reset_in_the_middle_of_a_transmit(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    await radio.set_channel(16)
    await radio.set_addresses(pan_id=0x1234, short_addr=0x0001)
    model.tx_results.append(lambda _req: model.reboot(Status.RESET_WATCHDOG))
    res = await radio.transmit(data_frame(5, dst=0x0002))
    assert res.ok  # re-initialised, then sent again
    assert len(model.transmitted) == 2
    s = model.state
    assert (s.channel, s.pan_id, s.short, s.raw_stream) == (16, 0x1234, 0x0001, True)
    c = radio.counters.as_dict()
    assert c["chip_resets_detected"] == 1 and c["rcp_unexpected_resets"] == 1
    assert c["recoveries"] == 1 and c["tx_frames"] == 1
    assert radio.last_reset_status == Status.RESET_POWER_ON


async def test_reset_during_both_tries_of_a_transmit(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    model.tx_results.extend([lambda _r: model.reboot(), lambda _r: model.reboot()])
    with pytest.raises(RadioTransientError):
        await radio.transmit(data_frame(5, dst=0x0002))
    assert radio.healthy and radio.counters.recoveries == 2
    assert (await radio.transmit(data_frame(6, dst=0x0002))).ok


async def test_transmit_that_never_completes(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    model.tx_results.append(lambda _req: None)  # accepted, never done
    assert (await radio.transmit(data_frame(5, dst=0x0002))).ok
    assert radio.counters.as_dict()["rcp_timeouts"] == 1


async def test_rcp_that_lost_its_state_refuses_to_transmit(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    model.state.raw_stream = False  # as after a reset that sent no notice
    assert (await radio.transmit(data_frame(5, dst=0x0002))).ok
    assert radio.counters.as_dict()["rcp_lost_config"] == 1


async def test_unexpected_reset_while_idle_restores_the_configuration(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    await radio.set_channel(24)
    model.reboot(Status.RESET_CRASH)
    await until(lambda: radio.counters.recoveries == 1)
    assert model.state.channel == 24 and model.state.raw_stream
    assert radio.counters.chip_resets_detected == 1


async def test_health_probe_finds_a_silent_reset(rcp_radio: Factory) -> None:
    fast_health = Timeouts(response_s=0.3, reset_s=0.3, tx_s=0.5, health_period_s=0.1)
    radio, model, _peer = await rcp_radio(timeouts=fast_health)
    await radio.set_channel(18)
    model._power_on()  # lost its configuration without saying so
    await until(lambda: radio.counters.recoveries == 1)
    assert model.state.channel == 18
    assert radio.counters.as_dict()["rcp_lost_config"] == 1


async def test_health_probe_finds_a_silent_rcp(rcp_radio: Factory) -> None:
    fast_health = Timeouts(response_s=0.1, reset_s=0.1, tx_s=0.5, health_period_s=0.1)
    radio, model, _peer = await rcp_radio(timeouts=fast_health)
    model.mute = True
    await until(lambda: not radio.healthy, 5.0)
    assert radio.counters.recovery_failures == 1


async def test_link_lost_and_the_rcp_started_again(rcp_radio: Factory) -> None:
    radio, model, peer = await rcp_radio(restartable=True)
    await radio.set_channel(25)
    peer.unplug()  # the RCP process exits
    await until(lambda: radio.counters.recoveries == 1)
    assert peer.link.opens == 2 and model.state.channel == 25 and radio.healthy
    assert radio.counters.as_dict()["rcp_link_lost"] == 1
    assert (await radio.transmit(data_frame(1, dst=2))).ok


async def test_link_lost_for_good(rcp_radio: Factory) -> None:
    radio, _model, peer = await rcp_radio()
    peer.link.fail_open = NoSuchDevice("no serial device /dev/test")
    peer.unplug()  # the dongle is unplugged and stays away
    await until(lambda: not radio.healthy, 5.0)
    with pytest.raises(RcpNotResponding) as err:
        await radio.set_channel(12)
    assert "no serial device" in err.value.message


async def test_stale_and_unsolicited_frames_are_ignored(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()
    model.send(SpinelFrame(Cmd.PROP_VALUE_IS, Prop.PHY_CHAN, b"\x0c", tid=9))  # nobody asked
    model.notify(Prop.STREAM_DEBUG, b"hello from the RCP\x00")
    model.notify(0x3FFF, b"vendor")
    model.send(SpinelFrame(Cmd.PROP_VALUE_IS, Prop.PHY_CHAN, b"\x0c", iid=2))
    model.inject(b"\x00\x11noise\x7e\x7e")
    await asyncio.sleep(0.05)
    c = radio.counters.as_dict()
    assert c["spinel_stale_responses"] == 1 and c["spinel_unhandled"] == 2
    assert radio.healthy and c["recoveries"] == 0
    await radio.set_channel(14)
    assert model.state.channel == 14


async def test_refused_setting_is_an_error_not_a_fault(rcp_radio: Factory) -> None:
    radio, model, _peer = await rcp_radio()

    def refuse(req: SpinelFrame) -> list[bytes] | None:
        if req.prop == Prop.MAC_PROMISCUOUS_MODE:
            return [
                SpinelFrame(Cmd.PROP_VALUE_IS, Prop.LAST_STATUS, b"\x03", tid=req.tid).to_bytes()
            ]
        return None

    model.on_request = refuse
    with pytest.raises(Exception, match="INVALID_ARGUMENT"):
        await radio.set_promiscuous(True)
    assert radio.counters.recoveries == 0


# --- URLs ----------------------------------------------------------------------------------------


def test_urls() -> None:
    r = open_radio("spinel+hdlc+uart:///dev/ttyACM0?uart-baudrate=115200&uart-flow-control=1")
    assert isinstance(r, SpinelRadio) and isinstance(r.link, SerialLink)
    assert (r.link.device, r.link.baudrate, r.link.flow_control) == ("/dev/ttyACM0", 115200, True)
    usb = open_radio("spinel+hdlc+uart:///dev/ttyUSB1")
    assert isinstance(usb, SpinelRadio) and isinstance(usb.link, SerialLink)
    f = open_radio("spinel+hdlc+forkpty:///opt/ot/ot-rcp?forkpty-arg=-v&forkpty-arg=3")
    assert isinstance(f, SpinelRadio) and isinstance(f.link, ForkPtyLink)
    assert (f.link.program, f.link.args) == ("/opt/ot/ot-rcp", ["-v", "3"])
    for bad in ("spinel+hdlc+uart://", "spinel+hdlc+uart:///dev/x?uart-baudrate=fast",
                "spinel+hdlc+forkpty:?forkpty-arg=1", "spinel+cpc+uart:///dev/ttyACM0"):  # fmt: skip
        with pytest.raises(RadioUrlError):
            open_radio(bad)
