"""Thread Network Data: the TLV codec, the stable subset children without the N bit get, and the
Leader's copy with its versions (fact sheet §8; OpenThread ``network_data_tlvs.hpp``,
``network_data.cpp``, ``network_data_leader.cpp``).

Wire form: ``type << 1 | S`` (S = stable), a one-byte length (no extended form: Network Data
is at most 254 bytes), the value. Prefix (1) and Service (5) values end in sub-TLVs of the
same framing.

* :func:`parse_network_data` takes hostile bytes and raises :class:`~gateway.errors.ParseError`
  only; TLVs of unknown type, or of a known type in a place it does not belong, are kept raw
  (:class:`UnknownTlv`), so parsing and encoding round-trip byte for byte.
* :meth:`NetworkData.stable_subset` is ``RemoveTemporaryData``: non-stable TLVs and sub-TLVs
  go; stable Border Router entries get RLOC16 0xFFFE (D/C entries the DHCP agent ALOC
  0xFC00 + context ID), Has Route entries 0xFFFE, Server16 the service ALOC 0xFC10 + ID.
* :class:`NetworkDataLeader` is what the Leader publishes: the Commissioning Data TLV, the
  gateway's own prefixes (6LoWPAN context IDs 1..15 allocated lowest-free, a released context
  kept with C = 0 for 300 s), and the Data Version / Stable Data Version (8-bit serial numbers:
  any change bumps the first, a change of stable data both). The mesh-local prefix is context
  0 implicitly and never appears in Network Data.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, ClassVar, Final

from gateway.errors import InvalidArgument, ParseError
from gateway.thread.network.constants import (
    DHCP_AGENT_ALOC16_BASE,
    INVALID_RLOC16,
    SERVICE_ALOC16_BASE,
)
from gateway.wire.lowpan import LowpanContext
from gateway.wire.tlv import check_uint

__all__ = [
    "MAX_NETWORK_DATA_LENGTH",
    "BorderRouterEntry",
    "BorderRouterTlv",
    "CommissioningDataTlv",
    "ContextTlv",
    "HasRouteEntry",
    "HasRouteTlv",
    "NetDataTlv",
    "NetDataType",
    "NetworkData",
    "NetworkDataLeader",
    "OwnPrefix",
    "PrefixTlv",
    "ServerTlv",
    "ServiceTlv",
    "UnknownTlv",
    "parse_network_data",
    "serial_newer",
]

MAX_NETWORK_DATA_LENGTH: Final = 254
CONTEXT_REUSE_DELAY: Final = 300.0
MIN_CONTEXT_ID: Final = 1
MAX_CONTEXT_ID: Final = 15
THREAD_ENTERPRISE_NUMBER: Final = 44970


class NetDataType(IntEnum):
    HAS_ROUTE = 0
    PREFIX = 1
    BORDER_ROUTER = 2
    CONTEXT = 3
    COMMISSIONING_DATA = 4
    SERVICE = 5
    SERVER = 6


def serial_newer(a: int, b: int) -> bool:
    """8-bit serial number arithmetic (RFC 1982): is ``a`` newer than ``b``?"""
    return a != b and ((a - b) & 0xFF) < 0x80


def _header(tlv_type: int, stable: bool, value: bytes) -> bytes:
    if len(value) > 0xFF:
        raise InvalidArgument("a Network Data TLV value is at most 255 bytes")
    return bytes(((tlv_type << 1) | (1 if stable else 0), len(value))) + value


# --- entries and sub-TLVs -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HasRouteEntry:
    """RLOC16 (2) | flags (1): preference bits 7-6, NAT64 bit 5, AdvPIO bit 4."""

    rloc16: int
    flags: int = 0

    def __post_init__(self) -> None:
        check_uint(self.rloc16, 16, "RLOC16")
        check_uint(self.flags, 8, "Has Route flags")

    def to_bytes(self) -> bytes:
        return self.rloc16.to_bytes(2, "big") + bytes((self.flags,))


@dataclass(frozen=True, slots=True)
class HasRouteTlv:
    TYPE: ClassVar[int] = NetDataType.HAS_ROUTE
    entries: tuple[HasRouteEntry, ...] = ()
    stable: bool = False

    def to_bytes(self) -> bytes:
        return _header(self.TYPE, self.stable, b"".join(e.to_bytes() for e in self.entries))

    @classmethod
    def from_value(cls, value: bytes, stable: bool) -> HasRouteTlv:
        if len(value) % 3:
            raise ParseError(f"Has Route TLV: {len(value)} bytes is not a multiple of 3")
        return cls(
            tuple(
                HasRouteEntry(int.from_bytes(value[i : i + 2], "big"), value[i + 2])
                for i in range(0, len(value), 3)
            ),
            stable,
        )


@dataclass(frozen=True, slots=True)
class BorderRouterEntry:
    """RLOC16 (2) | flags (2): prf bits 15-14, P 13, S 12, D 11, C 10, R 9, O 8, N 7."""

    rloc16: int
    flags: int = 0

    PREFERRED: ClassVar[int] = 1 << 13
    SLAAC: ClassVar[int] = 1 << 12
    DHCP: ClassVar[int] = 1 << 11
    CONFIGURE: ClassVar[int] = 1 << 10
    DEFAULT_ROUTE: ClassVar[int] = 1 << 9
    ON_MESH: ClassVar[int] = 1 << 8
    ND_DNS: ClassVar[int] = 1 << 7

    def __post_init__(self) -> None:
        check_uint(self.rloc16, 16, "RLOC16")
        check_uint(self.flags, 16, "Border Router flags")

    @property
    def preference(self) -> int:
        """-1 low, 0 medium, 1 high (2 = reserved, read as medium by OpenThread)."""
        p = self.flags >> 14
        return p - 4 if p >= 2 else p

    def to_bytes(self) -> bytes:
        return self.rloc16.to_bytes(2, "big") + self.flags.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class BorderRouterTlv:
    TYPE: ClassVar[int] = NetDataType.BORDER_ROUTER
    entries: tuple[BorderRouterEntry, ...] = ()
    stable: bool = False

    def to_bytes(self) -> bytes:
        return _header(self.TYPE, self.stable, b"".join(e.to_bytes() for e in self.entries))

    @classmethod
    def from_value(cls, value: bytes, stable: bool) -> BorderRouterTlv:
        if len(value) % 4:
            raise ParseError(f"Border Router TLV: {len(value)} bytes is not a multiple of 4")
        return cls(
            tuple(
                BorderRouterEntry(
                    int.from_bytes(value[i : i + 2], "big"),
                    int.from_bytes(value[i + 2 : i + 4], "big"),
                )
                for i in range(0, len(value), 4)
            ),
            stable,
        )


@dataclass(frozen=True, slots=True)
class ContextTlv:
    """6LoWPAN Context: flags (reserved bits 7-5, C bit 4, CID bits 3-0) | context length."""

    TYPE: ClassVar[int] = NetDataType.CONTEXT
    context_id: int
    context_length: int
    compress: bool = True
    stable: bool = True
    reserved: int = 0
    extra: bytes = b""

    def __post_init__(self) -> None:
        check_uint(self.context_id, 4, "context ID")
        check_uint(self.reserved, 3, "context reserved bits")
        if not 0 <= self.context_length <= 128:
            raise InvalidArgument("a context length is 0..128 bits")

    def to_bytes(self) -> bytes:
        flags = (self.reserved << 5) | (0x10 if self.compress else 0) | self.context_id
        return _header(self.TYPE, self.stable, bytes((flags, self.context_length)) + self.extra)

    @classmethod
    def from_value(cls, value: bytes, stable: bool) -> ContextTlv:
        if len(value) < 2:
            raise ParseError("6LoWPAN Context TLV shorter than 2 bytes")
        if value[1] > 128:
            raise ParseError(f"6LoWPAN Context TLV: context length {value[1]} > 128")
        return cls(
            value[0] & 0x0F, value[1], bool(value[0] & 0x10), stable, value[0] >> 5, value[2:]
        )


@dataclass(frozen=True, slots=True)
class ServerTlv:
    TYPE: ClassVar[int] = NetDataType.SERVER
    server16: int
    server_data: bytes = b""
    stable: bool = False

    def __post_init__(self) -> None:
        check_uint(self.server16, 16, "Server16")

    def to_bytes(self) -> bytes:
        return _header(self.TYPE, self.stable, self.server16.to_bytes(2, "big") + self.server_data)

    @classmethod
    def from_value(cls, value: bytes, stable: bool) -> ServerTlv:
        if len(value) < 2:
            raise ParseError("Server TLV shorter than 2 bytes")
        return cls(int.from_bytes(value[:2], "big"), value[2:], stable)


@dataclass(frozen=True, slots=True)
class UnknownTlv:
    """A TLV kept as it came (unknown type, or a known type out of place)."""

    type: int
    value: bytes
    stable: bool = False

    def __post_init__(self) -> None:
        check_uint(self.type, 7, "Network Data TLV type")

    def __repr__(self) -> str:
        return f"UnknownTlv(type={self.type}, len={len(self.value)}, stable={self.stable})"

    def to_bytes(self) -> bytes:
        return _header(self.type, self.stable, self.value)


PrefixSubTlv = BorderRouterTlv | HasRouteTlv | ContextTlv | UnknownTlv
ServiceSubTlv = ServerTlv | UnknownTlv


# --- top-level TLVs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrefixTlv:
    """Domain ID | prefix length (bits) | prefix bytes (ceil(len/8)) | sub-TLVs."""

    TYPE: ClassVar[int] = NetDataType.PREFIX
    prefix_length: int
    prefix: bytes
    sub_tlvs: tuple[PrefixSubTlv, ...] = ()
    stable: bool = False
    domain_id: int = 0

    def __post_init__(self) -> None:
        check_uint(self.domain_id, 8, "domain ID")
        if not 0 <= self.prefix_length <= 128:
            raise InvalidArgument("a prefix length is 0..128 bits")
        object.__setattr__(self, "prefix", bytes(self.prefix))
        if len(self.prefix) != (self.prefix_length + 7) // 8:
            raise InvalidArgument("prefix bytes do not match the prefix length")
        object.__setattr__(self, "sub_tlvs", tuple(self.sub_tlvs))

    @classmethod
    def of(
        cls, network: ipaddress.IPv6Network | str, sub_tlvs: Iterable[PrefixSubTlv]
    ) -> PrefixTlv:
        """A prefix TLV for ``network``; stable iff any sub-TLV is (``Leader::UpdateTlv``)."""
        net = ipaddress.IPv6Network(network)
        subs = tuple(sub_tlvs)
        n = net.prefixlen
        return cls(n, net.network_address.packed[: (n + 7) // 8], subs, any(s.stable for s in subs))

    @property
    def network(self) -> ipaddress.IPv6Network:
        raw = self.prefix + bytes(16 - len(self.prefix))
        return ipaddress.IPv6Network((raw, self.prefix_length), strict=False)

    def first(self, cls: type[Any]) -> Any:
        for s in self.sub_tlvs:
            if isinstance(s, cls):
                return s
        return None

    @property
    def context(self) -> ContextTlv | None:
        ctx: ContextTlv | None = self.first(ContextTlv)
        return ctx

    def to_bytes(self) -> bytes:
        value = bytes((self.domain_id, self.prefix_length)) + self.prefix
        value += b"".join(s.to_bytes() for s in self.sub_tlvs)
        return _header(self.TYPE, self.stable, value)

    @classmethod
    def from_value(cls, value: bytes, stable: bool) -> PrefixTlv:
        if len(value) < 2:
            raise ParseError("Prefix TLV shorter than 2 bytes")
        length = value[1]
        if length > 128:
            raise ParseError(f"Prefix TLV: prefix length {length} > 128")
        end = 2 + (length + 7) // 8
        if end > len(value):
            raise ParseError("Prefix TLV: prefix truncated")
        subs: list[PrefixSubTlv] = []
        for t, s, v in _iter(value[end:]):
            if t == NetDataType.BORDER_ROUTER:
                subs.append(BorderRouterTlv.from_value(v, s))
            elif t == NetDataType.HAS_ROUTE:
                subs.append(HasRouteTlv.from_value(v, s))
            elif t == NetDataType.CONTEXT:
                subs.append(ContextTlv.from_value(v, s))
            else:
                subs.append(UnknownTlv(t, v, s))
        return cls(length, value[2:end], tuple(subs), stable, value[0])


@dataclass(frozen=True, slots=True)
class CommissioningDataTlv:
    """Commissioning Data: the leader's MeshCoP commissioning TLVs, raw. Never stable."""

    TYPE: ClassVar[int] = NetDataType.COMMISSIONING_DATA
    value: bytes = b""
    stable: bool = False

    def __repr__(self) -> str:
        return f"CommissioningDataTlv(len={len(self.value)})"

    def to_bytes(self) -> bytes:
        return _header(self.TYPE, self.stable, self.value)


