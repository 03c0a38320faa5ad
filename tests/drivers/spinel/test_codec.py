"""Spinel frames and data types: the test vectors of OpenThread's Spinel documentation
(doc/spinel-protocol-src/spinel-test-vectors.md), frames OpenThread's ot-rcp sent, and hostile
input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.spinel.codec import (
    SpinelFrame,
    SpinelParseError,
    decode_frame,
    pack,
    pack_uint,
    unpack,
    unpack_prefix,
    unpack_uint,
)
from drivers.spinel.consts import Cmd, Prop, Status

# "Test Vector: Packed Unsigned Integer"
PUI = [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (129, "8101"), (1337, "b90a"),
    (16383, "ff7f"), (16384, "808001"), (16385, "818001"), (2097151, "ffff7f"),
]  # fmt: skip


@pytest.mark.parametrize("value, encoded", PUI)
def test_packed_uint_vectors(value: int, encoded: str) -> None:
    assert pack_uint(value).hex() == encoded
    assert unpack_uint(bytes.fromhex(encoded)) == (value, len(encoded) // 2)


def test_packed_uint_limits() -> None:
    with pytest.raises(ValueError):
        pack_uint(1 << 21)
    with pytest.raises(ValueError):
        pack_uint(-1)
    with pytest.raises(SpinelParseError):
        unpack_uint(bytes.fromhex("ffffff7f"))  # a fourth byte
    with pytest.raises(SpinelParseError):
        unpack_uint(bytes.fromhex("8080"))  # runs past the end


def test_reset_command_vector() -> None:
    # "Test Vector: Reset Command": NLI 0, TID 0, CMD_RESET
    assert SpinelFrame(Cmd.RESET).to_bytes().hex() == "8001"
    assert decode_frame(bytes.fromhex("8001")) == SpinelFrame(Cmd.RESET)


def test_reset_notification_vector() -> None:
    # "Test Vector: Reset Notification": CMD_VALUE_IS PROP_LAST_STATUS STATUS_RESET_SOFTWARE
    frame = decode_frame(bytes.fromhex("80060072"))
    assert (frame.command, frame.prop, frame.tid) == (Cmd.PROP_VALUE_IS, Prop.LAST_STATUS, 0)
    assert unpack("i", frame.value) == (Status.RESET_SOFTWARE,)
    assert SpinelFrame(Cmd.PROP_VALUE_IS, Prop.LAST_STATUS, b"\x72").to_bytes().hex() == "80060072"


def test_scan_beacon_vector() -> None:
    # "Test Vector: Scan Beacon": structures with lengths, a string, data with a length
    raw = bytes.fromhex(
        "80 07 33 0F C4 0D 00 B6 40 D4 8C E9 38 F9 52 FF FF D2 04 00"
        "13 00 03 20 73 70 69 6E 65 6C 00 08 00 DE AD 00 BE EF 00 CA FE"
    )
    frame = decode_frame(raw)
    assert (frame.command, frame.prop) == (Cmd.PROP_VALUE_INSERTED, 51)
    fmt = "Cct(ESSc)t(iCUd)"
    chan, rssi, mac, net = unpack(fmt, frame.value)
    assert (chan, rssi) == (15, -60)
    assert mac == (bytes.fromhex("B640D48CE938F952"), 0xFFFF, 0x04D2, 0)
    assert net == (3, 0x20, "spinel", bytes.fromhex("DEAD00BEEF00CAFE"))
    assert pack(fmt, chan, rssi, mac, net) == frame.value


def test_on_mesh_networks_request_vector() -> None:
    # "Test Vector: Fetch list of on-mesh networks": TID 4, CMD_VALUE_GET, PROP 90
    frame = SpinelFrame(Cmd.PROP_VALUE_GET, 90, tid=4)
    assert frame.to_bytes().hex() == "84025a"
    # "Removing a local on-mesh network": TID 6, CMD_VALUE_REMOVE, PROP 90, an IPv6 prefix
    remove = decode_frame(bytes.fromhex("86055a20010db8000300000000000000000000"))
    assert (remove.tid, remove.command, remove.prop) == (6, Cmd.PROP_VALUE_REMOVE, 90)
    assert unpack("6", remove.value) == (bytes.fromhex("20010db8000300000000000000000000"),)


def test_frames_ot_rcp_sent() -> None:
    # answers of OpenThread's simulated ot-rcp (a93706fde1f2) to the host's start-up queries
    caps = decode_frame(bytes.fromhex("830605050c1822810440418604"))
    assert (caps.tid, caps.prop) == (3, Prop.CAPS)
    assert unpack("A(i)", caps.value) == ([5, 12, 24, 34, 513, 64, 65, 518],)
    hwaddr = decode_frame(bytes.fromhex("84060818b4300000000005"))
    assert unpack("E", hwaddr.value) == (bytes.fromhex("18b4300000000005"),)
    radio_caps = decode_frame(bytes.fromhex("87068b247f"))
    assert radio_caps.prop == Prop.RADIO_CAPS
    assert int(Prop.RADIO_CAPS) == 0x120B
    assert unpack("i", radio_caps.value) == (0x7F,)
    sensitivity = decode_frame(bytes.fromhex("8806279c"))
    assert unpack("c", sensitivity.value) == (-100,)


def test_all_types_round_trip() -> None:
    fmt = "bCcSsLlXxiEe6dUt(CS)t(A(S))D"  # an array not last sits in a structure
    values = (True, 200, -5, 0xBEEF, -2, 0xDEADBEEF, -7, 2**63, -(2**40), 70000,
              bytes(range(8)), bytes(6), bytes(16), b"data", "héllo", (1, 2), ([3, 4],), b"rest")  # fmt: skip
    encoded = pack(fmt, *values)
    assert unpack(fmt, encoded) == values
    assert unpack_prefix("bC", encoded) == ((True, 200), 2)


def test_data_is_length_prefixed_unless_last() -> None:
    assert pack("D", b"ab") == b"ab"
    assert pack("DC", b"ab", 1) == b"\x02\x00ab\x01"
    assert pack("d", b"ab") == b"\x02\x00ab"


def test_partial_metadata() -> None:
    assert unpack("dcc", b"\x01\x00\xaa\xf0", partial=True) == (b"\xaa", -16)
    with pytest.raises(SpinelParseError):
        unpack("dcc", b"\x01\x00\xaa\xf0")


@pytest.mark.parametrize(
    "fmt, data",
    [
        ("S", b"\x01"),
        ("d", b"\x05\x00abc"),
        ("U", b"no terminator"),
        ("U", b"\xff\xfe\x00"),
        ("t(CC)", b"\x01\x00\x05"),
        ("t(S)", b"\x05\x00\x01"),
        ("E", b"\x00" * 7),
        ("A(S)", b"\x01\x02\x03"),
    ],
)
def test_malformed_values(fmt: str, data: bytes) -> None:
    with pytest.raises(SpinelParseError):
        unpack(fmt, data)


def test_malformed_frames() -> None:
    for raw in (b"", b"\x00\x06", b"\xc1\x06", b"\x81", b"\x81\x86", bytes(1301)):
        with pytest.raises(SpinelParseError):
            decode_frame(raw)


def test_bad_formats_and_values() -> None:
    for fmt in ("t", "t(C", "C)", "Q"):
        with pytest.raises(ValueError):
            pack(fmt, 1)
    with pytest.raises(ValueError):
        pack("C", 256)
    with pytest.raises(ValueError):
        pack("E", b"short")
    with pytest.raises(ValueError):
        pack("CC", 1)
    with pytest.raises(ValueError):
        SpinelFrame(Cmd.PROP_VALUE_GET).to_bytes()  # needs a property
    with pytest.raises(ValueError):
        SpinelFrame(Cmd.RESET, Prop.CAPS).to_bytes()  # takes none


@given(
    st.binary(max_size=64),
    st.sampled_from(["i", "dccSt(CCX)t(i)t(CL)", "A(i)", "Cct(ESSc)t(iCUd)", "U", "A(t(ES))"]),
)
def test_hostile_values_raise_only_parse_errors(data: bytes, fmt: str) -> None:
    try:
        unpack(fmt, data, partial=True)
        unpack(fmt, data)
    except SpinelParseError:
        pass


@given(st.binary(max_size=64))
def test_hostile_frames_raise_only_parse_errors(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except SpinelParseError:
        return
    assert decode_frame(frame.to_bytes()) == frame
