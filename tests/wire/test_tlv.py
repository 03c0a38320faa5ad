"""Generic Thread TLV framing (gateway.wire.tlv)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidArgument, ParseError
from gateway.wire.tlv import (
    MAX_BASE_LENGTH,
    Tlv,
    decode_tlvs,
    encode_tlvs,
    find_all,
    find_first,
)


def test_openthread_unit_test_sequence() -> None:
    # Independent source: openthread/openthread tests/unit/test_tlv.cpp (TestTlv) appends, in
    # order, an empty base TLV of type 1, an empty *extended* TLV of type 2, a base TLV of type 3
    # holding 0xff and an extended TLV of type 4 holding 0x12 0x34, and finds each by type.
    # ExtendedTlv there is type | 0xff | 16-bit big-endian length (src/core/common/tlvs.hpp).
    wire = bytes.fromhex("010002ff00000301ff04ff00021234")
    tlvs = decode_tlvs(wire)
    assert [(t.type, t.value, t.extended) for t in tlvs] == [
        (1, b"", False),
        (2, b"", True),
        (3, b"\xff", False),
        (4, b"\x12\x34", True),
    ]
    assert encode_tlvs(tlvs) == wire
    assert find_first(tlvs, 4) == Tlv(4, b"\x12\x34", True)
    assert find_first(tlvs, 9) is None
    # "Add a TLV with missing value": the same test expects a parse error.
    with pytest.raises(ParseError):
        decode_tlvs(wire + bytes.fromhex("0502aa"))


def test_long_values_switch_to_extended_form() -> None:
    # fact sheet §3.1: base TLVs carry at most 254 bytes (OT_NETWORK_BASE_TLV_MAX_LENGTH).
    assert Tlv(7, bytes(MAX_BASE_LENGTH)).to_bytes()[:2] == bytes((7, 254))
    long = Tlv(7, bytes(255)).to_bytes()
    assert long[:4] == bytes((7, 0xFF, 0x00, 0xFF)) and len(long) == 259
    assert Tlv(7, bytes(1000)).size == 1004
    assert decode_tlvs(long) == (Tlv(7, bytes(255), True),)
    # A short value asked for in extended form (OpenThread does this for the Joiner DTLS and UDP
    # encapsulation TLVs) keeps that form.
    assert Tlv(17, b"ab", extended=True).to_bytes() == bytes.fromhex("11ff00026162")


@pytest.mark.parametrize(
    "bad",
    ["01", "0102aa", "01ff", "01ff00", "01ff0003aabb", "010005"],
)
def test_truncated_input_raises_parse_error(bad: str) -> None:
    with pytest.raises(ParseError):
        decode_tlvs(bytes.fromhex(bad))


def test_tlv_from_bytes_needs_exactly_one() -> None:
    assert Tlv.from_bytes(b"\x05\x01\x07") == Tlv(5, b"\x07")
    with pytest.raises(ParseError):
        Tlv.from_bytes(b"\x05\x01\x07\x06\x00")
    with pytest.raises(ParseError):
        Tlv.from_bytes(b"")


def test_repr_never_shows_the_value() -> None:
    key = bytes.fromhex("00112233445566778899aabbccddeeff")
    text = repr(Tlv(5, key))
    assert "0011" not in text and "\\x" not in text and "len=16" in text


def test_invalid_construction() -> None:
    with pytest.raises(InvalidArgument):
        Tlv(256, b"")
    with pytest.raises(InvalidArgument):
        Tlv(-1, b"")
    with pytest.raises(InvalidArgument):
        Tlv(1, bytes(0x10000))
    assert Tlv(1, bytearray(b"ab")).value == b"ab"  # type: ignore[arg-type]


def test_find_all_keeps_order() -> None:
    tlvs = decode_tlvs(bytes.fromhex("0101aa02000101bb"))
    assert [t.value for t in find_all(tlvs, 1)] == [b"\xaa", b"\xbb"]


tlv_strategy = st.builds(
    Tlv,
    st.integers(0, 255),
    st.binary(max_size=300),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(tlv_strategy, max_size=8))
def test_roundtrip_lists(tlvs: list[Tlv]) -> None:
    assert list(decode_tlvs(encode_tlvs(tlvs))) == [
        Tlv(t.type, t.value, t.is_extended) for t in tlvs
    ]


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_only_parse_error_and_exact_reencode(data: bytes) -> None:
    try:
        tlvs = decode_tlvs(data)
    except ParseError:
        return
    # Whatever parses re-encodes byte-identically (the form of each TLV is kept).
    assert encode_tlvs(tlvs) == data
