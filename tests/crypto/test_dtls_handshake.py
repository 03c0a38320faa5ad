"""DTLS handshake codecs and the reassembler.

Layouts are checked against bytes written by other implementations: the ClientHello,
HelloVerifyRequest and ServerHello that OpenSSL 3.0.19 sent in the capture used by
``test_dtls_vectors.py`` (frozen vectors, see there).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.dtls_handshake import (
    EXT_ECJPAKE_KEY_KP_PAIR,
    HS_CLIENT_HELLO,
    HS_SERVER_HELLO,
    AddResult,
    ClientHello,
    Extension,
    HandshakeFragment,
    HandshakeReassembler,
    HelloVerifyRequest,
    ServerHello,
    encode_ec_point_formats,
    encode_supported_groups,
    fragment_message,
    full_message,
    parse_ec_point_formats,
    parse_fragments,
    parse_supported_groups,
)
from gateway.crypto.dtls_record import parse_datagram
from gateway.errors import ParseError

# UDP payloads of frames 2 (HelloVerifyRequest), 3 (ClientHello with cookie) and the ServerHello
# record of frame 4 of the OpenSSL capture (see test_dtls_vectors.py).
_OPENSSL_HVR_RECORD = bytes.fromhex(
    "16feff00000000000000000023030000170000000000000017feff1449534a4a0a04236118e59956082e2d3fc6ea0aaa"
)
_OPENSSL_CH_RECORD = bytes.fromhex(
    "16feff000000000000000100880100007c000100000000007cfefd7176b97cfb6d1b9357ba8da11c8c8ee0c0"
    "ddd22b8dbd51024414bf296f4019e9001449534a4a0a04236118e59956082e2d3fc6ea0aaa0004c0a800ff01"
    "00003a002300000016000000170000000d002a0028040305030603080708080809080a080b08040805080604"
    "0105010601030303010302040205020602"
)
_OPENSSL_SH_DATAGRAM = bytes.fromhex(
    "16fefd00000000000000010041020000350001000000000035fefdad304bc65dba095659b0a5b15e92edc8a1"
    "d155d8abf416dac005c0f08a880c7500c0a800000dff01000100002300000017000016fefd00000000000000"
    "0200120c0000060002000000000006000468696e7416fefd0000000000000003000c0e000000000300000000"
    "0000"
)


def test_openssl_hello_verify_request() -> None:
    (frag,) = parse_fragments(_OPENSSL_HVR_RECORD[13:])
    assert (frag.msg_type, frag.message_seq, frag.is_complete) == (3, 0, True)
    hvr = HelloVerifyRequest.from_bytes(frag.fragment)
    assert hvr.server_version == 0xFEFF
    assert hvr.cookie.hex() == "49534a4a0a04236118e59956082e2d3fc6ea0aaa"
    assert hvr.to_bytes() == frag.fragment


def test_openssl_client_hello() -> None:
    (frag,) = parse_fragments(_OPENSSL_CH_RECORD[13:])
    assert frag.msg_type == HS_CLIENT_HELLO and frag.message_seq == 1
    hello = ClientHello.from_bytes(frag.fragment)
    assert hello.client_version == 0xFEFD
    assert hello.cookie.hex() == "49534a4a0a04236118e59956082e2d3fc6ea0aaa"
    assert hello.cipher_suites == (0xC0A8, 0x00FF)
    assert hello.compression_methods == b"\x00"
    assert [e.ext_type for e in hello.extensions or ()] == [0x23, 0x16, 0x17, 0x0D]
    assert hello.to_bytes() == frag.fragment
    assert frag.to_bytes() == _OPENSSL_CH_RECORD[13:]


def test_openssl_server_hello() -> None:
    sh_record, ske_record, shd_record = parse_datagram(_OPENSSL_SH_DATAGRAM)
    (frag,) = parse_fragments(sh_record.fragment)
    assert frag.msg_type == HS_SERVER_HELLO
    hello = ServerHello.from_bytes(frag.fragment)
    assert hello.cipher_suite == 0xC0A8 and hello.session_id == b""
    assert hello.extension(0xFF01) == b"\x00"
    assert hello.extension(23) == b""
    assert hello.to_bytes() == frag.fragment
    (done,) = parse_fragments(shd_record.fragment)
    assert (done.msg_type, done.message_seq, done.fragment) == (14, 3, b"")
    assert len(parse_fragments(ske_record.fragment)) == 1


def test_extension_helpers() -> None:
    # RFC 8422 §5.1.1/§5.1.2 encodings, e.g. supported_groups {secp256r1} = 0002 0017.
    assert encode_supported_groups((23,)) == bytes.fromhex("00020017")
    assert parse_supported_groups(bytes.fromhex("000400170018")) == (23, 24)
    assert encode_ec_point_formats((0,)) == bytes.fromhex("0100")
    assert parse_ec_point_formats(bytes.fromhex("020001")) == (0, 1)
    for bad in (b"", b"\x00", bytes.fromhex("0003001700"), bytes.fromhex("0000")):
        with pytest.raises(ParseError):
            parse_supported_groups(bad)
    for bad in (b"", b"\x00", b"\x02\x00"):
        with pytest.raises(ParseError):
            parse_ec_point_formats(bad)


def test_duplicate_extension_is_rejected() -> None:
    hello = ClientHello(
        0xFEFD,
        bytes(32),
        b"",
        b"",
        (0xC0FF,),
        b"\x00",
        (Extension(10, b"\x00\x02\x00\x17"), Extension(10, b"\x00\x02\x00\x17")),
    )
    with pytest.raises(ParseError):
        ClientHello.from_bytes(hello.to_bytes())


def test_cookie_input_excludes_cookie_only() -> None:
    base = dict(
        client_version=0xFEFD,
        random=bytes(range(32)),
        session_id=b"",
        cipher_suites=(0xC0FF,),
        compression_methods=b"\x00",
        extensions=(Extension(EXT_ECJPAKE_KEY_KP_PAIR, b"round one"),),
    )
    a = ClientHello(cookie=b"", **base)  # type: ignore[arg-type]
    b = ClientHello(cookie=b"x" * 32, **base)  # type: ignore[arg-type]
    assert a.cookie_input() == b.cookie_input()
    c = ClientHello(cookie=b"", **{**base, "extensions": (Extension(256, b"other"),)})  # type: ignore[arg-type]
    assert c.cookie_input() != a.cookie_input()


extensions_st = st.none() | st.lists(
    st.builds(Extension, st.integers(0, 0xFFFF), st.binary(max_size=40)),
    max_size=4,
    unique_by=lambda e: e.ext_type,
).map(tuple)

client_hellos = st.builds(
    ClientHello,
    client_version=st.integers(0, 0xFFFF),
    random=st.binary(min_size=32, max_size=32),
    session_id=st.binary(max_size=32),
    cookie=st.binary(max_size=255),
    cipher_suites=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=8).map(tuple),
    compression_methods=st.binary(min_size=1, max_size=3),
    extensions=extensions_st,
)

server_hellos = st.builds(
    ServerHello,
    server_version=st.integers(0, 0xFFFF),
    random=st.binary(min_size=32, max_size=32),
    session_id=st.binary(max_size=32),
    cipher_suite=st.integers(0, 0xFFFF),
    compression_method=st.integers(0, 255),
    extensions=extensions_st,
)


@given(client_hellos)
def test_client_hello_roundtrip(hello: ClientHello) -> None:
    assert ClientHello.from_bytes(hello.to_bytes()) == hello


@given(server_hellos)
def test_server_hello_roundtrip(hello: ServerHello) -> None:
    assert ServerHello.from_bytes(hello.to_bytes()) == hello


@settings(max_examples=600)
@given(st.binary(max_size=200))
def test_fuzz_hello_parsers_only_parse_error(data: bytes) -> None:
    for parser in (
        ClientHello.from_bytes,
        ServerHello.from_bytes,
        HelloVerifyRequest.from_bytes,
        parse_fragments,
        HandshakeFragment.from_bytes,
        parse_supported_groups,
        parse_ec_point_formats,
    ):
        try:
            parser(data)
        except ParseError:
            pass


# -- fragments and reassembly -------------------------------------------------------------------


def test_fragment_header_layout() -> None:
    # RFC 6347 §4.2.2: msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3)
    frag = HandshakeFragment(1, 0x123456, 0x0102, 0x000010, b"ab")
    assert frag.to_bytes() == bytes.fromhex("01 123456 0102 000010 000002".replace(" ", "")) + b"ab"
    assert full_message(14, 3, b"") == bytes.fromhex("0e000000000300000000 0000".replace(" ", ""))


def test_fragment_outside_message_rejected() -> None:
    with pytest.raises(ParseError):
        parse_fragments(bytes.fromhex("01000004000000000300000002") + b"ab")  # 3 + 2 > 4
    with pytest.raises(ParseError):
        parse_fragments(bytes.fromhex("010000040000000000000004") + b"ab")  # short body


def test_several_messages_in_one_record() -> None:
    data = full_message(2, 1, b"sh") + full_message(14, 2, b"")
    frags = parse_fragments(data)
    assert [(f.msg_type, f.message_seq) for f in frags] == [(2, 1), (14, 2)]


@given(
    body=st.binary(min_size=0, max_size=600),
    size=st.integers(1, 97),
    seed=st.integers(0, 2**32 - 1),
)
def test_reassembly_any_order_with_duplicates(body: bytes, size: int, seed: int) -> None:
    frags = fragment_message(16, 0, body, size)
    assert all(len(f.fragment) <= size for f in frags)
    assert b"".join(f.fragment for f in frags) == body
    rng = random.Random(seed)
    held, rest = frags[0], frags[1:]
    shuffled = rest + rng.choices(rest, k=min(3, len(rest)))
    rng.shuffle(shuffled)
    reasm = HandshakeReassembler(0)
    for f in shuffled:
        assert reasm.add(f, 0) is AddResult.ACCEPTED
    assert reasm.pop() is None  # the first fragment is still missing
    reasm.add(held, 0)
    msg = reasm.pop()
    assert msg is not None and msg.body == body and msg.msg_type == 16
    assert reasm.next_seq == 1 and reasm.pop() is None
    assert reasm.add(held, 0) is AddResult.OLD


def test_reassembly_overlapping_fragments() -> None:
    body = bytes(range(100))
    reasm = HandshakeReassembler(0)
    reasm.add(HandshakeFragment(1, 100, 0, 0, body[:60]), 0)
    reasm.add(HandshakeFragment(1, 100, 0, 40, body[40:90]), 0)
    assert reasm.pop() is None
    reasm.add(HandshakeFragment(1, 100, 0, 85, body[85:]), 0)
    msg = reasm.pop()
    assert msg is not None and msg.body == body


def test_reassembly_order_and_bounds() -> None:
    reasm = HandshakeReassembler(5, max_message_len=100, window=4, max_buffered=150)
    assert reasm.add(HandshakeFragment(1, 1, 4, 0, b"x"), 0) is AddResult.OLD
    assert reasm.add(HandshakeFragment(1, 1, 9, 0, b"x"), 0) is AddResult.DROPPED  # window
    assert reasm.add(HandshakeFragment(1, 101, 5, 0, b"x"), 0) is AddResult.DROPPED  # too long
    assert reasm.add(HandshakeFragment(2, 1, 6, 0, b"b"), 0) is AddResult.ACCEPTED
    assert reasm.pop() is None  # 5 is missing; 6 waits
    assert reasm.add(HandshakeFragment(1, 100, 7, 0, b"c"), 0) is AddResult.ACCEPTED
    assert reasm.add(HandshakeFragment(1, 100, 8, 0, b"d"), 0) is AddResult.DROPPED  # budget
    # inconsistent fragments of one message (other type, length or epoch) are dropped
    assert reasm.add(HandshakeFragment(3, 1, 6, 0, b"b"), 0) is AddResult.DROPPED
    assert reasm.add(HandshakeFragment(2, 1, 6, 0, b"b"), 1) is AddResult.DROPPED
    assert reasm.add(HandshakeFragment(1, 1, 5, 0, b"a"), 0) is AddResult.ACCEPTED
    first, second = reasm.pop(), reasm.pop()
    assert first is not None and second is not None
    assert (first.body, second.body, reasm.next_seq) == (b"a", b"b", 7)
    assert reasm.buffered_bytes == 100
