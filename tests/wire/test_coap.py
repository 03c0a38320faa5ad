"""TMF / MeshCoP CoAP helpers over aiocoap (gateway.wire.coap)."""

from __future__ import annotations

import warnings
from pathlib import Path

import aiocoap
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidArgument, ParseError
from gateway.wire import meshcop as mc
from gateway.wire.coap import (
    COMMISSIONING_URIS,
    TMF_PORT,
    CoapCode,
    MessageType,
    TmfMessage,
    TmfUri,
    empty_ack,
    new_token,
    tmf_request,
    tmf_response,
)
from tests.wire.test_mle import (
    CHILD_EXT,
    PARENT_EXT,
    as_hex,
    link_local,
    lowpan_udp_frame,
    needs_tshark,
    tshark_fields,
)

TMF_DECODE = (
    "-d",
    "udp.port==61631,coap",
    "-d",
    "media_type==application/octet-stream,thread_coap",
)


def test_comm_pet_bytes_follow_rfc7252() -> None:
    # RFC 7252 §3: Ver=1 | T=CON(0) | TKL=2 -> 0x42; code 0.02 POST; MID big-endian; token.
    # §3.1 options: Uri-Path (11) "c" -> delta 11, length 1 -> 0xb1 'c'; Uri-Path "cp" ->
    # delta 0, length 2 -> 0x02 'c' 'p'; then the 0xff payload marker.
    # Payload: Commissioner ID TLV (type 10, fact sheet §4.8 "0A 0F OT-commissioner").
    msg = tmf_request(
        TmfUri.COMM_PET, [mc.CommissionerIdTlv("OT-commissioner")], mid=0x1234, token=b"\xa1\xb2"
    )
    expected = bytes.fromhex("42021234a1b2b163026370ff0a0f") + b"OT-commissioner"
    assert msg.to_bytes() == expected
    back = TmfMessage.from_bytes(expected)
    assert back == msg
    assert back.tmf_uri is TmfUri.COMM_PET and back.uri == "c/cp" and back.is_request
    assert back.tlvs() == (mc.CommissionerIdTlv("OT-commissioner"),)


def test_piggybacked_and_separate_responses() -> None:
    req = tmf_request(
        TmfUri.COMM_KA, [mc.StateTlv(1), mc.CommissionerSessionIdTlv(7)], mid=9, token=b"\x01\x02"
    )
    ack = tmf_response(req, [mc.StateTlv(1)])
    # RFC 7252 §5.2.1: piggy-backed ACK carries the request's MID and token; 2.04 = 0x44.
    assert ack.to_bytes() == bytes.fromhex("624400090102ff100101")
    assert ack.code_text == "2.04" and ack.is_response
    # OpenThread's Border Agent: empty ACK first, then a NON with the leader's answer
    # (fact sheet §2.3).
    assert empty_ack(req).to_bytes() == bytes.fromhex("60000009")
    sep = tmf_response(req, [mc.StateTlv(1)], separate=True, mid=77)
    assert (sep.mtype, sep.mid, sep.token) == (MessageType.NON, 77, b"\x01\x02")
    with pytest.raises(InvalidArgument):
        tmf_response(req, separate=True)
    non = tmf_request(TmfUri.RLY_RX, [], mid=1, token=b"", confirmable=False)
    assert tmf_response(non, mid=2).mtype == MessageType.NON


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "420212",  # shorter than the header
        "49020001" + "00" * 9,  # TKL 9 is reserved (RFC 7252 §3)
        "4f020001" + "00" * 15,
        "44020001aabb",  # token truncated
        "81020001",  # version 2
        "41000001aa",  # empty message with a token
        "40000001ff01",  # empty message with payload
        "40020001b2ff",  # option runs past the end
        "40020001b1ff",  # Uri-Path not UTF-8
        "40020001f0",  # reserved option delta 15
    ],
)
def test_malformed_messages(bad: str) -> None:
    with pytest.raises(ParseError):
        TmfMessage.from_bytes(bytes.fromhex(bad))


def test_no_aiocoap_deprecation_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        msg = tmf_request("/c/cs", [mc.CommissionerSessionIdTlv(1)], mid=1, token=b"\x00\x01")
        assert msg.uri_path == ("c", "cs")
        assert TmfMessage.from_bytes(msg.to_bytes()) == msg
        native = msg.to_aiocoap()
        assert isinstance(native, aiocoap.Message)
        assert native.encode() == msg.to_bytes()
        assert TmfMessage.from_aiocoap(native) == msg


def test_other_options_are_kept() -> None:
    msg = TmfMessage(
        MessageType.CON,
        CoapCode.POST,
        5,
        b"t",
        ("c", "mg"),
        b"",
        ((2049, b"\x01\x02"), (65000, b"")),
    )
    assert TmfMessage.from_bytes(msg.to_bytes()) == msg


