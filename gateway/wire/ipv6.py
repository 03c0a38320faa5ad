"""Minimal IPv6 (RFC 8200) and UDP (RFC 768) header model with the RFC 8200 §8.1 checksum.

Enough for 6LoWPAN: an :class:`Ipv6Packet` is the fixed header plus raw payload bytes (extension
headers and the upper layer stay as bytes); :class:`UdpDatagram` builds and checks UDP headers.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from ipaddress import IPv6Address

from drivers.errors import InvalidArgument
from gateway.errors import ParseError

__all__ = [
    "HEADER_LENGTH",
    "PROTO_HOPOPTS",
    "PROTO_ICMPV6",
    "PROTO_IPV6",
    "PROTO_UDP",
    "Ipv6Packet",
    "UdpDatagram",
    "internet_checksum",
    "upper_layer_checksum",
]

HEADER_LENGTH = 40
PROTO_HOPOPTS = 0
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ICMPV6 = 58
PROTO_NONE = 59
PROTO_DSTOPTS = 60
UDP_HEADER_LENGTH = 8

_LITTLE = sys.byteorder == "little"


def _ones_sum(data: bytes) -> int:
    """One's-complement sum of 16-bit big-endian words (RFC 1071), not yet complemented."""
    if len(data) & 1:
        data += b"\x00"
    # RFC 1071 §2(B): the sum is byte-order independent, so add native words and swap at the end
    total = sum(memoryview(data).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    if _LITTLE:
        total = ((total & 0xFF) << 8) | (total >> 8)
    return total


def internet_checksum(data: bytes) -> int:
    """RFC 1071 checksum of ``data`` (0 when ``data`` already carries a correct checksum)."""
    return ~_ones_sum(data) & 0xFFFF


def _addr(value: IPv6Address | str | bytes) -> IPv6Address:
    if isinstance(value, IPv6Address):
        return value
    try:
        return IPv6Address(value)
    except ValueError:
        raise InvalidArgument(f"not an IPv6 address: {value!r}") from None


def upper_layer_checksum(
    src: IPv6Address, dst: IPv6Address, next_header: int, segment: bytes
) -> int:
    """RFC 8200 §8.1 checksum over the pseudo-header and ``segment`` (whose checksum field must
    be zero). For UDP a computed 0 is sent as 0xFFFF (RFC 768)."""
    pseudo = src.packed + dst.packed + len(segment).to_bytes(4, "big") + bytes((0, 0, 0))
    pseudo += bytes((next_header,))
    value = ~_ones_sum(pseudo + segment) & 0xFFFF
    if next_header == PROTO_UDP and value == 0:
        value = 0xFFFF
    return value


@dataclass(frozen=True)
class Ipv6Packet:
    """IPv6 fixed header fields and the payload after it (extension headers included)."""

    src: IPv6Address
    dst: IPv6Address
    next_header: int
    payload: bytes = b""
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", _addr(self.src))
        object.__setattr__(self, "dst", _addr(self.dst))
        object.__setattr__(self, "payload", bytes(self.payload))
        if not 0 <= self.next_header <= 0xFF or not 0 <= self.hop_limit <= 0xFF:
            raise InvalidArgument("next header and hop limit are 8-bit fields")
        if not 0 <= self.traffic_class <= 0xFF:
            raise InvalidArgument("traffic class is 8 bits")
        if not 0 <= self.flow_label <= 0xFFFFF:
            raise InvalidArgument("flow label is 20 bits")
        if len(self.payload) > 0xFFFF:
            raise InvalidArgument("IPv6 payload longer than 65535 bytes (jumbograms unsupported)")

    @classmethod
    def udp(
        cls,
        src: IPv6Address | str,
        dst: IPv6Address | str,
        src_port: int,
        dst_port: int,
        data: bytes,
        *,
        hop_limit: int = 64,
        traffic_class: int = 0,
        flow_label: int = 0,
    ) -> Ipv6Packet:
        """An IPv6 packet carrying one UDP datagram with a correct checksum."""
        s, d = _addr(src), _addr(dst)
        segment = UdpDatagram(src_port, dst_port, data).to_bytes(s, d)
        return cls(s, d, PROTO_UDP, segment, hop_limit, traffic_class, flow_label)

    @property
    def dscp(self) -> int:
        return self.traffic_class >> 2

    @property
    def ecn(self) -> int:
        return self.traffic_class & 3

    def header_bytes(self) -> bytes:
        first = (6 << 28) | (self.traffic_class << 20) | self.flow_label
        return (
            first.to_bytes(4, "big")
            + len(self.payload).to_bytes(2, "big")
            + bytes((self.next_header, self.hop_limit))
            + self.src.packed
            + self.dst.packed
        )

    def to_bytes(self) -> bytes:
        return self.header_bytes() + self.payload

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Ipv6Packet:
        """Parse one IPv6 packet; bytes after the payload length are ignored (link padding)."""
        raw = bytes(data)
        if len(raw) < HEADER_LENGTH:
            raise ParseError("shorter than an IPv6 header")
        first = int.from_bytes(raw[:4], "big")
        if first >> 28 != 6:
            raise ParseError("not IP version 6")
        length = int.from_bytes(raw[4:6], "big")
        if HEADER_LENGTH + length > len(raw):
            raise ParseError("IPv6 payload length exceeds the data")
        return cls(
            IPv6Address(raw[8:24]),
            IPv6Address(raw[24:40]),
            raw[6],
            raw[HEADER_LENGTH : HEADER_LENGTH + length],
            raw[7],
            (first >> 20) & 0xFF,
            first & 0xFFFFF,
        )

    def udp_datagram(self, *, verify: bool = True) -> UdpDatagram:
        """The UDP datagram this packet carries directly (``next_header`` 17)."""
        if self.next_header != PROTO_UDP:
            raise ParseError("not a UDP packet (or UDP behind extension headers)")
        return UdpDatagram.from_bytes(self.payload, self.src, self.dst, verify=verify)


@dataclass(frozen=True)
class UdpDatagram:
    """A UDP datagram; ``checksum`` ``None`` means "compute it" when encoding."""

    src_port: int
    dst_port: int
    payload: bytes = b""
    checksum: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.src_port <= 0xFFFF or not 0 <= self.dst_port <= 0xFFFF:
            raise InvalidArgument("UDP ports are 16 bits")
        if self.checksum is not None and not 0 <= self.checksum <= 0xFFFF:
            raise InvalidArgument("UDP checksum is 16 bits")
        if len(self.payload) > 0xFFFF - UDP_HEADER_LENGTH:
            raise InvalidArgument("UDP payload too long")
        object.__setattr__(self, "payload", bytes(self.payload))

    def to_bytes(self, src: IPv6Address | str, dst: IPv6Address | str) -> bytes:
        length = UDP_HEADER_LENGTH + len(self.payload)
        head = self.src_port.to_bytes(2, "big") + self.dst_port.to_bytes(2, "big")
        head += length.to_bytes(2, "big")
        checksum = self.checksum
        if checksum is None:
            checksum = upper_layer_checksum(
                _addr(src), _addr(dst), PROTO_UDP, head + b"\x00\x00" + self.payload
            )
        return head + checksum.to_bytes(2, "big") + self.payload

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        src: IPv6Address | str | None = None,
        dst: IPv6Address | str | None = None,
        *,
        verify: bool = True,
    ) -> UdpDatagram:
        """Parse a UDP segment (exactly its length field long). With ``verify`` (and both
        addresses) a wrong checksum raises :class:`ParseError`; a zero checksum is invalid over
        IPv6 (RFC 8200 §8.1)."""
        raw = bytes(data)
        if len(raw) < UDP_HEADER_LENGTH:
            raise ParseError("shorter than a UDP header")
        length = int.from_bytes(raw[4:6], "big")
        if length != len(raw):
            raise ParseError("UDP length field does not match the segment")
        checksum = int.from_bytes(raw[6:8], "big")
        if verify and src is not None and dst is not None:
            s, d = _addr(src), _addr(dst)
            want = upper_layer_checksum(s, d, PROTO_UDP, raw[:6] + b"\x00\x00" + raw[8:])
            if checksum != want:
                raise ParseError("bad UDP checksum")
        return cls(
            int.from_bytes(raw[0:2], "big"),
            int.from_bytes(raw[2:4], "big"),
            raw[UDP_HEADER_LENGTH:],
            checksum,
        )
