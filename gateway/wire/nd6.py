"""IPv6 Neighbor Discovery messages a border router speaks on the LAN: Router Solicitation and
Router Advertisement (RFC 4861 §4.1, §4.2) with the Prefix Information (§4.6.2), Source
Link-Layer Address (§4.6.1) and Route Information (RFC 4191 §2.3) options.

The messages are the ICMPv6 body (type, code, checksum and the rest) as a raw ICMPv6 socket
sends and receives them: the kernel computes the checksum, so it is written as zero and not
checked here. Unknown options are kept as bytes; a message whose options do not tile its
length exactly, or that has a zero-length option, is a :class:`ParseError` (§4.6)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from drivers.errors import InvalidArgument
from gateway.errors import ParseError

__all__ = [
    "ICMP6_RA",
    "ICMP6_RS",
    "PREFERENCE_HIGH",
    "PREFERENCE_LOW",
    "PREFERENCE_MEDIUM",
    "PrefixInfo",
    "RouteInfo",
    "RouterAdvert",
    "RouterSolicit",
    "parse_nd",
]

ICMP6_RS: Final = 133
ICMP6_RA: Final = 134
OPT_SLLA: Final = 1
OPT_PIO: Final = 3
OPT_RIO: Final = 24
PIO_FLAG_L: Final = 0x80
PIO_FLAG_A: Final = 0x40
RA_FLAG_M: Final = 0x80
RA_FLAG_O: Final = 0x40
RA_FLAG_SNAC_ROUTER: Final = 0x02  # OpenThread's stub-router flag (RouterAdvert::kSnacRouterFlag)
# RFC 4191 §2.1 preference as a signed value: high 1, medium 0, low -1 (10 is reserved)
PREFERENCE_HIGH: Final = 1
PREFERENCE_MEDIUM: Final = 0
PREFERENCE_LOW: Final = -1
_PRF_BITS = {PREFERENCE_HIGH: 0b01, PREFERENCE_MEDIUM: 0b00, PREFERENCE_LOW: 0b11}
_PRF_VALUE = {0b01: PREFERENCE_HIGH, 0b00: PREFERENCE_MEDIUM, 0b11: PREFERENCE_LOW}
INFINITE: Final = 0xFFFFFFFF


def _prefix(net: ipaddress.IPv6Network | str) -> ipaddress.IPv6Network:
    n = ipaddress.IPv6Network(net)
    return n


@dataclass(frozen=True, slots=True)
class PrefixInfo:
    """A Prefix Information Option (type 3, 32 bytes)."""

    prefix: ipaddress.IPv6Network
    valid_lifetime: int
    preferred_lifetime: int
    on_link: bool = True
    autonomous: bool = True
    other_flags: int = 0  # the remaining flag bits (e.g. 0x10, DHCPv6-PD preferred)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", _prefix(self.prefix))
        for v in (self.valid_lifetime, self.preferred_lifetime):
            if not 0 <= v <= INFINITE:
                raise InvalidArgument("a PIO lifetime must fit 32 bits")

    def to_bytes(self) -> bytes:
        flags = (PIO_FLAG_L if self.on_link else 0) | (PIO_FLAG_A if self.autonomous else 0)
        flags |= self.other_flags & 0x3F
        return (
            bytes((OPT_PIO, 4, self.prefix.prefixlen, flags))
            + self.valid_lifetime.to_bytes(4, "big")
            + self.preferred_lifetime.to_bytes(4, "big")
            + bytes(4)
            + self.prefix.network_address.packed
        )

    @classmethod
    def from_option(cls, body: bytes) -> PrefixInfo:
        if len(body) != 32:
            raise ParseError("a Prefix Information option is 32 bytes")
        plen = body[2]
        if plen > 128:
            raise ParseError("PIO prefix length over 128")
        flags = body[3]
        addr = ipaddress.IPv6Address(body[16:32])
        net = ipaddress.IPv6Network((addr, plen), strict=False)
        return cls(
            net,
            int.from_bytes(body[4:8], "big"),
            int.from_bytes(body[8:12], "big"),
            bool(flags & PIO_FLAG_L),
            bool(flags & PIO_FLAG_A),
            flags & 0x3F,
        )


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """A Route Information Option (RFC 4191 §2.3): 8, 16 or 24 bytes by prefix length."""

    prefix: ipaddress.IPv6Network
    lifetime: int
    preference: int = PREFERENCE_MEDIUM

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", _prefix(self.prefix))
        if self.preference not in _PRF_BITS:
            raise InvalidArgument("RIO preference must be -1, 0 or 1")
        if not 0 <= self.lifetime <= INFINITE:
            raise InvalidArgument("a RIO lifetime must fit 32 bits")

    def to_bytes(self) -> bytes:
        plen = self.prefix.prefixlen
        octets = 0 if plen == 0 else 8 if plen <= 64 else 16
        length = 1 + (octets + 7) // 8
        return (
            bytes((OPT_RIO, length, plen, _PRF_BITS[self.preference] << 3))
            + self.lifetime.to_bytes(4, "big")
            + self.prefix.network_address.packed[:octets]
        )

    @classmethod
    def from_option(cls, body: bytes) -> RouteInfo:
        length = body[1]
        plen = body[2]
        if length not in (1, 2, 3) or plen > 128:
            raise ParseError("a Route Information option has length 1..3 and a prefix <= 128")
        if (plen > 64 and length < 3) or (plen > 0 and length < 2):
            raise ParseError("Route Information option too short for its prefix length")
        prf = (body[3] >> 3) & 0b11
        if prf == 0b10:
            raise ParseError("reserved route preference")
        raw = body[8 : 8 * length].ljust(16, b"\x00")
        net = ipaddress.IPv6Network((ipaddress.IPv6Address(raw), plen), strict=False)
        return cls(net, int.from_bytes(body[4:8], "big"), _PRF_VALUE[prf])


@dataclass(frozen=True, slots=True)
class RouterSolicit:
    """A Router Solicitation (type 133), optionally with a Source Link-Layer Address."""

    slla: bytes | None = None

    def to_bytes(self) -> bytes:
        out = bytes((ICMP6_RS, 0, 0, 0)) + bytes(4)
        if self.slla is not None:
            out += _slla(self.slla)
        return out


def _slla(mac: bytes) -> bytes:
    body = bytes((OPT_SLLA, 0)) + mac
    pad = -len(body) % 8
    body += bytes(pad)
    return bytes((OPT_SLLA, len(body) // 8)) + body[2:]


@dataclass(frozen=True, slots=True)
class RouterAdvert:
    """A Router Advertisement (type 134). ``flags`` is the flags byte (M, O, Prf, SNAC...)."""

    cur_hop_limit: int = 0
    flags: int = 0
    router_lifetime: int = 0
    reachable_time: int = 0
    retrans_timer: int = 0
    prefixes: tuple[PrefixInfo, ...] = ()
    routes: tuple[RouteInfo, ...] = ()
    slla: bytes | None = None
    other_options: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def default_preference(self) -> int:
        """The default router preference of the header (RFC 4191 §2.2)."""
        return _PRF_VALUE.get((self.flags >> 3) & 0b11, PREFERENCE_MEDIUM)

    def to_bytes(self) -> bytes:
        """The ICMPv6 body in OpenThread's option order: PIOs, RIOs, then the SLLA."""
        out = bytearray((ICMP6_RA, 0, 0, 0, self.cur_hop_limit & 0xFF, self.flags & 0xFF))
        out += self.router_lifetime.to_bytes(2, "big")
        out += self.reachable_time.to_bytes(4, "big") + self.retrans_timer.to_bytes(4, "big")
        for p in self.prefixes:
            out += p.to_bytes()
        for r in self.routes:
            out += r.to_bytes()
        if self.slla is not None:
            out += _slla(self.slla)
        for o in self.other_options:
            out += o
        return bytes(out)


