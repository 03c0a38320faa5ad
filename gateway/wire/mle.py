"""Mesh Link Establishment (MLE) messages: header, security, commands and TLVs.

Wire form (OpenThread ``src/core/thread/mle.cpp``, ``mle.hpp``, ``mle_types.hpp``,
``mle_tlvs.hpp``; fact sheet §5.8 and §7), carried in UDP 19788 with IPv6 hop limit 255:

* security suite 255 (unsecured; only Discovery Request/Response)::

      FF | command | TLVs

* security suite 0 (secured)::

      00 | aux header (10) | encrypted(command | TLVs) | MIC (4)
      aux header = security control 0x15 (key id mode 2, level 5 ENC-MIC-32)
                 | frame counter (4, little-endian)
                 | key source = key sequence (4, big-endian) | key index ((seq & 0x7F) + 1)

  AES-CCM with the MLE key of that key sequence, 4-byte MIC, nonce = sender extended address
  (the sender's link-local IID with the U/L bit 0x02 flipped) | frame counter (4, big-endian) |
  security level 5, and AAD = sender IPv6 | receiver IPv6 | aux header.

:func:`parse_mle` only parses (it raises :class:`~gateway.errors.ParseError` and nothing else):
it returns the plain :class:`MleMessage` of an unsecured frame, or a :class:`SecuredMleFrame`
whose :meth:`~SecuredMleFrame.decrypt` checks the MIC (:class:`~gateway.errors.CryptoError` on
failure). :func:`encode_secured` / :meth:`MleMessage.to_unsecured_bytes` build frames. MLE keys
are never stored or shown: callers pass them per call.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from gateway.errors import CryptoError, InvalidArgument, ParseError
from gateway.wire.meshcop import (
    CommissionerUdpPortTlv,
    DiscoveryRequestTlv,
    DiscoveryResponseTlv,
    ExtendedPanIdTlv,
    JoinerAdvertisementTlv,
    JoinerUdpPortTlv,
    MeshcopTlv,
    NetworkNameTlv,
    SteeringDataTlv,
    ThreadDomainNameTlv,
    TimestampValueTlv,
    decode_meshcop_tlvs,
    encode_meshcop_tlvs,
)
from gateway.wire.tlv import (
    BytesTlv,
    ChannelValueTlv,
    Tlv,
    TypedTlv,
    U8Tlv,
    U16Tlv,
    U32Tlv,
    check_uint,
    decode_typed,
    encode_items,
    first_of,
    need,
    typed_registry,
)

__all__ = [
    "MLE_HOP_LIMIT",
    "MLE_PORT",
    "MLE_TLV_CLASSES",
    "THREAD_VERSION_1_1",
    "THREAD_VERSION_1_2",
    "THREAD_VERSION_1_3",
    "THREAD_VERSION_1_4",
    "ActiveDatasetTlv",
    "ActiveTimestampTlv",
    "Address16Tlv",
    "AddressRegistrationEntry",
    "AddressRegistrationTlv",
    "AuxSecurityHeader",
    "ChallengeTlv",
    "ChannelTlv",
    "ConnectivityTlv",
    "DiscoveryRequestInfo",
    "DiscoveryResponseInfo",
    "DiscoveryTlv",
    "LeaderDataTlv",
    "LinkFrameCounterTlv",
    "LinkMarginTlv",
    "MleCommand",
    "MleFrameCounterTlv",
    "MleMessage",
    "MleTlv",
    "MleTlvType",
    "ModeTlv",
    "NetworkDataTlv",
    "PanIdTlv",
    "PendingDatasetTlv",
    "PendingTimestampTlv",
    "ResponseTlv",
    "Route64Tlv",
    "RouteEntry",
    "ScanMaskTlv",
    "SecuredMleFrame",
    "SecuritySuite",
    "SourceAddressTlv",
    "StatusTlv",
    "SupervisionIntervalTlv",
    "TimeoutTlv",
    "TlvRequestTlv",
    "VersionTlv",
    "decode_mle_tlvs",
    "discovery_request",
    "discovery_response",
    "encode_mle_tlvs",
    "encode_secured",
    "mle_key_index",
    "mle_nonce",
    "parse_discovery_request",
    "parse_discovery_response",
    "parse_mle",
]

MLE_PORT = 19788
MLE_HOP_LIMIT = 255

THREAD_VERSION_1_1 = 2
THREAD_VERSION_1_2 = 3
THREAD_VERSION_1_3 = 4
THREAD_VERSION_1_4 = 5

SECURITY_CONTROL_MLE = 0x15
"""Key ID mode 2 (0x10) | security level 5, ENC-MIC-32 (0x05)."""
SECURITY_LEVEL_ENC_MIC_32 = 5
MIC_LENGTH = 4
AUX_HEADER_LENGTH = 10


class SecuritySuite(IntEnum):
    SECURED = 0
    UNSECURED = 255


class MleCommand(IntEnum):
    """MLE command numbers (OpenThread ``mle_types.hpp``)."""

    LINK_REQUEST = 0
    LINK_ACCEPT = 1
    LINK_ACCEPT_AND_REQUEST = 2
    LINK_REJECT = 3
    ADVERTISEMENT = 4
    UPDATE = 5
    UPDATE_REQUEST = 6
    DATA_REQUEST = 7
    DATA_RESPONSE = 8
    PARENT_REQUEST = 9
    PARENT_RESPONSE = 10
    CHILD_ID_REQUEST = 11
    CHILD_ID_RESPONSE = 12
    CHILD_UPDATE_REQUEST = 13
    CHILD_UPDATE_RESPONSE = 14
    ANNOUNCE = 15
    DISCOVERY_REQUEST = 16
    DISCOVERY_RESPONSE = 17
    LINK_METRICS_MANAGEMENT_REQUEST = 18
    LINK_METRICS_MANAGEMENT_RESPONSE = 19
    LINK_PROBE = 20
    TIME_SYNC = 99
    P2P_LINK_REQUEST = 100
    P2P_LINK_ACCEPT = 101
    P2P_LINK_ACCEPT_AND_REQUEST = 102
    P2P_LINK_TEAR_DOWN = 103


class MleTlvType(IntEnum):
    """MLE TLV type numbers (OpenThread ``mle_tlvs.hpp``)."""

    SOURCE_ADDRESS = 0
    MODE = 1
    TIMEOUT = 2
    CHALLENGE = 3
    RESPONSE = 4
    LINK_FRAME_COUNTER = 5
    LINK_QUALITY = 6
    NETWORK_PARAMETER = 7
    MLE_FRAME_COUNTER = 8
    ROUTE64 = 9
    ADDRESS16 = 10
    LEADER_DATA = 11
    NETWORK_DATA = 12
    TLV_REQUEST = 13
    SCAN_MASK = 14
    CONNECTIVITY = 15
    LINK_MARGIN = 16
    STATUS = 17
    VERSION = 18
    ADDRESS_REGISTRATION = 19
    CHANNEL = 20
    PAN_ID = 21
    ACTIVE_TIMESTAMP = 22
    PENDING_TIMESTAMP = 23
    ACTIVE_DATASET = 24
    PENDING_DATASET = 25
    DISCOVERY = 26
    SUPERVISION_INTERVAL = 27
    WAKEUP_CHANNEL = 74
    CSL_CHANNEL = 80
    CSL_TIMEOUT = 85
    CSL_CLOCK_ACCURACY = 86
    LINK_METRICS_QUERY = 87
    LINK_METRICS_MANAGEMENT = 88
    LINK_METRICS_REPORT = 89
    LINK_PROBE = 90
    TIME_REQUEST = 252
    TIME_PARAMETER = 253
    XTAL_ACCURACY = 254


class MleTlv(TypedTlv):
    """Base of every typed MLE TLV."""

    __slots__ = ()


# --- TLVs -------------------------------------------------------------------------------------


class SourceAddressTlv(U16Tlv, MleTlv):
    """The sender's RLOC16."""

    __slots__ = ()
    TYPE = MleTlvType.SOURCE_ADDRESS


