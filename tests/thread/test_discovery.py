"""MLE Discovery for joiners and joiner routers (gateway.thread.commissioning.discovery) and the DNS-SD record
of the border agent (gateway.thread.commissioning.dnssd)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.thread_keys import SteeringData, joiner_id
from gateway.errors import ParseError
from gateway.thread.commissioning.discovery import (
    MAX_RESPONSE_DELAY,
    NetworkInfo,
    answer_discovery,
    candidate_priority,
    discovery_request_packet,
    parse_discovery_response_datagram,
)
from gateway.thread.commissioning.dnssd import (
    ConnectionMode,
    InterfaceStatus,
    ThreadRole,
    instance_name,
    meshcop_txt,
    parse_meshcop_txt,
    state_bitmap,
)
from gateway.thread.link import LinkReceiver, LinkSecurity, TagAllocator, encode_datagram
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.mac802154 import BROADCAST, ExtAddress, MacFrame
from gateway.wire.meshcop import Timestamp
from gateway.wire.mle import MleMessage, discovery_request, parse_discovery_response, parse_mle

ROUTER = ExtAddress.from_hex("12b4300000000001")
JOINER_EUI = bytes.fromhex("18b4300000000002")
JOINER_ID = joiner_id(JOINER_EUI)  # d65e64fa83f81cf7 (fact sheet §5.3, OpenThread CLI README)
SCAN_ADDR = ExtAddress.from_hex("269eb173f9fa93c8")
NET = NetworkInfo(
    ext_pan_id=bytes.fromhex("dead00beef00cafe"),
    network_name="OpenThread-8a63",
    pan_id=0x8A63,
    ext_addr=ROUTER,
)


def _received(packet: Ipv6Packet, src: ExtAddress, dst, dst_pan: int, src_pan: int, **kw):
    frames = encode_datagram(
        packet, src=src, dst=dst, dst_pan=dst_pan, src_pan=src_pan, tags=TagAllocator(0)
    )
    rx = LinkReceiver()
    out = None
    for f in frames:
        wire = MacFrame.from_bytes(f.frame.to_bytes())
        out = rx.receive(wire, LinkSecurity.NONE, 0.0, **kw) or out
    assert out is not None
    return out


def request_from_joiner(packet: Ipv6Packet | None = None):
    packet = packet or discovery_request_packet(SCAN_ADDR)
    return _received(packet, SCAN_ADDR, BROADCAST, 0xFFFF, 0xCF2B)


def test_joiner_router_answers_only_while_joining_is_allowed() -> None:
    req = request_from_joiner()
    sd = SteeringData.empty().with_joiner_id(JOINER_ID).to_bytes()
    assert answer_discovery(req, NET, joining_allowed=False, steering_data=sd,
                            joiner_udp_port=1000) is None  # fmt: skip
    reply = answer_discovery(
        req, NET, joining_allowed=True, steering_data=sd, joiner_udp_port=1000,
        rng=random.Random(1),
    )  # fmt: skip
    assert reply is not None
    assert 0.0 <= reply.delay <= MAX_RESPONSE_DELAY
    assert reply.dst == SCAN_ADDR and reply.dst_pan == 0xCF2B  # back to the joiner's random PAN
    assert reply.packet.hop_limit == 255 and reply.packet.dst == req.packet.src
    msg = parse_mle(reply.packet.udp_datagram().payload)
    assert isinstance(msg, MleMessage)
    info = parse_discovery_response(msg)
    assert (info.ext_pan_id, info.network_name) == (NET.ext_pan_id, NET.network_name)
    assert info.steering_data == sd and info.joiner_udp_port == 1000
    # fact sheet §7: OpenThread's order of the Discovery Response sub-TLVs
    assert [t.TYPE for t in msg.tlvs[0].tlvs] == [129, 2, 3, 8, 18]  # type: ignore[union-attr]


def test_no_answer_to_our_own_extended_pan_id() -> None:
    msg = discovery_request(ext_pan_id=NET.ext_pan_id)
    pkt = Ipv6Packet.udp(
        discovery_request_packet(SCAN_ADDR).src, "ff02::2", 19788, 19788,
        msg.to_unsecured_bytes(), hop_limit=255,
    )  # fmt: skip
    assert answer_discovery(request_from_joiner(pkt), NET, joining_allowed=True,
                            steering_data=b"\xff", joiner_udp_port=1000) is None  # fmt: skip


def test_a_non_joiner_request_is_answered_even_when_locked() -> None:
    msg = discovery_request(joiner=False)
    pkt = Ipv6Packet.udp(
        discovery_request_packet(SCAN_ADDR).src, "ff02::2", 19788, 19788,
        msg.to_unsecured_bytes(), hop_limit=255,
    )  # fmt: skip
    reply = answer_discovery(request_from_joiner(pkt), NET, joining_allowed=False,
                             steering_data=None, joiner_udp_port=1000)  # fmt: skip
    assert reply is not None


def _response_to_joiner(steering: bytes | None, port: int, rssi: int = -50):
    reply = answer_discovery(
        request_from_joiner(), NET, joining_allowed=True, steering_data=steering,
        joiner_udp_port=port,
    )  # fmt: skip
    assert reply is not None
    return _received(reply.packet, ROUTER, reply.dst, reply.dst_pan, NET.pan_id, rssi=rssi,
                     channel=15)  # fmt: skip


def test_joiner_keeps_only_responses_that_admit_it() -> None:
    mine = SteeringData.empty().with_joiner_id(JOINER_ID).to_bytes()
    other = SteeringData.empty().with_eui64(bytes(8)).to_bytes()
    cand = parse_discovery_response_datagram(_response_to_joiner(mine, 1000), JOINER_ID)
    assert cand is not None
    assert (cand.ext_addr, cand.pan_id, cand.channel, cand.joiner_udp_port) == (
        ROUTER, NET.pan_id, 15, 1000,
    )  # fmt: skip
    assert cand.priority == -50 + 256
    assert parse_discovery_response_datagram(_response_to_joiner(other, 1000), JOINER_ID) is None
    assert parse_discovery_response_datagram(_response_to_joiner(None, 1000), JOINER_ID) is None
    permit = parse_discovery_response_datagram(_response_to_joiner(b"\xff", 1000), JOINER_ID)
    assert permit is not None and permit.priority == -50 + 128
    # a request is not a response
    assert parse_discovery_response_datagram(request_from_joiner(), JOINER_ID) is None


@pytest.mark.parametrize(
    ("rssi", "permit_all", "expected"),
    # OpenThread joiner.cpp (fact sheet §4.3): RSSI clamped to -127..-1, +128 permit-all,
    # +256 for a specific match
    [(-60, False, 196), (-60, True, 68), (0, False, 255), (-200, True, 1)],
)
def test_candidate_priority(rssi: int, permit_all: bool, expected: int) -> None:
    sd = SteeringData.permit_all() if permit_all else SteeringData.empty().with_joiner_id(JOINER_ID)
    assert candidate_priority(rssi, sd) == expected


# -- DNS-SD -----------------------------------------------------------------------------------


def test_state_bitmap_matches_the_fact_sheet_example() -> None:
    # fact sheet §8: running BA (PSKc), leader, active, high availability, no BBR, ePSKc
    # supported -> 0x00000E31
    assert state_bitmap(epskc_supported=True) == 0x0E31
    assert state_bitmap() == 0x0631  # what the gateway publishes (no ePSKc)
    assert (
        state_bitmap(
            connection_mode=ConnectionMode.DISABLED,
            interface_status=InterfaceStatus.NOT_INITIALIZED,
            high_availability=False,
            role=ThreadRole.DISABLED_OR_DETACHED,
        )
        == 0
    )


def test_txt_record_keys_and_round_trip() -> None:
    xa = ExtAddress.from_hex("d6bffa0cbba1b012")
    txt = meshcop_txt(
        ext_addr=xa, network_name="Home", ext_pan_id=bytes(range(8)), state=0x631,
        active_timestamp=Timestamp(1), partition_id=7, border_agent_id=bytes(16),
        vendor_name="Gateway", model_name="BorderRouter",
    )  # fmt: skip
    assert txt[b"rv"] == b"1" and txt[b"sb"] == bytes.fromhex("00000631")
    assert txt[b"xa"] == xa.octets and txt[b"at"] == Timestamp(1).to_bytes()
    assert set(txt) == {b"id", b"rv", b"tv", b"sb", b"nn", b"xp", b"xa", b"pt", b"at", b"vn", b"mn"}
    rec = parse_meshcop_txt("x", ("127.0.0.1",), 49191, txt)
    assert (rec.network_name, rec.ext_pan_id, rec.state, rec.connection_mode) == (
        "Home", bytes(range(8)), 0x631, 1,
    )  # fmt: skip
    # ot-br-posix instance name form: "<vendor> <product> #<last two bytes>"
    assert instance_name("OpenThread", "BorderRouter", xa) == "OpenThread BorderRouter #B012"
    with pytest.raises(ParseError):
        parse_meshcop_txt("x", (), 1, {b"xp": b"short"})
    with pytest.raises(ParseError):
        parse_meshcop_txt("x", (), 1, {b"nn": b"\xff\xfe"})


@settings(max_examples=300, deadline=None)
@given(
    props=st.dictionaries(
        st.sampled_from([b"nn", b"xp", b"xa", b"sb", b"tv", b"rv", b"zz"]),
        st.one_of(st.none(), st.binary(max_size=20)),
    )
)
def test_txt_parser_raises_only_parse_error(props: dict[bytes, bytes | None]) -> None:
    try:
        parse_meshcop_txt("x", (), 1, props)
    except ParseError:
        pass