@dataclass(frozen=True, slots=True)
class ServiceTlv:
    """flags (T bit 7, service ID bits 3-0) | [enterprise number (4) if T = 0] | service data
    length | service data | sub-TLVs (Server)."""

    TYPE: ClassVar[int] = NetDataType.SERVICE
    service_id: int
    service_data: bytes
    enterprise_number: int = THREAD_ENTERPRISE_NUMBER
    sub_tlvs: tuple[ServiceSubTlv, ...] = ()
    stable: bool = False
    reserved: int = 0  # flags bits 6-4, kept for the round trip
    thread_enterprise: bool | None = None  # T bit; None: set iff the enterprise is Thread's

    def __post_init__(self) -> None:
        check_uint(self.service_id, 4, "service ID")
        check_uint(self.enterprise_number, 32, "enterprise number")
        check_uint(self.reserved, 3, "service reserved bits")
        if len(self.service_data) > 0xFF:
            raise InvalidArgument("service data is at most 255 bytes")
        if self.thread_enterprise is None:
            object.__setattr__(
                self, "thread_enterprise", self.enterprise_number == THREAD_ENTERPRISE_NUMBER
            )
        elif self.thread_enterprise and self.enterprise_number != THREAD_ENTERPRISE_NUMBER:
            raise InvalidArgument("the T bit means the Thread enterprise number")
        object.__setattr__(self, "sub_tlvs", tuple(self.sub_tlvs))

    def to_bytes(self) -> bytes:
        flags = (0x80 if self.thread_enterprise else 0) | (self.reserved << 4) | self.service_id
        value = bytes((flags,))
        if not self.thread_enterprise:
            value += self.enterprise_number.to_bytes(4, "big")
        value += bytes((len(self.service_data),)) + self.service_data
        value += b"".join(s.to_bytes() for s in self.sub_tlvs)
        return _header(self.TYPE, self.stable, value)

    @classmethod
    def from_value(cls, value: bytes, stable: bool) -> ServiceTlv:
        if not value:
            raise ParseError("empty Service TLV")
        flags = value[0]
        pos = 1
        t_bit = bool(flags & 0x80)
        enterprise = THREAD_ENTERPRISE_NUMBER
        if not t_bit:
            if len(value) < 5:
                raise ParseError("Service TLV: enterprise number truncated")
            enterprise = int.from_bytes(value[1:5], "big")
            pos = 5
        if pos >= len(value):
            raise ParseError("Service TLV: service data length missing")
        n = value[pos]
        pos += 1
        if pos + n > len(value):
            raise ParseError("Service TLV: service data truncated")
        data = value[pos : pos + n]
        subs: list[ServiceSubTlv] = []
        for t, s, v in _iter(value[pos + n :]):
            subs.append(
                ServerTlv.from_value(v, s) if t == NetDataType.SERVER else UnknownTlv(t, v, s)
            )
        return cls(flags & 0x0F, data, enterprise, tuple(subs), stable, (flags >> 4) & 0x07, t_bit)


