"""IPv6 services of a Thread node at the datagram level: ICMPv6 echo, the MPL Hop-by-Hop option
realm-local multicast carries, and the EID-to-RLOC cache behind Address Query (fact sheet §9;
OpenThread ``net/icmp6.cpp``, ``net/ip6_mpl.cpp``, ``address_resolver.cpp``).

Parsers (:func:`parse_echo`, :func:`strip_mpl`) take hostile packets and raise
:class:`~gateway.errors.ParseError` only.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from gateway.errors import InvalidArgument, ParseError
from gateway.thread.network.constants import (
    ADDRESS_QUERY_INITIAL_RETRY_DELAY,
    ADDRESS_QUERY_MAX_RETRY_DELAY,
    ADDRESS_QUERY_TIMEOUT,
    EID_CACHE_ENTRIES,
    MPL_SEED_LIFETIME,
    MPL_SEED_SET_ENTRIES,
    PENDING_PACKETS_PER_QUERY,
)
from gateway.wire.ipv6 import PROTO_HOPOPTS, PROTO_ICMPV6, Ipv6Packet, upper_layer_checksum

__all__ = [
    "ECHO_REPLY",
    "ECHO_REQUEST",
    "AddressResolver",
    "Echo",
    "MplOption",
    "MplSeedSet",
    "add_mpl",
    "echo_packet",
    "parse_echo",
    "strip_mpl",
]

Addr = ipaddress.IPv6Address

ECHO_REQUEST: Final = 128
ECHO_REPLY: Final = 129
MPL_OPTION: Final = 0x6D
PROTO_IPV6_IN_IPV6: Final = 41


# --- ICMPv6 echo ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Echo:
    """An ICMPv6 Echo Request (``request``) or Reply."""

    request: bool
    identifier: int
    sequence: int
    data: bytes = b""


def echo_packet(src: Addr, dst: Addr, echo: Echo, *, hop_limit: int = 64) -> Ipv6Packet:
    if not 0 <= echo.identifier <= 0xFFFF or not 0 <= echo.sequence <= 0xFFFF:
        raise InvalidArgument("echo identifier and sequence are 16 bits")
    body = bytes((ECHO_REQUEST if echo.request else ECHO_REPLY, 0, 0, 0))
    body += echo.identifier.to_bytes(2, "big") + echo.sequence.to_bytes(2, "big") + echo.data
    csum = upper_layer_checksum(src, dst, PROTO_ICMPV6, body)
    body = body[:2] + csum.to_bytes(2, "big") + body[4:]
    return Ipv6Packet(src, dst, PROTO_ICMPV6, body, hop_limit)


def parse_echo(packet: Ipv6Packet) -> Echo | None:
    """The echo request/reply an ICMPv6 packet carries (``None`` for other ICMPv6 types or
    other protocols). A short message or a bad checksum is a :class:`ParseError`."""
    if packet.next_header != PROTO_ICMPV6:
        return None
    body = packet.payload
    if len(body) < 4:
        raise ParseError("ICMPv6 message shorter than 4 bytes")
    if upper_layer_checksum(
        packet.src, packet.dst, PROTO_ICMPV6, body[:2] + b"\0\0" + body[4:]
    ) != int.from_bytes(body[2:4], "big"):
        raise ParseError("bad ICMPv6 checksum")
    if body[0] not in (ECHO_REQUEST, ECHO_REPLY):
        return None
    if len(body) < 8:
        raise ParseError("ICMPv6 echo shorter than 8 bytes")
    return Echo(
        body[0] == ECHO_REQUEST,
        int.from_bytes(body[4:6], "big"),
        int.from_bytes(body[6:8], "big"),
        body[8:],
    )


# --- MPL ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MplOption:
    """RFC 7731 MPL option: ``seed`` is the 16-bit seed ID, or ``None`` when elided (then the
    seed is the IPv6 source); ``sequence`` 8 bits; ``max_flag`` the M bit."""

    sequence: int
    seed: int | None = None
    max_flag: bool = False

    def option_bytes(self) -> bytes:
        flags = (0x40 if self.seed is not None else 0x00) | (0x20 if self.max_flag else 0)
        data = bytes((flags, self.sequence & 0xFF))
        if self.seed is not None:
            data += (self.seed & 0xFFFF).to_bytes(2, "big")
        return bytes((MPL_OPTION, len(data))) + data


def add_mpl(packet: Ipv6Packet, option: MplOption) -> Ipv6Packet:
    """Insert a Hop-by-Hop header holding ``option`` (padded to 8 bytes), as OpenThread sends
    realm-local multicast from its own addresses."""
    opts = option.option_bytes()
    pad = (8 - (2 + len(opts)) % 8) % 8
    if pad == 1:
        opts += b"\x00"
    elif pad:
        opts += bytes((0x01, pad - 2)) + bytes(pad - 2)
    hbh = bytes((packet.next_header, (2 + len(opts)) // 8 - 1)) + opts
    return Ipv6Packet(
        packet.src,
        packet.dst,
        PROTO_HOPOPTS,
        hbh + packet.payload,
        packet.hop_limit,
        packet.traffic_class,
        packet.flow_label,
    )


def strip_mpl(packet: Ipv6Packet) -> tuple[MplOption | None, Ipv6Packet]:
    """Remove a leading Hop-by-Hop header and return its MPL option (``None`` if there is no
    such header or option); with IPv6-in-IPv6 behind it the inner packet comes back. Malformed
    headers raise :class:`ParseError`."""
    if packet.next_header != PROTO_HOPOPTS:
        return None, packet
    p = packet.payload
    if len(p) < 8:
        raise ParseError("Hop-by-Hop header truncated")
    length = (p[1] + 1) * 8
    if length > len(p):
        raise ParseError("Hop-by-Hop header longer than the packet")
    mpl: MplOption | None = None
    pos = 2
    while pos < length:
        t = p[pos]
        if t == 0x00:
            pos += 1
            continue
        if pos + 2 > length:
            raise ParseError("Hop-by-Hop option truncated")
        n = p[pos + 1]
        if pos + 2 + n > length:
            raise ParseError("Hop-by-Hop option runs past its header")
        if t == MPL_OPTION and mpl is None:
            data = p[pos + 2 : pos + 2 + n]
            if len(data) < 2:
                raise ParseError("MPL option shorter than 2 bytes")
            s = data[0] >> 6
            if s == 0:
                seed = None
            elif s == 1:
                if len(data) < 4:
                    raise ParseError("MPL option: 16-bit seed truncated")
                seed = int.from_bytes(data[2:4], "big")
            else:
                raise ParseError("MPL option: 64/128-bit seed IDs are not used by Thread")
            mpl = MplOption(data[1], seed, bool(data[0] & 0x20))
        pos += 2 + n
    nh, rest = p[0], p[length:]
    if nh == PROTO_IPV6_IN_IPV6:
        return mpl, Ipv6Packet.from_bytes(rest)
    return mpl, Ipv6Packet(
        packet.src, packet.dst, nh, rest, packet.hop_limit, packet.traffic_class, packet.flow_label
    )


@dataclass
class MplSeedSet:
    """Recently seen (seed, sequence) pairs, to drop duplicates. Bounded."""

    lifetime: float = MPL_SEED_LIFETIME
    max_entries: int = MPL_SEED_SET_ENTRIES
    _seen: OrderedDict[tuple[bytes, int], float] = field(default_factory=OrderedDict)

    def seen(self, seed: bytes, sequence: int, now: float) -> bool:
        """True if already seen; otherwise remembers it."""
        for k in [k for k, t in self._seen.items() if t <= now]:
            del self._seen[k]
        key = (seed, sequence)
        if key in self._seen:
            return True
        self._seen[key] = now + self.lifetime
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return False


# --- address resolution ------------------------------------------------------------------------


@dataclass
class _Eid:
    state: str  # "cache" | "query" | "retry"
    rloc16: int | None = None
    ml_eid_iid: bytes | None = None
    deadline: float = 0.0
    retry_delay: float = ADDRESS_QUERY_INITIAL_RETRY_DELAY
    pending: list[Ipv6Packet] = field(default_factory=list)


@dataclass
class AddressResolver:
    """The EID-to-RLOC16 cache with query state (bounded: ``max_entries`` EIDs, a few waiting
    packets per query). Query timeout 3 s, then a retry delay of 15 s doubling to 120 s."""

    max_entries: int = EID_CACHE_ENTRIES
    query_timeout: float = ADDRESS_QUERY_TIMEOUT
    _entries: OrderedDict[Addr, _Eid] = field(default_factory=OrderedDict)
    counters: dict[str, int] = field(
        default_factory=lambda: {"queries": 0, "answered": 0, "timeouts": 0, "dropped": 0}
    )

    def lookup(self, eid: Addr) -> int | None:
        e = self._entries.get(eid)
        if e is not None and e.state == "cache":
            self._entries.move_to_end(eid)
            return e.rloc16
        return None

    def resolve(self, eid: Addr, packet: Ipv6Packet, now: float) -> bool:
        """Hold ``packet`` until ``eid`` resolves. True when a new Address Query must go out;
        False while one is outstanding or in retry back-off (then the packet may be dropped)."""
        e = self._entries.get(eid)
        if e is None:
            self._make_room()
            e = _Eid("query", deadline=now + self.query_timeout)
            self._entries[eid] = e
            e.pending.append(packet)
            self.counters["queries"] += 1
            return True
        if e.state == "query":
            if len(e.pending) < PENDING_PACKETS_PER_QUERY:
                e.pending.append(packet)
            else:
                self.counters["dropped"] += 1
            return False
        if e.state == "retry" and now >= e.deadline:
            e.state = "query"
            e.deadline = now + self.query_timeout
            e.pending = [packet]
            self.counters["queries"] += 1
            return True
        self.counters["dropped"] += 1
        return False

    def _make_room(self) -> None:
        while len(self._entries) >= self.max_entries:
            victim = next((k for k, v in self._entries.items() if v.state != "query"), None)
            if victim is None:
                victim = next(iter(self._entries))
            gone = self._entries.pop(victim)
            self.counters["dropped"] += len(gone.pending)

    def notify(self, eid: Addr, rloc16: int, ml_eid_iid: bytes | None) -> list[Ipv6Packet]:
        """An Address Notification: cache it; returns the packets that waited for it."""
        e = self._entries.get(eid)
        if e is None:
            self._make_room()
            e = _Eid("cache")
            self._entries[eid] = e
        pending, e.pending = e.pending, []
        e.state, e.rloc16, e.ml_eid_iid = "cache", rloc16, ml_eid_iid
        e.retry_delay = ADDRESS_QUERY_INITIAL_RETRY_DELAY
        self.counters["answered"] += 1
        return pending

    def add(self, eid: Addr, rloc16: int) -> None:
        self.notify(eid, rloc16, None)

    def remove_rloc16(self, rloc16: int) -> None:
        for k in [k for k, v in self._entries.items() if v.rloc16 == rloc16]:
            del self._entries[k]

    def remove(self, eid: Addr) -> None:
        self._entries.pop(eid, None)

    def next_timeout(self) -> float | None:
        return min((v.deadline for v in self._entries.values() if v.state == "query"), default=None)

    def poll(self, now: float) -> int:
        """Query timeouts: the waiting packets are dropped and the entry backs off. Returns how
        many packets were dropped."""
        dropped = 0
        for e in self._entries.values():
            if e.state == "query" and now >= e.deadline:
                dropped += len(e.pending)
                e.pending = []
                e.state = "retry"
                e.deadline = now + e.retry_delay
                e.retry_delay = min(e.retry_delay * 2, ADDRESS_QUERY_MAX_RETRY_DELAY)
                self.counters["timeouts"] += 1
        self.counters["dropped"] += dropped
        return dropped

    def entries(self) -> list[dict[str, object]]:
        return [
            {
                "eid": str(k),
                "state": v.state,
                "rloc16": None if v.rloc16 is None else f"0x{v.rloc16:04x}",
            }
            for k, v in self._entries.items()
        ]