class ModeTlv(U8Tlv, MleTlv):
    """Device mode bits; ``value`` is the raw byte (round-trips unknown bits)."""

    __slots__ = ()
    TYPE = MleTlvType.MODE
    RX_ON_WHEN_IDLE: ClassVar[int] = 0x08
    RESERVED: ClassVar[int] = 0x04
    FULL_THREAD_DEVICE: ClassVar[int] = 0x02
    FULL_NETWORK_DATA: ClassVar[int] = 0x01

    @classmethod
    def of(
        cls, *, rx_on_when_idle: bool, full_thread_device: bool, full_network_data: bool
    ) -> ModeTlv:
        """As OpenThread writes it (``DeviceMode::Set`` also sets the reserved bit)."""
        return cls(
            cls.RESERVED
            | (cls.RX_ON_WHEN_IDLE if rx_on_when_idle else 0)
            | (cls.FULL_THREAD_DEVICE if full_thread_device else 0)
            | (cls.FULL_NETWORK_DATA if full_network_data else 0)
        )

    @property
    def rx_on_when_idle(self) -> bool:
        return bool(self.value & self.RX_ON_WHEN_IDLE)

    @property
    def full_thread_device(self) -> bool:
        return bool(self.value & self.FULL_THREAD_DEVICE)

    @property
    def full_network_data(self) -> bool:
        return bool(self.value & self.FULL_NETWORK_DATA)