NetDataTlv = PrefixTlv | CommissioningDataTlv | ServiceTlv | UnknownTlv


def _iter(data: bytes) -> Iterator[tuple[int, bool, bytes]]:
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ParseError(f"Network Data TLV header truncated at offset {pos}")
        t, n = data[pos], data[pos + 1]
        if pos + 2 + n > len(data):
            raise ParseError(f"Network Data TLV at offset {pos} claims {n} bytes")
        yield t >> 1, bool(t & 1), data[pos + 2 : pos + 2 + n]
        pos += 2 + n


def parse_network_data(data: bytes | bytearray | memoryview) -> NetworkData:
    """Parse Thread Network Data (the value of MLE TLV 12 / Thread TLV 10). Raises
    :class:`ParseError` and nothing else."""
    raw = bytes(data)
    if len(raw) > MAX_NETWORK_DATA_LENGTH:
        raise ParseError(f"Network Data of {len(raw)} bytes exceeds {MAX_NETWORK_DATA_LENGTH}")
    tlvs: list[NetDataTlv] = []
    try:
        for t, s, v in _iter(raw):
            if t == NetDataType.PREFIX:
                tlvs.append(PrefixTlv.from_value(v, s))
            elif t == NetDataType.COMMISSIONING_DATA:
                tlvs.append(CommissioningDataTlv(v, s))
            elif t == NetDataType.SERVICE:
                tlvs.append(ServiceTlv.from_value(v, s))
            else:
                tlvs.append(UnknownTlv(t, v, s))
    except InvalidArgument as exc:  # pragma: no cover - the checks above come first
        raise ParseError(f"malformed Network Data: {exc.message}") from None
    return NetworkData(tuple(tlvs))


