"""The link adaptation layer (gateway.thread.link): datagrams to frames and back."""

from __future__ import annotations

import dataclasses
import random
from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.fcs import append_fcs
from gateway.errors import CryptoError, InvalidArgument
from gateway.thread.commissioning.discovery import discovery_request_packet
from gateway.thread.link import (
    LinkReceiver,
    LinkSecurity,
    TagAllocator,
    classify_security,
    encode_datagram,
    link_local,
    secure_tx_frame,
    unsecure_frame,
)
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.mac802154 import BROADCAST, ExtAddress, FrameType, MacFrame
from gateway.wire.mle import THREAD_VERSION_1_4

JOINER = ExtAddress.from_hex("d65e64fa83f81cf7")
ROUTER = ExtAddress.from_hex("d6bffa0cbba1b012")
PAN = 0xFB9F
KEK = bytes(range(16))
MAC_KEY = bytes(range(16, 32))

# openthread-sim-air.md ("inject_test.py"): the MLE Discovery Request a real OpenThread joiner
# sends, byte for byte (seq 7, random source PAN 0xcf2b, random extended address
# 269eb173f9fa93c8, Thread 1.4, joiner flag), FCS included.
OT_DISCOVERY_REQUEST = bytes.fromhex(
    "01d807ffffffff2bcfc893faf973b19e267f3b02f04d4c4d4c12c3ff101a0480025800fd00"
)


def test_discovery_request_is_byte_identical_to_openthreads() -> None:
    src = ExtAddress.from_hex("269eb173f9fa93c8")
    packet = discovery_request_packet(src, version=THREAD_VERSION_1_4)
    frames = encode_datagram(
        packet, src=src, dst=BROADCAST, dst_pan=0xFFFF, src_pan=0xCF2B, tags=TagAllocator(0)
    )
    assert len(frames) == 1 and frames[0].security is LinkSecurity.NONE
    psdu = dataclasses.replace(frames[0].frame, seq=7).to_bytes()
    assert append_fcs(psdu) == OT_DISCOVERY_REQUEST


def _dtls_packet(size: int) -> Ipv6Packet:
    payload = random.Random(size).randbytes(size)
    return Ipv6Packet.udp(link_local(JOINER), link_local(ROUTER), 1000, 1000, payload)


@pytest.mark.parametrize(
    ("datagram", "frames"),
    # openthread-sim-air.md: OpenThread sent its 475-byte ClientHello datagram as FRAG1 + 4
    # FRAGN in 124-byte PSDUs, the 708-byte server flight as FRAG1 + 6 FRAGN, and the 305-byte
    # final flight as FRAG1 + 2 FRAGN (sizes of the IPv6 datagrams: 40 + 8 + UDP payload).
    [(475, 5), (708, 7), (305, 3)],
)
def test_fragment_counts_match_openthread(datagram: int, frames: int) -> None:
    out = encode_datagram(
        _dtls_packet(datagram - 48), src=JOINER, dst=ROUTER, dst_pan=PAN, tags=TagAllocator(1)
    )
    assert len(out) == frames
    assert max(len(f.frame.to_bytes()) + 2 for f in out) == 124
    assert all(f.frame.ack_request for f in out)


def test_tags_are_unique_per_datagram() -> None:
    tags = TagAllocator(0xFFFE)
    seen = []
    for _ in range(4):
        out = encode_datagram(_dtls_packet(300), src=JOINER, dst=ROUTER, dst_pan=PAN, tags=tags)
        seen.append(int.from_bytes(out[0].frame.payload[2:4], "big"))
    assert seen == [0xFFFE, 0xFFFF, 0x0000, 0x0001]


@pytest.mark.parametrize("security", [LinkSecurity.MAC, LinkSecurity.KEK])
def test_secured_fragments_fit_and_round_trip(security: LinkSecurity) -> None:
    packet = _dtls_packet(700)
    out = encode_datagram(
        packet, src=ROUTER, dst=JOINER, dst_pan=PAN, security=security, tags=TagAllocator(5)
    )
    rx = LinkReceiver()
    got = None
    key = KEK if security is LinkSecurity.KEK else MAC_KEY
    for i, tx in enumerate(out):
        sec = secure_tx_frame(tx, key=key, frame_counter=100 + i, ext_src=ROUTER, key_index=1)
        wire = sec.to_bytes()
        assert len(wire) + 2 <= 127
        parsed = MacFrame.from_bytes(wire)
        assert classify_security(parsed) is security
        with pytest.raises(CryptoError):
            unsecure_frame(parsed, bytes(16))
        got = rx.receive(unsecure_frame(parsed, key), security, 10.0) or got
    assert got is not None and got.packet == packet
    assert got.security is security and got.src_ext == ROUTER
    assert got.udp() is not None


