"""6LoWPAN fragmentation and reassembly (RFC 4944 §5.3, RFC 6282 §2).

Independent known answers:
* OpenThread tests/unit/test_lowpan.cpp TestLowpanFragmentHeader (header bytes, invalid forms).
* The OpenThread join captured on the simulation air (reference/openthread-sim-air.md, table
  "Observed frame sequence"): DTLS flights of 305, 475, 507 and 708 bytes travelled as FRAG1 plus
  2, 4, 4 and 6 FRAGNs in 124-byte PSDUs, from and to extended addresses, MAC-unsecured.
"""

from __future__ import annotations

import random
from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import InvalidArgument
from gateway.errors import ParseError
from gateway.wire.fragment import (
    FragmentHeader,
    LowpanFrame,
    Reassembler,
    fragment,
    parse_lowpan_frame,
)
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.lowpan import MeshHeader, compress, decompress
from gateway.wire.mac802154 import ExtAddress, FrameType, MacFrame, ShortAddress

JOINER = ExtAddress.from_hex("d65e64fa83f81cf7")  # openthread-sim-air.md: Joiner ID address
LEADER = ExtAddress.from_hex("d6bffa0cbba1b012")


@pytest.mark.parametrize(
    ("raw", "header"),
    [  # OT TestLowpanFragmentHeader: size 0x7ef, tag 0x1234
        ("c7ef1234", FragmentHeader(0x7EF, 0x1234)),
        ("e7ef123464", FragmentHeader(0x7EF, 0x1234, 800)),
        ("e7ef123400", FragmentHeader(0x7EF, 0x1234, 0)),
    ],
)
def test_openthread_fragment_headers(raw: str, header: FragmentHeader) -> None:
    data = bytes.fromhex(raw)
    assert FragmentHeader.parse(data) == (header, len(data))
    assert header.to_bytes() == data
    with pytest.raises(ParseError):
        FragmentHeader.parse(data[:-1])


@pytest.mark.parametrize("raw", ["e8ef123464", "d0ef123464", "90ef123464"])
def test_openthread_invalid_fragment_headers(raw: str) -> None:
    with pytest.raises(ParseError):
        FragmentHeader.parse(bytes.fromhex(raw))


def _dtls_like(size: int) -> Ipv6Packet:
    """A joiner -> leader UDP 1000 -> 1000 packet whose IPv6 datagram is ``size`` bytes."""
    data = bytes(i & 0xFF for i in range(size - 48))
    return Ipv6Packet.udp(
        IPv6Address(b"\xfe\x80" + bytes(6) + JOINER.iid()),
        IPv6Address(b"\xfe\x80" + bytes(6) + LEADER.iid()),
        1000,
        1000,
        data,
        hop_limit=64,
    )


@pytest.mark.parametrize(("size", "fragn"), [(305, 2), (475, 4), (507, 4), (708, 6)])
def test_openthread_dtls_flight_fragment_counts(size: int, fragn: int) -> None:
    template = MacFrame.create(
        FrameType.DATA, seq=1, dst=LEADER, dst_pan=0xFB9F, src=JOINER, src_pan=0xFB9F
    )
    packet = _dtls_like(size)
    parts = fragment(
        compress(packet, JOINER, LEADER), max_payload=template.payload_capacity(), tag=7
    )
    assert len(parts) == 1 + fragn
    psdus = [
        MacFrame.create(
            FrameType.DATA, seq=1, dst=LEADER, dst_pan=0xFB9F, src=JOINER, src_pan=0xFB9F, payload=p
        ).to_bytes(fcs=True)
        for p in parts
    ]
    assert max(len(p) for p in psdus) == 124  # as captured from OpenThread
    assert all(len(p) <= 127 for p in psdus)
    reasm = Reassembler(timeout=5.0)
    results = [reasm.feed(p, JOINER, LEADER, now=0.0) for p in parts]
    assert results[:-1] == [None] * fragn
    assert results[-1] is not None
    assert decompress(results[-1], JOINER, LEADER, datagram_size=size) == packet
    assert reasm.counters.completed == 1 and reasm.pending == 0


def test_fragment_layout_rfc4944() -> None:
    packet = _dtls_like(400)
    datagram = compress(packet, JOINER, LEADER)
    parts = fragment(datagram, max_payload=90, tag=0xBEEF)
    first, n = FragmentHeader.parse(parts[0])
    assert first == FragmentHeader(400, 0xBEEF) and n == 4
    offsets = []
    for part in parts[1:]:
        header, n = FragmentHeader.parse(part)
        assert n == 5 and header.datagram_size == 400 and header.tag == 0xBEEF
        assert header.offset is not None and header.offset % 8 == 0
        offsets.append(header.offset)
    assert offsets == sorted(offsets)
    for part in parts:
        assert len(part) <= 90
    # every fragment except the last carries a multiple of 8 uncompressed bytes
    spans = [(o, len(p) - 5) for o, p in zip(offsets, parts[1:], strict=True)]
    for _offset, length in spans[:-1]:
        assert length % 8 == 0
    assert spans[-1][0] + spans[-1][1] == 400