def test_uri_table() -> None:
    # fact sheet §2.2 (OpenThread src/core/thread/uri_paths.cpp) and the commissioning URIs.
    for uri in TmfUri:
        assert len(uri.path) == 2 and all(uri.path)
    assert len({u.value for u in TmfUri}) == len(TmfUri)
    wanted = {
        "c/cp",
        "c/ca",
        "c/rx",
        "c/tx",
        "c/jf",
        "c/je",
        "c/ag",
        "c/cg",
        "c/cs",
        "c/ut",
        "c/ur",
        "c/lp",
        "c/la",
        "c/ja",
        "c/as",
        "c/ps",
        "c/pg",
        "c/dc",
        "c/ar",
    }
    assert {u.value for u in COMMISSIONING_URIS} == wanted
    assert TMF_PORT == 61631
    assert len(new_token()) == 2
    assert TmfMessage(MessageType.CON, 2, 1, b"", ("x", "y")).tmf_uri is None


@needs_tshark
def test_tshark_decodes_tmf_messages(tmp_path: Path) -> None:
    req = tmf_request(
        TmfUri.RLY_RX,
        [
            mc.JoinerUdpPortTlv(1000),
            mc.JoinerIidTlv(bytes.fromhex("d45e64fa83f81cf7")),
            mc.JoinerRouterLocatorTlv(0x0400),
            mc.JoinerDtlsEncapsulationTlv(bytes.fromhex("15fefd000000000000000000020100")),
        ],
        mid=0x0102,
        token=b"\x12\x34",
        confirmable=False,
    )
    pet = tmf_request(TmfUri.LEAD_PET, [mc.CommissionerIdTlv("OT")], mid=3, token=b"\xaa\xbb")
    rsp = tmf_response(pet, [mc.StateTlv(1), mc.CommissionerSessionIdTlv(0x4321)])

    def frame(m: TmfMessage, seq: int) -> bytes:
        return lowpan_udp_frame(
            m.to_bytes(),
            src_ext=CHILD_EXT,
            dst_ext=PARENT_EXT,
            dst_ip=link_local(PARENT_EXT),
            port=TMF_PORT,
            seq=seq,
        )

    rows = tshark_fields(
        tmp_path,
        [frame(req, 1), frame(pet, 2), frame(rsp, 3)],
        [
            "coap.type",
            "coap.code",
            "coap.mid",
            "coap.token",
            "coap.opt.uri_path_recon",
            "coap.opt.uri_path",
            "thread_meshcop.tlv.type",
            "_ws.malformed",
        ],
        *TMF_DECODE,
    )
    r1, r2, r3 = rows
    assert (r1["coap.type"], r1["coap.code"], r1["coap.mid"]) == ("1", "2", "258")
    assert as_hex(r1["coap.token"]) == "1234"
    assert r1["coap.opt.uri_path"] == "c,rx"
    assert r1["thread_meshcop.tlv.type"] == "18,19,20,17"
    assert (r2["coap.type"], r2["coap.opt.uri_path_recon"]) == ("0", "/c/lp")
    assert (r3["coap.type"], r3["coap.code"], r3["coap.mid"]) == ("2", "68", "3")
    assert as_hex(r3["coap.token"]) == "aabb"
    for row in rows:
        assert row["_ws.malformed"] == ""


# --- properties -------------------------------------------------------------------------------

options = st.lists(
    st.tuples(st.sampled_from([2049, 2053, 65000]), st.binary(max_size=20)), max_size=3
).map(lambda xs: tuple(sorted(xs, key=lambda o: o[0])))

messages = st.builds(
    TmfMessage,
    st.sampled_from(list(MessageType)),
    st.integers(1, 255),
    st.integers(0, 0xFFFF),
    st.binary(max_size=8),
    st.one_of(st.just(()), st.sampled_from(list(TmfUri)).map(lambda u: u.path)),
    st.binary(max_size=200),
    options,
)


@settings(max_examples=500, deadline=None)
@given(messages)
def test_roundtrip(msg: TmfMessage) -> None:
    assert TmfMessage.from_bytes(msg.to_bytes()) == msg


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_from_bytes(data: bytes) -> None:
    try:
        msg = TmfMessage.from_bytes(data)
    except ParseError:
        return
    # Anything accepted re-encodes to a message that decodes to the same value.
    assert TmfMessage.from_bytes(msg.to_bytes()) == msg


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=4, max_size=60))
def test_fuzz_valid_header_random_body(body: bytes) -> None:
    try:
        msg = TmfMessage.from_bytes(bytes.fromhex("42020001aaaa") + body)
        msg.tlvs()
    except ParseError:
        pass