def _options(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    i = 0
    while i < len(data):
        if len(data) - i < 2:
            raise ParseError("truncated ND option")
        n = data[i + 1] * 8
        if n == 0:
            raise ParseError("ND option of length zero")
        if i + n > len(data):
            raise ParseError("ND option runs past the message")
        out.append(data[i : i + n])
        i += n
    return out


def parse_nd(data: bytes) -> RouterAdvert | RouterSolicit | None:
    """An RS or RA from an ICMPv6 body; None for other ICMPv6 types. Code must be 0 (§6.1)."""
    if len(data) < 4:
        raise ParseError("ICMPv6 message shorter than 4 bytes")
    kind, code = data[0], data[1]
    if kind not in (ICMP6_RS, ICMP6_RA):
        return None
    if code != 0:
        raise ParseError("ND message with a non-zero code")
    if kind == ICMP6_RS:
        if len(data) < 8:
            raise ParseError("Router Solicitation shorter than 8 bytes")
        slla = None
        for opt in _options(data[8:]):
            if opt[0] == OPT_SLLA:
                slla = opt[2:8]
        return RouterSolicit(slla)
    if len(data) < 16:
        raise ParseError("Router Advertisement shorter than 16 bytes")
    prefixes: list[PrefixInfo] = []
    routes: list[RouteInfo] = []
    other: list[bytes] = []
    slla = None
    for opt in _options(data[16:]):
        if opt[0] == OPT_PIO:
            prefixes.append(PrefixInfo.from_option(opt))
        elif opt[0] == OPT_RIO:
            routes.append(RouteInfo.from_option(opt))
        elif opt[0] == OPT_SLLA:
            slla = opt[2:8]
        else:
            other.append(opt)
    return RouterAdvert(
        data[4],
        data[5],
        int.from_bytes(data[6:8], "big"),
        int.from_bytes(data[8:12], "big"),
        int.from_bytes(data[12:16], "big"),
        tuple(prefixes),
        tuple(routes),
        slla,
        tuple(other),
    )