def test_uncompressed_ipv6_datagram_fragments() -> None:
    packet = Ipv6Packet.udp("2001:db8::1", "2001:db8::2", 7, 9, bytes(range(200)))
    datagram = b"\x41" + packet.to_bytes()
    parts = fragment(datagram, max_payload=64, tag=3)
    first, _ = FragmentHeader.parse(parts[0])
    assert first.datagram_size == len(packet.to_bytes())  # the dispatch byte is not counted
    reasm = Reassembler()
    done = [r for r in (reasm.feed(p, None, None, now=0) for p in reversed(parts)) if r]
    assert done == [datagram] and decompress(done[0], None, None) == packet


def test_small_datagram_not_fragmented() -> None:
    datagram = compress(_dtls_like(60), JOINER, LEADER)
    assert fragment(datagram, max_payload=100, tag=1) == [datagram]


def test_fragment_limits() -> None:
    with pytest.raises(InvalidArgument):
        fragment(compress(_dtls_like(2100), JOINER, LEADER), max_payload=100, tag=1)
    with pytest.raises(InvalidArgument):
        fragment(compress(_dtls_like(300), JOINER, LEADER), max_payload=12, tag=1)
    with pytest.raises(InvalidArgument):
        fragment(b"\x01" * 200, max_payload=100, tag=1)  # NALP is not a datagram


def _parts(size: int = 300, tag: int = 1) -> tuple[Ipv6Packet, list[bytes]]:
    packet = _dtls_like(size)
    return packet, fragment(compress(packet, JOINER, LEADER), max_payload=80, tag=tag)


def test_reassembly_out_of_order_and_duplicates() -> None:
    packet, parts = _parts()
    reasm = Reassembler()
    assert len(parts) == 4
    order = [3, 1, 1, 0, 0, 2]
    results = [reasm.feed(parts[i], JOINER, LEADER, now=1.0) for i in order]
    done = results[-1]
    assert done is not None and all(r is None for r in results[:-1])
    assert decompress(done, JOINER, LEADER) == packet
    assert reasm.counters.duplicates == 2 and reasm.counters.completed == 1


def test_reassembly_keyed_by_addresses_and_tag() -> None:
    p1, parts1 = _parts(300, tag=5)
    p2, parts2 = _parts(300, tag=6)
    other = ShortAddress(0x1234)
    reasm = Reassembler()
    out = []
    for i, (a, b) in enumerate(zip(parts1, parts2, strict=True)):
        out.append(reasm.feed(a, JOINER, LEADER, now=0))
        out.append(reasm.feed(b, JOINER, LEADER, now=0))
        if i < 2:
            assert reasm.feed(a, other, LEADER, now=0) is None  # same tag, other source
    done = [o for o in out if o is not None]
    assert [decompress(d, JOINER, LEADER) for d in done] == [p1, p2]
    assert reasm.pending == 1  # the one from the other source is still open


def test_reassembly_inconsistent_duplicate_drops_datagram() -> None:
    _packet, parts = _parts()
    reasm = Reassembler()
    reasm.feed(parts[1], JOINER, LEADER, now=0)
    forged = parts[1][:-1] + bytes((parts[1][-1] ^ 0xFF,))
    assert reasm.feed(forged, JOINER, LEADER, now=0) is None
    assert reasm.counters.inconsistent == 1 and reasm.pending == 0


def test_reassembly_overlap_restarts() -> None:
    packet, parts = _parts()
    reasm = Reassembler()
    reasm.feed(parts[1], JOINER, LEADER, now=0)
    header, _ = FragmentHeader.parse(parts[1])
    assert header.offset is not None
    shifted = FragmentHeader(header.datagram_size, header.tag, header.offset + 8).to_bytes()
    assert reasm.feed(shifted + parts[1][5:], JOINER, LEADER, now=0) is None
    assert reasm.counters.overlaps == 1 and reasm.pending == 1
    # the overlapping fragment became the new start; parts[1] overlaps it again and restarts
    results = [reasm.feed(p, JOINER, LEADER, now=0) for p in parts]
    assert results == [None] * len(parts)
    assert reasm.counters.overlaps == 2 and reasm.pending == 1
    # FRAG1 was lost in the second restart; resending it completes the honest datagram
    done = reasm.feed(parts[0], JOINER, LEADER, now=0)
    assert done is not None and decompress(done, JOINER, LEADER) == packet


def test_reassembly_timeout() -> None:
    packet, parts = _parts()
    reasm = Reassembler(timeout=2.0)
    reasm.feed(parts[0], JOINER, LEADER, now=10.0)
    assert reasm.feed(parts[1], JOINER, LEADER, now=11.9) is None
    assert reasm.pending == 1
    for p in parts[2:]:
        assert reasm.feed(p, JOINER, LEADER, now=12.0) is None  # timed out: a new datagram
    assert reasm.counters.timeouts == 1 and reasm.pending == 1
    assert reasm.expire(100.0) == 1 and reasm.counters.timeouts == 2
    results = [reasm.feed(p, JOINER, LEADER, now=200.0) for p in parts]
    assert results[-1] is not None and decompress(results[-1], JOINER, LEADER) == packet


