"""HDLC-lite framing: known answers from OpenThread (pyspinel's HDLC vectors, bytes captured
from OpenThread's simulated ot-rcp at a93706fde1f2) and every way a frame can go wrong."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.spinel.hdlc import (
    GOOD_FCS,
    MAX_PAYLOAD,
    HdlcDecoder,
    encode_frame,
    fcs16,
    frame_check_sequence,
)

# openthread/pyspinel spinel/test_hdlc.py: payload -> HDLC-lite frame
PYSPINEL_VECTORS = {
    "810243": "7e810243d3d37e",
    "8103367e7d": "7e8103367d5e7d5d6af97e",
}
# What OpenThread's ot-rcp (simulation, a93706fde1f2) wrote on its pty: the reset notice it sends
# when it starts (LAST_STATUS RESET_POWER_ON) and its answer to PROTOCOL_VERSION (4.3).
OT_RCP_RESET_NOTICE = "7e80060070ee747e"
OT_RCP_PROTOCOL_VERSION = "7e8106010403db0a7e"


def test_fcs_is_crc16_x25() -> None:
    # the catalogue check value of CRC-16/X-25 (= PPP's FCS-16, RFC 1662)
    assert frame_check_sequence(b"123456789") == (0x906E).to_bytes(2, "little")
    assert fcs16(b"123456789" + frame_check_sequence(b"123456789")) == GOOD_FCS
    assert frame_check_sequence(b"") == b"\x00\x00"


@pytest.mark.parametrize("payload, frame", sorted(PYSPINEL_VECTORS.items()))
def test_pyspinel_vectors(payload: str, frame: str) -> None:
    assert encode_frame(bytes.fromhex(payload)).hex() == frame
    assert HdlcDecoder().feed(bytes.fromhex(frame)) == [bytes.fromhex(payload)]


def test_frames_ot_rcp_wrote() -> None:
    dec = HdlcDecoder()
    out = dec.feed(bytes.fromhex(OT_RCP_RESET_NOTICE + OT_RCP_PROTOCOL_VERSION))
    assert out == [bytes.fromhex("80060070"), bytes.fromhex("8106010403")]
    assert encode_frame(bytes.fromhex("80060070")).hex() == OT_RCP_RESET_NOTICE
    assert dec.stats.frames == 2 and dec.stats.errors == 0


def test_every_special_byte_is_escaped() -> None:
    payload = bytes((0x7E, 0x7D, 0x11, 0x13, 0xF8, 0x00, 0x5E))
    frame = encode_frame(payload)
    body = frame[1:-1]
    assert 0x7E not in body and 0x11 not in body and 0x13 not in body and 0xF8 not in body
    assert body.startswith(bytes.fromhex("7d5e7d5d7d317d337dd8005e"))
    assert HdlcDecoder().feed(frame) == [payload]


def test_byte_at_a_time_and_shared_flags() -> None:
    a, b = encode_frame(b"\x81\x02\x01"), encode_frame(b"\x82\x06\x02abc")
    stream = b"\x7e\x7e" + a + b[1:]  # frames may share their flags; repeated flags are idle
    dec = HdlcDecoder()
    got = [f for byte in stream for f in dec.feed(bytes((byte,)))]
    assert got == [b"\x81\x02\x01", b"\x82\x06\x02abc"]


def test_bad_fcs_is_dropped_and_counted() -> None:
    frame = bytearray(encode_frame(b"\x80\x06\x00\x70"))
    frame[3] ^= 0x01
    dec = HdlcDecoder()
    assert dec.feed(bytes(frame) + encode_frame(b"\x81\x06\x00\x00")) == [b"\x81\x06\x00\x00"]
    assert dec.stats.bad_fcs == 1


def test_truncated_frames() -> None:
    dec = HdlcDecoder()
    assert dec.feed(b"\x7e\x80\x7e") == []  # one byte: not even an FCS
    assert dec.stats.too_short == 1
    # a frame cut short by the next flag fails its FCS
    good = encode_frame(b"\x80\x06\x00\x70")
    assert dec.feed(good[:-3] + good) == [b"\x80\x06\x00\x70"]
    assert dec.stats.bad_fcs == 1
    # an escape right before the flag aborts the frame
    assert dec.feed(b"\x7e\x80\x06\x7d\x7e") == []
    assert dec.stats.bad_escape == 1


def test_noise_before_the_first_flag_is_skipped() -> None:
    dec = HdlcDecoder()
    assert dec.feed(b"garbage from a boot loader" + encode_frame(b"\x80\x01")) == [b"\x80\x01"]
    assert dec.stats.noise_bytes == len(b"garbage from a boot loader")


def test_an_endless_frame_stays_bounded() -> None:
    dec = HdlcDecoder()
    dec.feed(b"\x7e")
    for _ in range(200):
        assert dec.feed(b"\x55" * 100) == []
        assert dec.pending <= 2 * (MAX_PAYLOAD + 2)
    assert dec.stats.too_long == 1
    assert dec.feed(encode_frame(b"\x80\x01")) == [b"\x80\x01"]  # and it recovers


def test_encode_refuses_oversized_payloads() -> None:
    with pytest.raises(ValueError):
        encode_frame(bytes(MAX_PAYLOAD + 1))


@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 64))
def test_round_trip_in_any_chunking(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    dec = HdlcDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got.extend(dec.feed(stream[i : i + chunk]))
    assert got == payloads
    assert dec.stats.errors == 0


@given(st.binary(max_size=2000))
def test_hostile_bytes_never_raise(data: bytes) -> None:
    dec = HdlcDecoder(max_payload=200)
    for f in dec.feed(data):
        assert len(f) <= 200
    assert dec.pending <= 2 * 202
