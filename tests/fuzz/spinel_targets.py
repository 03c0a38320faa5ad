"""Fuzz targets for the Spinel RCP parsers (drivers/spinel), registered in fuzz_parsers.TARGETS.

Seeds are real traffic: the frames OpenThread's ot-rcp sent at start-up (captured from the
simulation build), and what the backend and the test peer produce for every message kind the
backend parses."""

from __future__ import annotations

import functools

from drivers.spinel import rcp
from drivers.spinel.backend import SpinelRadio
from drivers.spinel.codec import (
    SpinelFrame,
    SpinelParseError,
    decode_frame,
    pack,
    unpack,
    unpack_prefix,
)
from drivers.spinel.consts import Cmd, Prop, Status
from drivers.spinel.hdlc import HdlcDecoder, encode_frame
from drivers.spinel.link import FdLink

# Start-up answers of OpenThread's simulated ot-rcp (a93706fde1f2), as it wrote them on its pty.
OT_RCP_STARTUP = bytes.fromhex(
    "7e80060070ee747e"
    "7e8106010403db0a7e"
    "7e830605050c1822810440418604630d7e"
    "7e84060818b43000000000051a8d7e"
    "7e8506b0010ba5057e"
    "7e8606b1010442ba7e"
    "7e87068b247f0dd47e"
    "7e8806279c6fd27e"
)

SPINEL_FORMATS = (
    "i", "ii", "U", "E", "A(i)", "Cc", "b", "C", "c", "S", "A(S)", "A(E)",
    rcp.RX_FORMAT, rcp.TX_FORMAT, rcp.TX_DONE_FORMAT, "Cct(ESSc)t(iCUd)", "t(A(S))D",
)  # fmt: skip


@functools.cache
def spinel_frames() -> tuple[bytes, ...]:
    """Spinel frames (no HDLC) of every kind the backend parses."""
    psdu = bytes.fromhex("41881234ffff0100") + b"hello" + b"\x00\x00"
    rx = rcp.encode_raw_frame(rcp.RawFrame(psdu, -55, -128, 0, 15, 200, 123456, 0))
    ack = rcp.RawFrame(bytes.fromhex("0200070000"), -40, -128, 0, 15, 255, 0, 0)
    done = rcp.encode_tx_done(rcp.TxDone(Status.OK, True, False, ack))
    tx = rcp.encode_tx_request(rcp.TxRequest(psdu, 15))
    frames = [
        SpinelFrame(Cmd.PROP_VALUE_IS, Prop.STREAM_RAW, rx),
        SpinelFrame(Cmd.PROP_VALUE_IS, Prop.LAST_STATUS, done, tid=3),
        SpinelFrame(
            Cmd.PROP_VALUE_IS, Prop.LAST_STATUS, pack("i", Status.NO_ACK) + b"\x00\x00", tid=4
        ),
        SpinelFrame(Cmd.PROP_VALUE_SET, Prop.STREAM_RAW, tx, tid=5),
        SpinelFrame(Cmd.PROP_VALUE_IS, Prop.LAST_STATUS, pack("i", Status.RESET_POWER_ON)),
        SpinelFrame(Cmd.PROP_VALUE_IS, Prop.MAC_ENERGY_SCAN_RESULT, pack("Cc", 15, -70)),
        SpinelFrame(
            Cmd.PROP_VALUE_INSERTED, Prop.MAC_SRC_MATCH_SHORT_ADDRESSES, b"\x05\x00", tid=6
        ),
        SpinelFrame(Cmd.PROP_VALUE_IS, Prop.STREAM_DEBUG, b"log line\x00"),
        SpinelFrame(Cmd.RESET, None, b"\x02"),
    ]
    out = [f.to_bytes() for f in frames]
    out.extend(HdlcDecoder().feed(OT_RCP_STARTUP))
    return tuple(out)


def hdlc_seeds() -> list[bytes]:
    return [OT_RCP_STARTUP, b"".join(encode_frame(f) for f in spinel_frames()[:4])]


def value_seeds() -> list[bytes]:
    """A format selector byte, then a value in that format."""
    seeds = []
    for frame in spinel_frames():
        value = decode_frame(frame).value
        for i, fmt in enumerate(SPINEL_FORMATS):
            try:
                unpack(fmt, value)
            except SpinelParseError:
                continue
            seeds.append(bytes((i,)) + value)
    return seeds


def rcp_value_seeds() -> list[bytes]:
    """A parser selector byte, then the value of a raw-stream or status frame."""
    seeds = []
    for frame in spinel_frames():
        f = decode_frame(frame)
        if f.prop == Prop.STREAM_RAW:
            seeds.append((b"\x00" if f.command == Cmd.PROP_VALUE_IS else b"\x02") + f.value)
        elif f.prop == Prop.LAST_STATUS:
            seeds.extend((b"\x01" + f.value, b"\x03" + f.value))
    return seeds


def compat_seeds() -> list[bytes]:
    ok = pack("iiUA(i)", 4, 3, "OPENTHREAD/x; SIMULATION", [5, 34, 513, 64, 65])
    return [pack("iiii", 11, 4, 0x7F, 0) + ok, pack("iiii", 3, 12, 0, 1) + ok]


def t_spinel_hdlc(data: bytes) -> None:
    dec = HdlcDecoder(max_payload=300)
    half = len(data) // 2
    for chunk in (data[:half], data[half:]):
        for payload in dec.feed(chunk):
            assert len(payload) <= 300, "a payload over the bound"
            assert HdlcDecoder().feed(encode_frame(payload)) == [payload], "no round trip"
        assert dec.pending <= 2 * 302, "the buffer grew past its bound"


def t_spinel_frame(data: bytes) -> None:
    frame = decode_frame(data)
    assert decode_frame(frame.to_bytes()) == frame, "a decoded frame does not re-encode"


def t_spinel_values(data: bytes) -> None:
    if not data:
        return
    fmt = SPINEL_FORMATS[data[0] % len(SPINEL_FORMATS)]
    unpack(fmt, data[1:], partial=True)
    values = unpack(fmt, data[1:])
    unpack(fmt, pack(fmt, *values))  # what parsed packs again and parses


def t_spinel_rcp_values(data: bytes) -> None:
    if not data:
        return
    kind, value = data[0] % 4, data[1:]
    if kind == 0:
        frame = rcp.parse_raw_frame(value)
        assert len(frame.psdu) <= rcp.MAX_PSDU
    elif kind == 1:
        rcp.parse_tx_done(value)
    elif kind == 2:
        rcp.parse_tx_request(value)
    else:
        rcp.parse_last_status(value)


def t_spinel_compat(data: bytes) -> None:
    """The start-up checks on hostile identities: RcpIncompatible or nothing."""
    (api, min_host, radio_caps, _r), end = unpack_prefix("iiii", data)
    major, minor, version, caps = unpack("iiUA(i)", data[end:])
    rcp.check_protocol_version((major, minor), version)
    rcp.check_caps(tuple(caps), version)
    rcp.check_api_versions(api, min_host, version)
    rcp.check_radio_caps(radio_caps, version)


def t_spinel_host_receive(data: bytes) -> None:
    """Hostile bytes from an RCP into the backend's receive path (framing, frame dispatch, raw
    frames to a subscriber, status, scan results): nothing may escape."""
    radio = SpinelRadio("fuzz", FdLink(-1, "fuzz"))
    radio._on_data(data)
    radio._on_data(OT_RCP_STARTUP)
    counters = radio.counters.as_dict()
    assert counters["hdlc_frames"] >= 8, "the decoder lost sync for good"