class TimeoutTlv(U32Tlv, MleTlv):
    """Child timeout in seconds."""

    __slots__ = ()
    TYPE = MleTlvType.TIMEOUT


class ChallengeTlv(BytesTlv, MleTlv):
    """Random challenge (OpenThread sends 8 bytes, accepts at least 4)."""

    __slots__ = ()
    TYPE = MleTlvType.CHALLENGE
    MIN_LENGTH = 4


class ResponseTlv(BytesTlv, MleTlv):
    """Echo of a received challenge."""

    __slots__ = ()
    TYPE = MleTlvType.RESPONSE
    MIN_LENGTH = 4


class LinkFrameCounterTlv(U32Tlv, MleTlv):
    __slots__ = ()
    TYPE = MleTlvType.LINK_FRAME_COUNTER


class MleFrameCounterTlv(U32Tlv, MleTlv):
    __slots__ = ()
    TYPE = MleTlvType.MLE_FRAME_COUNTER


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One Route64 entry: link quality out/in (0–3) and route cost (0–15) to a router ID."""

    router_id: int
    link_quality_out: int = 0
    link_quality_in: int = 0
    route_cost: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.router_id <= Route64Tlv.MAX_ROUTER_ID:
            raise InvalidArgument(f"router ID must be 0..{Route64Tlv.MAX_ROUTER_ID}")
        check_uint(self.link_quality_out, 2, "link quality out")
        check_uint(self.link_quality_in, 2, "link quality in")
        check_uint(self.route_cost, 4, "route cost")

    @property
    def route_byte(self) -> int:
        return (self.link_quality_out << 6) | (self.link_quality_in << 4) | self.route_cost


@dataclass(frozen=True, slots=True)
class Route64Tlv(MleTlv):
    """ID sequence (1) | router ID mask (8, router 0 = MSB) | one route byte per set bit."""

    TYPE = MleTlvType.ROUTE64
    MAX_ROUTER_ID: ClassVar[int] = 62
    MAX_ROUTERS: ClassVar[int] = 32

    id_sequence: int
    entries: tuple[RouteEntry, ...] = ()

    def __post_init__(self) -> None:
        check_uint(self.id_sequence, 8, "ID sequence")
        object.__setattr__(self, "entries", tuple(self.entries))
        ids = [e.router_id for e in self.entries]
        if ids != sorted(set(ids)):
            raise InvalidArgument("route entries must be in ascending, distinct router ID order")
        if len(ids) > self.MAX_ROUTERS:
            raise InvalidArgument(f"at most {self.MAX_ROUTERS} routers")

    @property
    def router_ids(self) -> tuple[int, ...]:
        return tuple(e.router_id for e in self.entries)

    def value_bytes(self) -> bytes:
        mask = 0
        for e in self.entries:
            mask |= 1 << (63 - e.router_id)
        return (
            bytes((self.id_sequence,))
            + mask.to_bytes(8, "big")
            + bytes(e.route_byte for e in self.entries)
        )

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 9, cls.__name__)
        mask = int.from_bytes(value[1:9], "big")
        if mask & 1:
            raise ParseError("Route64: router ID 63 is not valid")
        ids = [rid for rid in range(cls.MAX_ROUTER_ID + 1) if mask & (1 << (63 - rid))]
        if len(ids) > cls.MAX_ROUTERS:
            raise ParseError(f"Route64: {len(ids)} routers exceed {cls.MAX_ROUTERS}")
        need(value, 9 + len(ids), cls.__name__)
        entries = tuple(
            RouteEntry(rid, b >> 6, (b >> 4) & 0x03, b & 0x0F)
            for rid, b in zip(ids, value[9 : 9 + len(ids)], strict=True)
        )
        return cls(value[0], entries)


class Address16Tlv(U16Tlv, MleTlv):
    """The RLOC16 a parent assigns."""

    __slots__ = ()
    TYPE = MleTlvType.ADDRESS16


@dataclass(frozen=True, slots=True)
class LeaderDataTlv(MleTlv):
    """Partition ID (4) | weighting | data version | stable data version | leader router ID."""

    TYPE = MleTlvType.LEADER_DATA
    partition_id: int
    weighting: int = 64
    data_version: int = 0
    stable_data_version: int = 0
    leader_router_id: int = 0

    def __post_init__(self) -> None:
        check_uint(self.partition_id, 32, "partition ID")
        check_uint(self.weighting, 8, "weighting")
        check_uint(self.data_version, 8, "data version")
        check_uint(self.stable_data_version, 8, "stable data version")
        check_uint(self.leader_router_id, 8, "leader router ID")

    def value_bytes(self) -> bytes:
        return self.partition_id.to_bytes(4, "big") + bytes(
            (self.weighting, self.data_version, self.stable_data_version, self.leader_router_id)
        )

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 8, cls.__name__)
        return cls(int.from_bytes(value[:4], "big"), value[4], value[5], value[6], value[7])


class NetworkDataTlv(BytesTlv, MleTlv):
    """Thread Network Data, kept raw."""

    __slots__ = ()
    TYPE = MleTlvType.NETWORK_DATA


@dataclass(frozen=True, slots=True)
class TlvRequestTlv(MleTlv):
    """The MLE TLV types the sender asks for."""

    TYPE = MleTlvType.TLV_REQUEST
    value: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", tuple(self.value))
        for t in self.value:
            check_uint(t, 8, "TLV type")

    def value_bytes(self) -> bytes:
        return bytes(self.value)

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(tuple(value))


class ScanMaskTlv(U8Tlv, MleTlv):
    """Who should answer a Parent Request: routers (0x80) and/or REEDs (0x40)."""

    __slots__ = ()
    TYPE = MleTlvType.SCAN_MASK
    ROUTER: ClassVar[int] = 0x80
    END_DEVICE: ClassVar[int] = 0x40

    @classmethod
    def of(cls, *, router: bool, end_device: bool) -> ScanMaskTlv:
        return cls((cls.ROUTER if router else 0) | (cls.END_DEVICE if end_device else 0))

    @property
    def router(self) -> bool:
        return bool(self.value & self.ROUTER)

    @property
    def end_device(self) -> bool:
        return bool(self.value & self.END_DEVICE)


@dataclass(frozen=True, slots=True)
class ConnectivityTlv(MleTlv):
    """Parent priority (2-bit signed in bits 7–6 of the flags) | link quality 3/2/1 counts |
    leader cost | ID sequence | active routers | [SED buffer size (2) | SED datagram count]."""

    TYPE = MleTlvType.CONNECTIVITY
    parent_priority: int = 0
    link_quality_3: int = 0
    link_quality_2: int = 0
    link_quality_1: int = 0
    leader_cost: int = 0
    id_sequence: int = 0
    active_routers: int = 0
    sed_buffer_size: int | None = None
    sed_datagram_count: int | None = None

    def __post_init__(self) -> None:
        if not -2 <= self.parent_priority <= 1:
            raise InvalidArgument("parent priority must be -2..1")
        for name in (
            "link_quality_3",
            "link_quality_2",
            "link_quality_1",
            "leader_cost",
            "id_sequence",
            "active_routers",
        ):
            check_uint(getattr(self, name), 8, name)
        if (self.sed_buffer_size is None) != (self.sed_datagram_count is None):
            raise InvalidArgument("SED buffer size and datagram count come as a pair")
        if self.sed_buffer_size is not None and self.sed_datagram_count is not None:
            check_uint(self.sed_buffer_size, 16, "SED buffer size")
            check_uint(self.sed_datagram_count, 8, "SED datagram count")

    def value_bytes(self) -> bytes:
        out = bytes(
            (
                (self.parent_priority & 0x03) << 6,
                self.link_quality_3,
                self.link_quality_2,
                self.link_quality_1,
                self.leader_cost,
                self.id_sequence,
                self.active_routers,
            )
        )
        if self.sed_buffer_size is not None and self.sed_datagram_count is not None:
            out += self.sed_buffer_size.to_bytes(2, "big") + bytes((self.sed_datagram_count,))
        return out

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        if len(value) != 7 and len(value) < 10:
            raise ParseError(f"Connectivity: {len(value)} bytes, needs 7 or 10")
        pp = value[0] >> 6
        sed = len(value) >= 10
        return cls(
            parent_priority=pp - 4 if pp >= 2 else pp,
            link_quality_3=value[1],
            link_quality_2=value[2],
            link_quality_1=value[3],
            leader_cost=value[4],
            id_sequence=value[5],
            active_routers=value[6],
            sed_buffer_size=(value[7] << 8) | value[8] if sed else None,
            sed_datagram_count=value[9] if sed else None,
        )


class LinkMarginTlv(U8Tlv, MleTlv):
    __slots__ = ()
    TYPE = MleTlvType.LINK_MARGIN


class StatusTlv(U8Tlv, MleTlv):
    __slots__ = ()
    TYPE = MleTlvType.STATUS


class VersionTlv(U16Tlv, MleTlv):
    """Thread version (2 = 1.1, 3 = 1.2, 4 = 1.3, 5 = 1.4)."""

    __slots__ = ()
    TYPE = MleTlvType.VERSION


@dataclass(frozen=True, slots=True)
class AddressRegistrationEntry:
    """An uncompressed address (16 bytes, ``context_id`` None) or a context ID + 8-byte IID."""

    address: bytes
    context_id: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", bytes(self.address))
        if self.context_id is None:
            if len(self.address) != 16:
                raise InvalidArgument("an uncompressed entry holds a 16-byte address")
        else:
            check_uint(self.context_id, 4, "context ID")
            if len(self.address) != 8:
                raise InvalidArgument("a compressed entry holds an 8-byte IID")

    def to_bytes(self) -> bytes:
        if self.context_id is None:
            return b"\x00" + self.address
        return bytes((0x80 | self.context_id,)) + self.address


@dataclass(frozen=True, slots=True)
class AddressRegistrationTlv(MleTlv):
    TYPE = MleTlvType.ADDRESS_REGISTRATION
    entries: tuple[AddressRegistrationEntry, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))

    def value_bytes(self) -> bytes:
        return b"".join(e.to_bytes() for e in self.entries)

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        entries = []
        pos = 0
        while pos < len(value):
            control = value[pos]
            size = 8 if control & 0x80 else 16
            if pos + 1 + size > len(value):
                raise ParseError("AddressRegistration: entry truncated")
            addr = value[pos + 1 : pos + 1 + size]
            cid = control & 0x0F if control & 0x80 else None
            entries.append(AddressRegistrationEntry(addr, cid))
            pos += 1 + size
        return cls(tuple(entries))


class ChannelTlv(ChannelValueTlv, MleTlv):
    __slots__ = ()
    TYPE = MleTlvType.CHANNEL


class PanIdTlv(U16Tlv, MleTlv):
    __slots__ = ()
    TYPE = MleTlvType.PAN_ID


class ActiveTimestampTlv(TimestampValueTlv, MleTlv):
    __slots__ = ()
    TYPE = MleTlvType.ACTIVE_TIMESTAMP


class PendingTimestampTlv(TimestampValueTlv, MleTlv):
    __slots__ = ()
    TYPE = MleTlvType.PENDING_TIMESTAMP


class ActiveDatasetTlv(BytesTlv, MleTlv):
    """Active Operational Dataset TLVs, raw (decode with ``ActiveDataset.from_bytes``)."""

    __slots__ = ()
    TYPE = MleTlvType.ACTIVE_DATASET

    def __repr__(self) -> str:  # holds the network key
        return f"ActiveDatasetTlv(len={len(self.value)})"


class PendingDatasetTlv(BytesTlv, MleTlv):
    """Pending Operational Dataset TLVs, raw (decode with ``PendingDataset.from_bytes``)."""

    __slots__ = ()
    TYPE = MleTlvType.PENDING_DATASET

    def __repr__(self) -> str:  # holds the network key
        return f"PendingDatasetTlv(len={len(self.value)})"


@dataclass(frozen=True, slots=True)
class DiscoveryTlv(MleTlv):
    """Thread Discovery TLV: a list of MeshCoP sub-TLVs (fact sheet §7)."""

    TYPE = MleTlvType.DISCOVERY
    tlvs: tuple[MeshcopTlv | Tlv, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tlvs", tuple(self.tlvs))

    def value_bytes(self) -> bytes:
        return encode_meshcop_tlvs(self.tlvs)

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(decode_meshcop_tlvs(value))


class SupervisionIntervalTlv(U16Tlv, MleTlv):
    __slots__ = ()
    TYPE = MleTlvType.SUPERVISION_INTERVAL


MLE_TLV_CLASSES: dict[int, type[TypedTlv]] = typed_registry(
    SourceAddressTlv,
    ModeTlv,
    TimeoutTlv,
    ChallengeTlv,
    ResponseTlv,
    LinkFrameCounterTlv,
    MleFrameCounterTlv,
    Route64Tlv,
    Address16Tlv,
    LeaderDataTlv,
    NetworkDataTlv,
    TlvRequestTlv,
    ScanMaskTlv,
    ConnectivityTlv,
    LinkMarginTlv,
    StatusTlv,
    VersionTlv,
    AddressRegistrationTlv,
    ChannelTlv,
    PanIdTlv,
    ActiveTimestampTlv,
    PendingTimestampTlv,
    ActiveDatasetTlv,
    PendingDatasetTlv,
    DiscoveryTlv,
    SupervisionIntervalTlv,
)
"""Typed MLE TLVs by type; the rest (link quality, CSL, link metrics, time sync) stay raw."""


def decode_mle_tlvs(data: bytes | bytearray | memoryview) -> tuple[MleTlv | Tlv, ...]:
    return decode_typed(data, MLE_TLV_CLASSES)  # type: ignore[return-value]


def encode_mle_tlvs(items: Iterable[MleTlv | Tlv]) -> bytes:
    return encode_items(items)


# --- messages ---------------------------------------------------------------------------------

M = TypeVar("M", bound=TypedTlv)


@dataclass(frozen=True, slots=True)
class MleMessage:
    """The plaintext of an MLE message: a command and its TLVs (order kept)."""

    command: int
    tlvs: tuple[MleTlv | Tlv, ...] = ()

    def __post_init__(self) -> None:
        check_uint(self.command, 8, "MLE command")
        object.__setattr__(self, "tlvs", tuple(self.tlvs))

    def get(self, cls: type[M]) -> M | None:
        """The first TLV of class ``cls`` or None."""
        return first_of(self.tlvs, cls)

    def payload(self) -> bytes:
        """Command byte followed by the TLVs (what suite 0 encrypts)."""
        return bytes((self.command,)) + encode_mle_tlvs(self.tlvs)

    @classmethod
    def from_payload(cls, data: bytes | bytearray | memoryview) -> MleMessage:
        buf = bytes(data)
        if not buf:
            raise ParseError("MLE message without a command")
        return cls(buf[0], decode_mle_tlvs(buf[1:]))

    def to_unsecured_bytes(self) -> bytes:
        """Security suite 255 (Discovery Request/Response only, in OpenThread)."""
        return b"\xff" + self.payload()


def mle_key_index(key_sequence: int) -> int:
    """Key index carried with a key sequence: ``(seq & 0x7F) + 1``."""
    return (key_sequence & 0x7F) + 1


@dataclass(frozen=True, slots=True)
class AuxSecurityHeader:
    """The MLE auxiliary security header (key ID mode 2)."""

    frame_counter: int
    key_sequence: int
    key_index: int | None = None
    security_control: int = SECURITY_CONTROL_MLE

    def __post_init__(self) -> None:
        check_uint(self.frame_counter, 32, "frame counter")
        check_uint(self.key_sequence, 32, "key sequence")
        if self.key_index is None:
            object.__setattr__(self, "key_index", mle_key_index(self.key_sequence))
        check_uint(self.key_index, 8, "key index")  # type: ignore[arg-type]
        check_uint(self.security_control, 8, "security control")

    def to_bytes(self) -> bytes:
        return (
            bytes((self.security_control,))
            + self.frame_counter.to_bytes(4, "little")
            + self.key_sequence.to_bytes(4, "big")
            + bytes((self.key_index or 0,))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> AuxSecurityHeader:
        need(data, AUX_HEADER_LENGTH, "MLE aux security header")
        if data[0] != SECURITY_CONTROL_MLE:
            raise ParseError(
                f"MLE security control 0x{data[0]:02x} is not key-id-mode-2/level-5 (0x15)"
            )
        return cls(
            int.from_bytes(data[1:5], "little"),
            int.from_bytes(data[5:9], "big"),
            data[9],
            data[0],
        )


AddressLike = ipaddress.IPv6Address | bytes | str


def _addr(a: AddressLike) -> bytes:
    if isinstance(a, ipaddress.IPv6Address):
        return a.packed
    if isinstance(a, bytes):
        if len(a) != 16:
            raise InvalidArgument("an IPv6 address is 16 bytes")
        return a
    try:
        return ipaddress.IPv6Address(a).packed
    except ValueError as exc:
        raise InvalidArgument("not an IPv6 address") from exc


def _ccm(mle_key: bytes) -> AESCCM:
    if len(mle_key) != 16:
        raise InvalidArgument("an MLE key is 16 bytes")
    return AESCCM(bytes(mle_key), tag_length=MIC_LENGTH)


def mle_nonce(source: AddressLike, frame_counter: int) -> bytes:
    """CCM nonce: sender extended address (IID with U/L flipped) | counter (BE) | level 5."""
    src = _addr(source)
    ext = bytes((src[8] ^ 0x02,)) + src[9:16]
    return ext + frame_counter.to_bytes(4, "big") + bytes((SECURITY_LEVEL_ENC_MIC_32,))


@dataclass(frozen=True, slots=True)
class SecuredMleFrame:
    """A parsed suite-0 MLE frame, still encrypted."""

    aux: AuxSecurityHeader
    ciphertext: bytes
    mic: bytes

    def decrypt(self, mle_key: bytes, source: AddressLike, destination: AddressLike) -> MleMessage:
        """Check the MIC and decode the plaintext. ``mle_key`` must be the key of
        ``aux.key_sequence``. Raises :class:`CryptoError` on a bad MIC, :class:`ParseError` on
        malformed plaintext."""
        aad = _addr(source) + _addr(destination) + self.aux.to_bytes()
        try:
            plain = _ccm(mle_key).decrypt(
                mle_nonce(source, self.aux.frame_counter), self.ciphertext + self.mic, aad
            )
        except InvalidTag as exc:
            raise CryptoError("MLE message integrity check failed") from exc
        return MleMessage.from_payload(plain)


def encode_secured(
    message: MleMessage,
    *,
    mle_key: bytes,
    key_sequence: int,
    frame_counter: int,
    source: AddressLike,
    destination: AddressLike,
) -> bytes:
    """A suite-0 MLE frame. ``source``/``destination`` are the IPv6 addresses of the datagram
    (the sender's link-local address gives the nonce)."""
    aux = AuxSecurityHeader(frame_counter, key_sequence)
    header = aux.to_bytes()
    aad = _addr(source) + _addr(destination) + header
    sealed = _ccm(mle_key).encrypt(mle_nonce(source, frame_counter), message.payload(), aad)
    return b"\x00" + header + sealed


def parse_mle(data: bytes | bytearray | memoryview) -> MleMessage | SecuredMleFrame:
    """Parse an MLE UDP payload: a plaintext :class:`MleMessage` for suite 255, a
    :class:`SecuredMleFrame` for suite 0. Raises :class:`ParseError` only."""
    buf = bytes(data)
    if not buf:
        raise ParseError("empty MLE message")
    suite = buf[0]
    if suite == SecuritySuite.UNSECURED:
        return MleMessage.from_payload(buf[1:])
    if suite != SecuritySuite.SECURED:
        raise ParseError(f"unknown MLE security suite {suite}")
    if len(buf) < 1 + AUX_HEADER_LENGTH + 1 + MIC_LENGTH:
        raise ParseError("secured MLE message too short")
    aux = AuxSecurityHeader.from_bytes(buf[1 : 1 + AUX_HEADER_LENGTH])
    return SecuredMleFrame(aux, buf[1 + AUX_HEADER_LENGTH : -MIC_LENGTH], buf[-MIC_LENGTH:])


# --- discovery --------------------------------------------------------------------------------


def discovery_request(
    *,
    version: int = THREAD_VERSION_1_4,
    joiner: bool = True,
    ext_pan_id: bytes | None = None,
    joiner_advertisement: JoinerAdvertisementTlv | None = None,
) -> MleMessage:
    """A Discovery Request (fact sheet §7); send it with :meth:`MleMessage.to_unsecured_bytes`."""
    sub: list[MeshcopTlv | Tlv] = [DiscoveryRequestTlv(version, joiner)]
    if ext_pan_id is not None:
        sub.append(ExtendedPanIdTlv(ext_pan_id))
    if joiner_advertisement is not None:
        sub.append(joiner_advertisement)
    return MleMessage(MleCommand.DISCOVERY_REQUEST, (DiscoveryTlv(tuple(sub)),))


def discovery_response(
    *,
    ext_pan_id: bytes,
    network_name: str,
    joiner_udp_port: int,
    steering_data: bytes | None = None,
    version: int = THREAD_VERSION_1_4,
    native_commissioner: bool = False,
    ccm: bool = False,
    commissioner_udp_port: int | None = None,
    domain_name: str | None = None,
) -> MleMessage:
    """A Discovery Response with OpenThread's sub-TLV order (fact sheet §7)."""
    sub: list[MeshcopTlv | Tlv] = []
    if commissioner_udp_port is not None:
        sub.append(CommissionerUdpPortTlv(commissioner_udp_port))
    sub.append(DiscoveryResponseTlv(version, native_commissioner, ccm))
    sub.append(ExtendedPanIdTlv(ext_pan_id))
    sub.append(NetworkNameTlv(network_name))
    if steering_data is not None:
        sub.append(SteeringDataTlv(steering_data))
    sub.append(JoinerUdpPortTlv(joiner_udp_port))
    if domain_name is not None:
        sub.append(ThreadDomainNameTlv(domain_name))
    return MleMessage(MleCommand.DISCOVERY_RESPONSE, (DiscoveryTlv(tuple(sub)),))


@dataclass(frozen=True, slots=True)
class DiscoveryRequestInfo:
    version: int
    joiner: bool
    ext_pan_id: bytes | None = None
    joiner_advertisement: JoinerAdvertisementTlv | None = None


@dataclass(frozen=True, slots=True)
class DiscoveryResponseInfo:
    version: int
    native_commissioner: bool
    ccm: bool
    ext_pan_id: bytes
    network_name: str
    steering_data: bytes | None
    joiner_udp_port: int | None
    commissioner_udp_port: int | None = None
    domain_name: str | None = None


def _discovery(message: MleMessage, command: int) -> DiscoveryTlv:
    if message.command != command:
        raise ParseError(f"MLE command {message.command} is not {MleCommand(command).name}")
    disc = message.get(DiscoveryTlv)
    if disc is None:
        raise ParseError("MLE discovery message without a Discovery TLV")
    return disc


def parse_discovery_request(message: MleMessage) -> DiscoveryRequestInfo:
    disc = _discovery(message, MleCommand.DISCOVERY_REQUEST)
    req = first_of(disc.tlvs, DiscoveryRequestTlv)
    if req is None:
        raise ParseError("Discovery TLV without a Discovery Request sub-TLV")
    xp = first_of(disc.tlvs, ExtendedPanIdTlv)
    return DiscoveryRequestInfo(
        req.version,
        req.joiner,
        xp.value if xp is not None else None,
        first_of(disc.tlvs, JoinerAdvertisementTlv),
    )


def parse_discovery_response(message: MleMessage) -> DiscoveryResponseInfo:
    """The fields a joiner uses. A missing Discovery Response, Extended PAN ID or Network Name
    sub-TLV is a :class:`ParseError`; steering data and joiner port may be absent (OpenThread's
    joiner then ignores the response)."""
    disc = _discovery(message, MleCommand.DISCOVERY_RESPONSE)
    rsp = first_of(disc.tlvs, DiscoveryResponseTlv)
    xp = first_of(disc.tlvs, ExtendedPanIdTlv)
    name = first_of(disc.tlvs, NetworkNameTlv)
    if rsp is None or xp is None or name is None:
        raise ParseError("Discovery Response lacks a mandatory sub-TLV")
    sd = first_of(disc.tlvs, SteeringDataTlv)
    jp = first_of(disc.tlvs, JoinerUdpPortTlv)
    cp = first_of(disc.tlvs, CommissionerUdpPortTlv)
    dn = first_of(disc.tlvs, ThreadDomainNameTlv)
    return DiscoveryResponseInfo(
        rsp.version,
        rsp.native_commissioner,
        rsp.ccm,
        xp.value,
        name.value,
        sd.value if sd is not None else None,
        jp.value if jp is not None else None,
        cp.value if cp is not None else None,
        dn.value if dn is not None else None,
    )