def test_mac_security_needs_a_key_index() -> None:
    (tx,) = encode_datagram(
        _dtls_packet(10), src=ROUTER, dst=JOINER, dst_pan=PAN, security=LinkSecurity.MAC,
        tags=TagAllocator(0),
    )  # fmt: skip
    with pytest.raises(InvalidArgument):
        secure_tx_frame(tx, key=MAC_KEY, frame_counter=0, ext_src=ROUTER)
    with pytest.raises(InvalidArgument):
        tx.psdu()  # a frame that must be secured cannot be taken as plain bytes


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 1200), order=st.randoms(use_true_random=False))
def test_round_trip_any_size_any_order(size: int, order: random.Random) -> None:
    packet = _dtls_packet(size)
    out = encode_datagram(packet, src=JOINER, dst=ROUTER, dst_pan=PAN, tags=TagAllocator(9))
    frames = [f.frame for f in out]
    if len(frames) > 1:  # FRAG1 first (OpenThread's order is not guaranteed on the air)
        rest = frames[1:]
        order.shuffle(rest)
        frames = [frames[0], *rest]
    rx = LinkReceiver()
    results = [rx.receive(f, LinkSecurity.NONE, 1.0, rssi=-40, channel=15) for f in frames]
    assert [r for r in results if r is not None] == [results[-1]]
    dg = results[-1]
    assert dg is not None and dg.packet == packet
    assert (dg.rssi, dg.channel, dg.src_link, dg.dst_pan) == (-40, 15, JOINER, PAN)


def test_unsecured_reassembly_state_is_bounded() -> None:
    rx = LinkReceiver()
    for tag in range(20):  # twenty half-sent datagrams
        first = encode_datagram(
            _dtls_packet(400), src=JOINER, dst=ROUTER, dst_pan=PAN, tags=TagAllocator(tag)
        )[0]
        assert rx.receive(first.frame, LinkSecurity.NONE, 1.0) is None
    assert rx.unsecured.pending == 16
    assert rx.unsecured.counters.no_buffer == 4
    assert rx.secured.pending == 0  # trusted traffic keeps its own room
    rx.expire(10.0)
    assert rx.unsecured.pending == 0


def test_non_lowpan_and_malformed_frames_are_counted() -> None:
    rx = LinkReceiver()
    cbsb = MacFrame.create(
        FrameType.DATA, dst=ROUTER, dst_pan=PAN, src=JOINER, src_pan=PAN, payload=b"\x3c\x01\x02"
    )
    bad = MacFrame.create(
        FrameType.DATA, dst=ROUTER, dst_pan=PAN, src=JOINER, src_pan=PAN, payload=b"\x7f"
    )
    assert rx.receive(cbsb, LinkSecurity.NONE, 0.0) is None
    assert rx.receive(bad, LinkSecurity.NONE, 0.0) is None
    assert rx.counters.not_lowpan == 1 and rx.counters.malformed == 1


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=120))
def test_receiver_never_raises_on_hostile_payloads(payload: bytes) -> None:
    rx = LinkReceiver()
    frame = MacFrame.create(
        FrameType.DATA, dst=ROUTER, dst_pan=PAN, src=JOINER, src_pan=PAN, payload=payload
    )
    rx.receive(frame, LinkSecurity.NONE, 0.0)
    rx.receive(frame, LinkSecurity.MAC, 0.0)


def test_link_local_flips_the_universal_local_bit() -> None:
    # fact sheet §4.1 / §5.3: Joiner ID d65e64fa83f81cf7 -> link-local IID d45e64fa83f81cf7
    assert link_local(JOINER) == IPv6Address("fe80::d45e:64fa:83f8:1cf7")