@dataclass(frozen=True, slots=True)
class NetworkData:
    """A Network Data value: its top-level TLVs in order."""

    tlvs: tuple[NetDataTlv, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tlvs", tuple(self.tlvs))

    def to_bytes(self) -> bytes:
        return b"".join(t.to_bytes() for t in self.tlvs)

    @property
    def prefixes(self) -> tuple[PrefixTlv, ...]:
        return tuple(t for t in self.tlvs if isinstance(t, PrefixTlv))

    @property
    def services(self) -> tuple[ServiceTlv, ...]:
        return tuple(t for t in self.tlvs if isinstance(t, ServiceTlv))

    def commissioning_data(self) -> bytes | None:
        for t in self.tlvs:
            if isinstance(t, CommissioningDataTlv):
                return t.value
        return None

    def contexts(self) -> dict[int, LowpanContext]:
        """6LoWPAN contexts 1..15 of the prefixes (context 0, the mesh-local prefix, is never in
        Network Data: the caller adds it)."""
        out: dict[int, LowpanContext] = {}
        for p in self.prefixes:
            ctx = p.context
            if ctx is None or ctx.context_id == 0 or ctx.context_id in out:
                continue
            raw = p.prefix + bytes(16 - len(p.prefix))
            n = min(ctx.context_length, 128)
            net = ipaddress.IPv6Network((raw, n), strict=False)
            out[ctx.context_id] = LowpanContext(net, ctx.compress)
        return out

    def stable_subset(self) -> NetworkData:
        """What a child without the N (full Network Data) bit gets (§8.3)."""
        out: list[NetDataTlv] = []
        for t in self.tlvs:
            if not t.stable:
                continue
            if isinstance(t, PrefixTlv):
                ctx = t.context
                subs: list[PrefixSubTlv] = []
                for s in t.sub_tlvs:
                    if not s.stable:
                        continue
                    if isinstance(s, BorderRouterTlv):
                        dc = BorderRouterEntry.DHCP | BorderRouterEntry.CONFIGURE
                        subs.append(
                            replace(
                                s,
                                entries=tuple(
                                    replace(
                                        e,
                                        rloc16=DHCP_AGENT_ALOC16_BASE + ctx.context_id
                                        if e.flags & dc and ctx is not None
                                        else INVALID_RLOC16,
                                    )
                                    for e in s.entries
                                ),
                            )
                        )
                    elif isinstance(s, HasRouteTlv):
                        subs.append(
                            replace(
                                s,
                                entries=tuple(replace(e, rloc16=INVALID_RLOC16) for e in s.entries),
                            )
                        )
                    else:
                        subs.append(s)
                if subs:
                    out.append(replace(t, sub_tlvs=tuple(subs)))
            elif isinstance(t, ServiceTlv):
                ssubs: list[ServiceSubTlv] = []
                for s2 in t.sub_tlvs:
                    if not s2.stable:
                        continue
                    if isinstance(s2, ServerTlv):
                        ssubs.append(replace(s2, server16=SERVICE_ALOC16_BASE + t.service_id))
                    else:
                        ssubs.append(s2)
                if ssubs:
                    out.append(replace(t, sub_tlvs=tuple(ssubs)))
            else:
                out.append(t)
        return NetworkData(tuple(out))

    def describe(self) -> dict[str, Any]:
        """A JSON-able view (for ``gwctl thread netdata``), like OpenThread's ``netdata show``."""
        prefixes: list[dict[str, Any]] = []
        routes: list[dict[str, Any]] = []
        contexts: list[dict[str, Any]] = []
        for p in self.prefixes:
            for s in p.sub_tlvs:
                if isinstance(s, BorderRouterTlv):
                    for e in s.entries:
                        prefixes.append(
                            {
                                "prefix": str(p.network),
                                "flags": f"0x{e.flags:04x}",
                                "stable": s.stable,
                                "rloc16": f"0x{e.rloc16:04x}",
                            }
                        )
                elif isinstance(s, HasRouteTlv):
                    for r in s.entries:
                        routes.append(
                            {
                                "prefix": str(p.network),
                                "flags": f"0x{r.flags:02x}",
                                "stable": s.stable,
                                "rloc16": f"0x{r.rloc16:04x}",
                            }
                        )
                elif isinstance(s, ContextTlv):
                    contexts.append(
                        {
                            "prefix": str(p.network),
                            "context_id": s.context_id,
                            "compress": s.compress,
                            "stable": s.stable,
                        }
                    )
        services = [
            {
                "service_id": s.service_id,
                "enterprise_number": s.enterprise_number,
                "service_data": s.service_data.hex(),
                "servers": [
                    {
                        "server16": f"0x{v.server16:04x}",
                        "data": v.server_data.hex(),
                        "stable": v.stable,
                    }
                    for v in s.sub_tlvs
                    if isinstance(v, ServerTlv)
                ],
            }
            for s in self.services
        ]
        comm = self.commissioning_data()
        return {
            "prefixes": prefixes,
            "routes": routes,
            "services": services,
            "contexts": contexts,
            "commissioning": comm.hex() if comm is not None else None,
            "raw": self.to_bytes().hex(),
        }


# --- the leader's copy ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnPrefix:
    """A prefix the gateway itself publishes: Border Router and/or Has Route flags."""

    network: ipaddress.IPv6Network
    br_flags: int | None = None  # Border Router entry flags, or None for none
    route_flags: int | None = None  # Has Route entry flags, or None
    stable: bool = True


DNS_SRP_UNICAST = 0x5D
DNS_SRP_ANYCAST = 0x5C


def srp_unicast_service(
    rloc16: int, address: ipaddress.IPv6Address, port: int, service_id: int = 0
) -> ServiceTlv:
    """OpenThread's DNS/SRP unicast entry with the address in the server data: Thread
    enterprise (T bit), service data ``5d``, a stable Server sub-TLV of ML-EID || port."""
    check_uint(port, 16, "SRP port")
    server = ServerTlv(rloc16, address.packed + port.to_bytes(2, "big"), stable=True)
    return ServiceTlv(service_id, bytes((DNS_SRP_UNICAST,)), sub_tlvs=(server,), stable=True)


def srp_unicast_servers(netdata: NetworkData) -> list[tuple[ipaddress.IPv6Address, int]]:
    """The SRP servers a client can use from the unicast-in-server-data entries."""
    out: list[tuple[ipaddress.IPv6Address, int]] = []
    for t in netdata.tlvs:
        if not isinstance(t, ServiceTlv) or t.enterprise_number != THREAD_ENTERPRISE_NUMBER:
            continue
        if t.service_data[:1] != bytes((DNS_SRP_UNICAST,)) or len(t.service_data) != 1:
            continue
        for sub in t.sub_tlvs:
            if isinstance(sub, ServerTlv) and len(sub.server_data) >= 18:
                addr = ipaddress.IPv6Address(sub.server_data[:16])
                out.append((addr, int.from_bytes(sub.server_data[16:18], "big")))
    return sorted(out, key=lambda e: e[0].packed)


@dataclass
class NetworkDataLeader:
    """The Leader's Network Data: commissioning data, the gateway's own prefixes, versions.

    ``rloc16`` is the gateway's; the entries of its prefixes carry it. Versions start random
    (``Leader::Reset``) unless restored.
    """

    rloc16: int
    rng: random.Random | secrets.SystemRandom = field(default_factory=secrets.SystemRandom)
    data_version: int | None = None
    stable_data_version: int | None = None
    commissioning: bytes | None = field(default=None, repr=False)
    own: tuple[OwnPrefix, ...] = ()
    # the SRP server's unicast entry (ML-EID, port), published as OpenThread's DnsSrpUnicast
    srp_unicast: tuple[ipaddress.IPv6Address, int] | None = None
    _context_ids: dict[ipaddress.IPv6Network, int] = field(default_factory=dict)
    _released: dict[int, tuple[ipaddress.IPv6Network, float]] = field(default_factory=dict)
    _data: NetworkData = field(default_factory=NetworkData)
    _stable: NetworkData = field(default_factory=NetworkData)

    def __post_init__(self) -> None:
        if self.data_version is None:
            self.data_version = self.rng.randrange(0, 256)
        if self.stable_data_version is None:
            self.stable_data_version = self.rng.randrange(0, 256)
        self._rebuild()

    @property
    def full(self) -> NetworkData:
        return self._data

    @property
    def stable(self) -> NetworkData:
        return self._stable

    def versions(self) -> tuple[int, int]:
        assert self.data_version is not None and self.stable_data_version is not None
        return self.data_version, self.stable_data_version

    def version_for(self, full: bool) -> int:
        d, s = self.versions()
        return d if full else s

    def contexts(self) -> dict[int, LowpanContext]:
        return self._data.contexts()

    def _bump(self, stable_changed: bool) -> None:
        d, s = self.versions()
        self.data_version = (d + 1) & 0xFF
        if stable_changed:
            self.stable_data_version = (s + 1) & 0xFF

    def _rebuild(self) -> bool:
        """Recompute the TLVs; bump the versions if anything changed. True when it did."""
        tlvs: list[NetDataTlv] = []
        used_ctx: set[int] = set()
        for own in self.own:
            subs: list[PrefixSubTlv] = []
            if own.route_flags is not None:
                subs.append(HasRouteTlv((HasRouteEntry(self.rloc16, own.route_flags),), own.stable))
            if own.br_flags is not None:
                subs.append(
                    BorderRouterTlv((BorderRouterEntry(self.rloc16, own.br_flags),), own.stable)
                )
                cid = self._context_ids.get(own.network)
                if cid is not None:
                    used_ctx.add(cid)
                    subs.append(ContextTlv(cid, own.network.prefixlen, True, own.stable))
            tlvs.append(PrefixTlv.of(own.network, subs))
        for cid, (net, _until) in sorted(self._released.items()):
            if cid not in used_ctx:
                tlvs.append(PrefixTlv.of(net, [ContextTlv(cid, net.prefixlen, False, True)]))
        if self.commissioning is not None:
            tlvs.append(CommissioningDataTlv(self.commissioning))
        if self.srp_unicast is not None:
            tlvs.append(srp_unicast_service(self.rloc16, *self.srp_unicast))
        new = NetworkData(tuple(tlvs))
        if len(new.to_bytes()) > MAX_NETWORK_DATA_LENGTH:
            raise InvalidArgument("the Network Data would exceed 254 bytes")
        new_stable = new.stable_subset()
        changed = new.to_bytes() != self._data.to_bytes()
        stable_changed = new_stable.to_bytes() != self._stable.to_bytes()
        self._data, self._stable = new, new_stable
        return changed or stable_changed

    def set_commissioning_data(self, meshcop_tlvs: bytes | None) -> bool:
        """Replace the Commissioning Data TLV (raw MeshCoP TLVs; None removes it). Only the
        full version moves. Returns True when the Network Data changed."""
        if meshcop_tlvs is not None and len(meshcop_tlvs) > 0xFF:
            raise InvalidArgument("commissioning data longer than 255 bytes")
        if meshcop_tlvs == self.commissioning:
            return False
        self.commissioning = None if meshcop_tlvs is None else bytes(meshcop_tlvs)
        if self._rebuild():
            self._bump(False)
            return True
        return False

    def set_srp_unicast(self, entry: tuple[ipaddress.IPv6Address, int] | None) -> bool:
        """Publish (or with None withdraw) the SRP server's unicast entry. True on change."""
        if entry == self.srp_unicast:
            return False
        before_stable = self._stable.to_bytes()
        self.srp_unicast = entry
        if self._rebuild():
            self._bump(self._stable.to_bytes() != before_stable)
            return True
        return False

    def set_own_prefixes(self, prefixes: Iterable[OwnPrefix], now: float) -> bool:
        """The gateway's own prefixes (e.g. an OMR prefix from border routing). A prefix with a
        Border Router entry gets the lowest free context ID; a dropped one keeps its context
        with C = 0 for 300 s. Returns True when the Network Data changed."""
        new = tuple(prefixes)
        for p in new:
            if not isinstance(p.network, ipaddress.IPv6Network):
                raise InvalidArgument("an own prefix needs an IPv6Network")
        wanted = {p.network for p in new if p.br_flags is not None}
        for net, cid in list(self._context_ids.items()):
            if net not in wanted:
                del self._context_ids[net]
                self._released[cid] = (net, now + CONTEXT_REUSE_DELAY)
        for net in sorted(wanted - set(self._context_ids)):
            back = [c for c, (n, _u) in self._released.items() if n == net]
            if back:
                cid = back[0]
                del self._released[cid]
            else:
                taken = set(self._context_ids.values()) | set(self._released)
                free = [c for c in range(MIN_CONTEXT_ID, MAX_CONTEXT_ID + 1) if c not in taken]
                if not free:
                    raise InvalidArgument("no free 6LoWPAN context ID (1..15)")
                cid = free[0]
            self._context_ids[net] = cid
        before_stable = self._stable.to_bytes()
        self.own = new
        if self._rebuild():
            self._bump(self._stable.to_bytes() != before_stable)
            return True
        return False

    def next_timeout(self) -> float | None:
        return min((u for _n, u in self._released.values()), default=None)

    def poll(self, now: float) -> bool:
        """Delete released contexts whose reuse delay ended. True when the data changed."""
        gone = [c for c, (_n, u) in self._released.items() if u <= now]
        if not gone:
            return False
        for c in gone:
            del self._released[c]
        before_stable = self._stable.to_bytes()
        if self._rebuild():
            self._bump(self._stable.to_bytes() != before_stable)
            return True
        return False
