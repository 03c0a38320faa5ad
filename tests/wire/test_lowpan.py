"""6LoWPAN IPHC/NHC, mesh header and dispatch classification.

Independent known answers:
* OpenThread tests/unit/test_lowpan.cpp (TestLowpanIphc vectors, transcribed into
  vectors/openthread_lowpan_iphc.txt; TestLowpanMeshHeader).
* The OpenThread MLE Discovery Request captured on the simulation air
  (reference/openthread-sim-air.md) and its MLE payload (reference/thread-meshcop.md §7).
* An OpenThread MLE frame from tests/unit/test_mac_frame.cpp (TestMacFrameAckGeneration) whose
  UDP checksum must verify after decompression.
* Dispatch values: RFC 4944 §5.1 and RFC 6282 §3.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.errors import ParseError
from gateway.wire.ipv6 import Ipv6Packet, UdpDatagram, internet_checksum
from gateway.wire.lowpan import (
    Dispatch,
    LowpanContext,
    MeshHeader,
    classify,
    compress,
    decompress,
    header_sizes,
)
from gateway.wire.mac802154 import Address, ExtAddress, MacFrame, ShortAddress

VECTORS = Path(__file__).with_name("vectors") / "openthread_lowpan_iphc.txt"
PAYLOAD = bytes.fromhex("8000010203040506")
MACS: dict[str, Address] = {
    "L1": ExtAddress.from_hex("00005eef10221100"),
    "L2": ExtAddress.from_hex("00005eef10aabbcc"),
    "S1": ShortAddress(0x0000),
    "S2": ShortAddress(0xC003),
    "B": ShortAddress(0xFFFF),
}
OT_CONTEXTS = {
    0: LowpanContext(IPv6Network("fd00:cafe:face:1234::/64")),
    1: LowpanContext(IPv6Network("2001:2:0:1::/64")),
    2: LowpanContext(IPv6Network("2001:2:0:2::/64"), compress=False),
}


@dataclass(frozen=True)
class Vector:
    name: str
    mac_src: Address
    mac_dst: Address
    packet: Ipv6Packet
    iphc: bytes
    check_compress: bool
    check_decompress: bool


def _header(spec: str, payload: bytes) -> bytes:
    word, nh, hlim, src, dst = spec.split("/")
    return (
        int(word, 16).to_bytes(4, "big")
        + len(payload).to_bytes(2, "big")
        + bytes((int(nh), int(hlim)))
        + IPv6Address(src).packed
        + IPv6Address(dst).packed
        + payload
    )


def _load() -> tuple[list[Vector], list[tuple[str, bytes]]]:
    vectors: list[Vector] = []
    errors: list[tuple[str, bytes]] = []
    for line in VECTORS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split()
        if cols[1] == "error":
            errors.append((cols[0], bytes.fromhex(cols[2])))
            continue
        name, msrc, mdst, ip, ext, tun, udp, iphc, modes = cols
        body = PAYLOAD
        if udp != "-":
            sport, dport, chk = udp.split("/")
            body = (
                int(sport).to_bytes(2, "big")
                + int(dport).to_bytes(2, "big")
                + (8 + len(body)).to_bytes(2, "big")
                + int(chk, 16).to_bytes(2, "big")
                + body
            )
        if tun != "-":
            body = _header(tun, body)
        if ext != "-":
            body = bytes.fromhex(ext) + body
        packet = Ipv6Packet.from_bytes(_header(ip, body))
        vectors.append(
            Vector(
                name,
                MACS[msrc],
                MACS[mdst],
                packet,
                bytes.fromhex(iphc),
                "c" in modes,
                "d" in modes,
            )
        )
    return vectors, errors


OT_VECTORS, OT_ERRORS = _load()


def test_vector_file_complete() -> None:
    assert len(OT_VECTORS) == 49 and len(OT_ERRORS) == 9


@pytest.mark.parametrize("vector", OT_VECTORS, ids=lambda v: v.name)
def test_openthread_iphc_vectors(vector: Vector) -> None:
    compressed = vector.iphc + PAYLOAD
    if vector.check_compress:
        assert compress(vector.packet, vector.mac_src, vector.mac_dst, OT_CONTEXTS) == compressed
    if vector.check_decompress:
        got = decompress(compressed, vector.mac_src, vector.mac_dst, OT_CONTEXTS)
        assert got == vector.packet
        uncompressed_headers = len(vector.packet.to_bytes()) - len(PAYLOAD)
        assert header_sizes(compressed) == (len(vector.iphc), uncompressed_headers)
        size = len(vector.packet.to_bytes())
        assert (
            decompress(compressed, vector.mac_src, vector.mac_dst, OT_CONTEXTS, datagram_size=size)
            == got
        )
        with pytest.raises(ParseError):
            decompress(
                compressed, vector.mac_src, vector.mac_dst, OT_CONTEXTS, datagram_size=size + 1
            )


@pytest.mark.parametrize(("name", "iphc"), OT_ERRORS)
def test_openthread_iphc_errors(name: str, iphc: bytes) -> None:
    with pytest.raises(ParseError):
        decompress(iphc, MACS["L1"], MACS["L2"], OT_CONTEXTS)


def test_unknown_context_is_an_error() -> None:
    # SAC=1 SAM=11 with CID byte naming context 5, which nobody configured
    with pytest.raises(ParseError):
        decompress(bytes.fromhex("7af0503a") + PAYLOAD, MACS["L1"], MACS["L2"], OT_CONTEXTS)
    with pytest.raises(ParseError):
        decompress(bytes.fromhex("7a773a") + PAYLOAD, MACS["L1"], MACS["L2"])  # no table at all


def test_elided_address_needs_a_link_address() -> None:
    with pytest.raises(ParseError):
        decompress(bytes.fromhex("7a333a") + PAYLOAD, None, MACS["L2"])


MLE_DISCOVERY_REQUEST = bytes.fromhex(
    "01d807ffffffff2bcfc893faf973b19e267f3b02f04d4c4d4c12c3ff101a0480025800fd00"
)


def test_openthread_mle_discovery_request() -> None:
    frame = MacFrame.from_bytes(MLE_DISCOVERY_REQUEST, fcs=True)
    assert classify(frame.payload) is Dispatch.IPHC
    packet = decompress(frame.payload, frame.src, frame.dst)
    # link-local from the random extended address 269eb173f9fa93c8 with the U/L bit flipped
    assert packet.src == IPv6Address("fe80::249e:b173:f9fa:93c8")
    assert packet.dst == IPv6Address("ff02::2")
    assert packet.hop_limit == 255  # MLE requires 255 (thread-meshcop.md §5.8)
    udp = packet.udp_datagram(verify=True)  # the real checksum 0x12c3 must verify
    assert (udp.src_port, udp.dst_port, udp.checksum) == (19788, 19788, 0x12C3)
    # thread-meshcop.md §7: unsecured (255), Discovery Request (0x10), Discovery TLV, version 5
    assert udp.payload == bytes.fromhex("ff101a0480025800")
    assert compress(packet, frame.src, frame.dst) == frame.payload
    rebuilt = Ipv6Packet.udp(packet.src, packet.dst, 19788, 19788, udp.payload, hop_limit=255)
    assert rebuilt == packet


def test_openthread_mle_frame_checksum() -> None:
    # OT tests/unit/test_mac_frame.cpp TestMacFrameAckGeneration data_psdu1: MLE (secured suite 0)
    raw = bytes.fromhex(
        "61dcbdcefa01000000000a6e1602000000000a6e167f33f04d4c4d4c8bf0001501000000000000"
        "0001c2579c31b32aa186ba9aed5ab9a35988ebbb0dc3edeb8a53a6edf7dd456ef79a17b4abc675"
        "714637934a32b1219f9db36527d5fc501690d2d4"
    )
    frame = MacFrame.from_bytes(raw, fcs=True)
    packet = decompress(frame.payload, frame.src, frame.dst)
    assert packet.src == IPv6Address("fe80::146e:a00:0:2")
    assert packet.dst == IPv6Address("fe80::146e:a00:0:1")
    udp = packet.udp_datagram(verify=True)
    assert udp.checksum == 0x8BF0 and udp.payload[:2] == b"\x00\x15"


@pytest.mark.parametrize(
    ("raw", "hops", "length"),
    [  # OT tests/unit/test_lowpan.cpp TestLowpanMeshHeader (src 0x0100, dst 0x0200)
        ("b101000200", 1, 5),
        ("bf2001000200", 0x20, 6),
        ("bf0101000200", 1, 6),  # deep-hops form of a small count: accepted
    ],
)
def test_openthread_mesh_header(raw: str, hops: int, length: int) -> None:
    data = bytes.fromhex(raw)
    header, n = MeshHeader.parse(data)
    assert (header.hops_left, header.originator, header.final) == (
        hops,
        ShortAddress(0x0100),
        ShortAddress(0x0200),
    )
    assert n == length
    with pytest.raises(ParseError):
        MeshHeader.parse(data[:-1])
    if raw != "bf0101000200":
        assert header.to_bytes() == data
    else:
        assert header.to_bytes() == bytes.fromhex("b101000200")


def test_mesh_header_extended_addresses() -> None:
    # RFC 4944 §5.2: V=0/F=0 select 64-bit originator / final addresses
    o, f = ExtAddress.from_hex("0011223344556677"), ExtAddress.from_hex("8899aabbccddeeff")
    raw = MeshHeader(3, o, f).to_bytes()
    assert raw == bytes.fromhex("83") + o.octets + f.octets
    assert MeshHeader.parse(raw + b"\x41") == (MeshHeader(3, o, f), 17)


@pytest.mark.parametrize(
    ("first", "kind"),
    [
        (0x00, Dispatch.NALP),
        (0x3F, Dispatch.NALP),
        (0x40, Dispatch.RESERVED),
        (0x41, Dispatch.IPV6),
        (0x42, Dispatch.HC1),
        (0x50, Dispatch.BC0),
        (0x5F, Dispatch.RESERVED),
        (0x60, Dispatch.IPHC),
        (0x7F, Dispatch.IPHC),
        (0x80, Dispatch.MESH),
        (0xBF, Dispatch.MESH),
        (0xC0, Dispatch.FRAG1),
        (0xC7, Dispatch.FRAG1),
        (0xC8, Dispatch.RESERVED),
        (0xD0, Dispatch.RESERVED),
        (0xE0, Dispatch.FRAGN),
        (0xE7, Dispatch.FRAGN),
        (0xE8, Dispatch.RESERVED),
        (0xF0, Dispatch.RESERVED),
    ],
)
def test_classify(first: int, kind: Dispatch) -> None:
    assert classify(first) is kind
    assert classify(bytes((first, 0))) is kind


def test_uncompressed_ipv6_dispatch() -> None:
    packet = Ipv6Packet.udp("2001:db8::1", "2001:db8::2", 1000, 2000, b"data")
    datagram = b"\x41" + packet.to_bytes()
    assert decompress(datagram, None, None) == packet
    assert header_sizes(datagram) == (1, 0)


def test_udp_checksum_elision() -> None:
    src, dst = MACS["L1"], MACS["L2"]
    packet = Ipv6Packet.udp(
        "fe80::200:5eef:1022:1100", "fe80::200:5eef:10aa:bbcc", 0xF0B1, 0xF0B2, b"elided"
    )
    data = compress(packet, src, dst, elide_udp_checksum=True)
    assert data[:4] == bytes.fromhex("7e33f712")  # RFC 6282 §4.3.3: C=1, P=11; no checksum
    assert decompress(data, src, dst) == packet  # the checksum is recomputed
    # a wrong checksum is never elided (it could not be recomputed)
    bad = Ipv6Packet(packet.src, packet.dst, 17, packet.payload[:6] + b"\x00\x01" + b"elided")
    assert compress(bad, src, dst, elide_udp_checksum=True)[2] == 0xF3


def test_context_prefix_other_than_64() -> None:
    contexts = {
        3: LowpanContext(IPv6Network("2001:db8:aa::/48")),
        4: LowpanContext(IPv6Network("2001:db8:bb:cc:dd00::/72")),
    }
    link = ExtAddress.from_hex("0a0b0c0d0e0f1011")
    for dst in (
        "2001:db8:aa:0:80b:c0d:e0f:1011",
        "2001:db8:bb:cc:ddff:fe00:0:1234",
        "2001:db8:aa:0:1:2:3:4",
        "2001:db8:aa::ff:fe00:77",
    ):
        packet = Ipv6Packet(IPv6Address("fe80::1"), IPv6Address(dst), 59)
        data = compress(packet, ShortAddress(1), link, contexts)
        assert data[1] & 0x04  # DAC
        assert decompress(data, ShortAddress(1), link, contexts) == packet


def test_internet_checksum_rfc1071() -> None:
    # RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 (checksum = ~ddf2 = 220d)
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    udp = UdpDatagram(1, 2, b"x").to_bytes("::1", "::2")
    with pytest.raises(ParseError):
        UdpDatagram.from_bytes(udp[:6] + b"\x00\x00" + udp[8:], "::1", "::2")


# -- properties ----------------------------------------------------------------------------

ext_addr = st.builds(ExtAddress, st.binary(min_size=8, max_size=8))
link_addr = st.one_of(ext_addr, st.builds(ShortAddress, st.integers(0, 0xFFFF)))
PREFIXES = [
    IPv6Network("fd00:cafe:face:1234::/64"),
    IPv6Network("2001:db8::/32"),
    IPv6Network("2001:db8:1:2:3::/80"),
    IPv6Network("fd11:2233::/48"),
]
CONTEXTS = {
    0: LowpanContext(PREFIXES[0]),
    1: LowpanContext(PREFIXES[1]),
    7: LowpanContext(PREFIXES[2]),
    15: LowpanContext(PREFIXES[3]),
}


def _iid_for(link: Address) -> bytes:
    if isinstance(link, ExtAddress):
        return link.iid()
    assert isinstance(link, ShortAddress)
    return bytes.fromhex("000000fffe00") + link.value.to_bytes(2, "big")


@st.composite
def unicast(draw: st.DrawFn, link: Address) -> IPv6Address:
    prefix = draw(st.sampled_from([IPv6Network("fe80::/64"), *PREFIXES, IPv6Network("2002::/16")]))
    iid = draw(
        st.one_of(
            st.just(_iid_for(link)),
            st.binary(min_size=8, max_size=8),
            st.binary(min_size=2, max_size=2).map(lambda b: bytes.fromhex("000000fffe00") + b),
        )
    )
    base = int.from_bytes(bytes(8) + iid, "big")
    mask = ((1 << prefix.prefixlen) - 1) << (128 - prefix.prefixlen)
    value = (base & ~mask) | int(prefix.network_address)
    if draw(st.booleans()):
        value = int.from_bytes(draw(st.binary(min_size=16, max_size=16)), "big")
    return IPv6Address(value)


multicast = st.one_of(
    st.integers(0, 255).map(lambda x: IPv6Address(f"ff02::{x:x}")),
    st.binary(min_size=4, max_size=4).map(
        lambda b: IPv6Address(b"\xff" + b[:1] + bytes(11) + b[1:])
    ),
    st.binary(min_size=6, max_size=6).map(
        lambda b: IPv6Address(b"\xff" + b[:1] + bytes(9) + b[1:])
    ),
    st.binary(min_size=6, max_size=6).map(
        lambda b: IPv6Address(
            b"\xff" + b[:2] + b"\x40" + PREFIXES[0].network_address.packed[:8] + b[2:]
        )
    ),
    st.binary(min_size=15, max_size=15).map(lambda b: IPv6Address(b"\xff" + b)),
)


@st.composite
def hbh_header(draw: st.DrawFn, next_header: int) -> bytes:
    options = b"".join(
        bytes((t, len(v))) + v
        for t, v in draw(
            st.lists(st.tuples(st.integers(2, 255), st.binary(max_size=10)), max_size=3)
        )
    )
    pad = -(2 + len(options)) % 8
    options += b"\x00" if pad == 1 else (bytes((1, pad - 2)) + bytes(pad - 2) if pad else b"")
    return bytes((next_header, (2 + len(options)) // 8 - 1)) + options


@st.composite
def packets(draw: st.DrawFn) -> tuple[Ipv6Packet, Address, Address]:
    src_link, dst_link = draw(link_addr), draw(link_addr)
    src = IPv6Address(0) if draw(st.integers(0, 9)) == 0 else draw(unicast(src_link))
    dst = draw(multicast) if draw(st.booleans()) else draw(unicast(dst_link))
    hop = draw(st.sampled_from([1, 64, 255, 0, 17]))
    tc = draw(st.sampled_from([0, 1, 0x0D, 0xEA, draw(st.integers(0, 255))]))
    fl = draw(st.sampled_from([0, 0x1AC59, draw(st.integers(0, 0xFFFFF))]))
    data = draw(st.binary(max_size=60))
    kind = draw(st.sampled_from(["udp", "raw", "hbh-udp", "hbh-raw", "ipip"]))
    if kind == "udp" or kind == "hbh-udp":
        ports = st.one_of(
            st.integers(0, 0xFFFF), st.integers(0xF000, 0xF0FF), st.integers(0xF0B0, 0xF0BF)
        )
        inner = Ipv6Packet.udp(src, dst, draw(ports), draw(ports), data, hop_limit=hop)
        payload, nh = inner.payload, 17
    elif kind == "ipip":
        inner_src = draw(unicast(src_link))
        inner = Ipv6Packet.udp(
            inner_src, dst, 5683, 0xF0B1, data, hop_limit=draw(st.integers(0, 255))
        )
        payload, nh = inner.to_bytes(), 41
    else:
        payload, nh = data, draw(st.sampled_from([58, 59, 6]))
    if kind.startswith("hbh"):
        payload, nh = draw(hbh_header(nh)) + payload, 0
    packet = Ipv6Packet(src, dst, nh, payload, hop, tc, fl)
    return packet, src_link, dst_link


@settings(max_examples=400, deadline=None)
@given(packets(), st.booleans())
def test_roundtrip_compress_decompress(
    case: tuple[Ipv6Packet, Address, Address], elide: bool
) -> None:
    packet, src_link, dst_link = case
    data = compress(packet, src_link, dst_link, CONTEXTS, elide_udp_checksum=elide)
    assert classify(data) is Dispatch.IPHC
    assert decompress(data, src_link, dst_link, CONTEXTS) == packet
    compressed, uncompressed = header_sizes(data)
    assert uncompressed + len(data) - compressed == len(packet.to_bytes())
    assert len(data) <= len(packet.to_bytes()) + 2  # never much worse than inline


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), link_addr, link_addr)
def test_roundtrip_mesh_header(
    hops: int, o: ShortAddress | ExtAddress, f: ShortAddress | ExtAddress
) -> None:
    header = MeshHeader(hops, o, f)
    raw = header.to_bytes()
    assert classify(raw) is Dispatch.MESH
    assert MeshHeader.parse(raw + b"tail") == (header, len(raw))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=80), st.one_of(st.none(), link_addr), st.one_of(st.none(), link_addr))
def test_fuzz_decompress_only_parse_error(data: bytes, src: Address, dst: Address) -> None:
    for contexts in (None, CONTEXTS):
        try:
            packet = decompress(data, src, dst, contexts)
        except ParseError:
            continue
        assert isinstance(packet, Ipv6Packet)
    try:
        header_sizes(data)
    except ParseError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=24))
def test_fuzz_mesh_and_classify(data: bytes) -> None:
    try:
        MeshHeader.parse(data)
    except ParseError:
        pass
    try:
        classify(data)
    except ParseError:
        assume(False)