def test_reassembly_memory_bounds() -> None:
    reasm = Reassembler(max_datagrams=2, max_bytes=700)
    firsts = [_parts(300, tag=t)[1][0] for t in range(4)]
    reasm.feed(firsts[0], JOINER, LEADER, now=0)
    reasm.feed(firsts[1], JOINER, LEADER, now=0)
    assert reasm.feed(firsts[2], JOINER, LEADER, now=0) is None
    assert reasm.counters.no_buffer == 1 and reasm.pending == 2
    small = Reassembler(max_bytes=500)
    small.feed(firsts[0], JOINER, LEADER, now=0)
    small.feed(firsts[1], JOINER, LEADER, now=0)
    assert small.counters.no_buffer == 1 and small.bytes_reserved == 300


def test_reassembly_rejects_malformed() -> None:
    _packet, parts = _parts()
    reasm = Reassembler()
    header, _ = FragmentHeader.parse(parts[-1])
    assert header.offset is not None
    too_far = FragmentHeader(header.datagram_size, header.tag, header.offset + 64).to_bytes()
    for bad in (
        b"",
        b"\xc0",
        parts[1][:5],
        too_far + parts[-1][5:],
        b"\x41\x00",
        FragmentHeader(0, 1).to_bytes() + parts[0][4:],
    ):
        with pytest.raises(ParseError):
            reasm.feed(bad, JOINER, LEADER, now=0)
    assert reasm.counters.malformed == 6 and reasm.pending == 0


def test_accept_and_link_addresses() -> None:
    packet, parts = _parts()
    mesh = MeshHeader(4, JOINER, LEADER)
    reasm = Reassembler()
    out = None
    for part in parts:
        frame = parse_lowpan_frame(mesh.to_bytes() + part)
        src, dst = frame.link_addresses(ShortAddress(1), ShortAddress(2))
        assert (src, dst) == (JOINER, LEADER)
        out = reasm.accept(frame, src, dst, now=0)
    assert out is not None and decompress(out, JOINER, LEADER) == packet
    whole = compress(_dtls_like(60), JOINER, LEADER)
    plain = parse_lowpan_frame(whole)
    assert plain.link_addresses(JOINER, LEADER) == (JOINER, LEADER)
    assert reasm.accept(plain, JOINER, LEADER, now=0) == whole


def test_parse_lowpan_frame_layers() -> None:
    mesh = MeshHeader(4, ShortAddress(0x0400), ShortAddress(0x0800))
    _packet, parts = _parts()
    raw = mesh.to_bytes() + b"\x50\x09" + parts[1]
    frame = parse_lowpan_frame(raw)
    assert frame.mesh == mesh and frame.broadcast_seq == 9
    assert frame.fragment is not None and frame.fragment.offset is not None
    assert frame.to_bytes() == raw
    first = parse_lowpan_frame(parts[0])
    assert first.fragment is not None and first.fragment.is_first and first.mesh is None
    assert first.data[0] >> 5 == 0b011  # the IPHC header follows FRAG1
    with pytest.raises(ParseError):
        parse_lowpan_frame(b"\x01CBSB")  # NALP
    assert parse_lowpan_frame(b"\x41" + bytes(40)) == LowpanFrame(
        None, None, None, b"\x41" + bytes(40)
    )


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    st.integers(49, 1280),
    st.integers(60, 120),
    st.integers(0, 0xFFFF),
    st.randoms(use_true_random=False),
)
def test_roundtrip_fragment_reassemble(
    size: int, max_payload: int, tag: int, rnd: random.Random
) -> None:
    packet = _dtls_like(size)
    datagram = compress(packet, JOINER, LEADER)
    parts = fragment(datagram, max_payload=max_payload, tag=tag)
    assert all(len(p) <= max_payload for p in parts)
    if len(parts) == 1:
        assert parts == [datagram] and len(datagram) <= max_payload
        return
    order = list(parts)
    rnd.shuffle(order)
    order.insert(rnd.randrange(len(order)), rnd.choice(order))  # a duplicate
    reasm = Reassembler(timeout=1.0)
    done = [r for r in (reasm.feed(p, JOINER, LEADER, now=0.5) for p in order) if r is not None]
    assert done == [datagram]
    assert decompress(done[0], JOINER, LEADER, datagram_size=size) == packet


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=6))
def test_fuzz_reassembler_only_parse_error(chunks: list[bytes]) -> None:
    reasm = Reassembler(max_datagrams=2, max_bytes=600)
    for i, chunk in enumerate(chunks):
        for data in (chunk, b"\xc1\x00\x00\x01" + chunk, b"\xe1\x00\x00\x01" + chunk):
            try:
                reasm.feed(data, JOINER, LEADER, now=float(i))
            except ParseError:
                pass
    assert reasm.bytes_reserved <= 600


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_fuzz_layer_parsers(data: bytes) -> None:
    for parse in (FragmentHeader.parse, parse_lowpan_frame):
        try:
            parse(data)
        except ParseError:
            pass
