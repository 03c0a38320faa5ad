"""MeshCoP TLVs: types, typed value codecs, and whole-payload decode/encode.

Types and value layouts follow OpenThread (``include/openthread/dataset.h``,
``src/core/meshcop/meshcop_tlvs.hpp``, ``src/core/meshcop/timestamp.hpp``,
``src/core/thread/key_manager.hpp``) and ot-commissioner (``src/library/tlv.hpp``) for the CCM
types; see the fact sheet ``reference/thread-meshcop.md`` §3. Multi-byte integers are big-endian.

Decoding rules (``docs/wire-thread.md``):

* :func:`decode_meshcop_tlvs` gives a typed object for every type this module knows and a raw
  :class:`~gateway.wire.tlv.Tlv` for every other one, in wire order (pass-through).
* Fixed-size values may be *longer* than their layout (the extra bytes are ignored, as
  OpenThread's ``Tlv::Read`` does) but never shorter. Strings longer than OpenThread's limits,
  or not UTF-8, are refused. Any malformed value raises :class:`~gateway.errors.ParseError`.
* Keys (network key, PSKc, KEK) never appear in a repr.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Self

from gateway.errors import InvalidArgument, ParseError
from gateway.wire.tlv import (
    BytesTlv,
    ChannelValueTlv,
    FixedBytesTlv,
    Ipv6AddressValueTlv,
    SecretTlv,
    StringTlv,
    Tlv,
    TypedTlv,
    U8Tlv,
    U16Tlv,
    U32Tlv,
    check_uint,
    decode_typed,
    encode_items,
    need,
    typed_registry,
)

__all__ = [
    "MESHCOP_TLV_CLASSES",
    "ActiveTimestampTlv",
    "AdmitterStateTlv",
    "AeSteeringDataTlv",
    "AeUdpPortTlv",
    "BorderAgentLocatorTlv",
    "ChannelMask",
    "ChannelMaskEntry",
    "ChannelMaskTlv",
    "ChannelTlv",
    "CommissionerIdTlv",
    "CommissionerPenSignatureTlv",
    "CommissionerSessionIdTlv",
    "CommissionerSignatureTlv",
    "CommissionerTokenTlv",
    "CommissionerUdpPortTlv",
    "CountTlv",
    "DelayTimerTlv",
    "DiscoveryRequestTlv",
    "DiscoveryResponseTlv",
    "DomainPrefixTlv",
    "DurationTlv",
    "EnergyListTlv",
    "EnrollerIdTlv",
    "EnrollerModeTlv",
    "ExtendedPanIdTlv",
    "GetTlv",
    "Ipv6AddressTlv",
    "JoinerAdvertisementTlv",
    "JoinerDtlsEncapsulationTlv",
    "JoinerIidTlv",
    "JoinerRouterKekTlv",
    "JoinerRouterLocatorTlv",
    "JoinerUdpPortTlv",
    "MeshLocalPrefixTlv",
    "MeshcopTlv",
    "MeshcopTlvType",
    "NetworkKeySequenceTlv",
    "NetworkKeyTlv",
    "NetworkNameTlv",
    "NmkpSteeringDataTlv",
    "NmkpUdpPortTlv",
    "PanIdTlv",
    "PendingTimestampTlv",
    "PeriodTlv",
    "ProvisioningUrlTlv",
    "PskcTlv",
    "RegistrarHostnameTlv",
    "RegistrarIpv6AddressTlv",
    "ScanDurationTlv",
    "SecurityPolicy",
    "SecurityPolicyTlv",
    "State",
    "StateTlv",
    "SteeringDataTlv",
    "ThreadDomainNameTlv",
    "Timestamp",
    "TimestampValueTlv",
    "TriHostnameTlv",
    "UdpEncapsulationTlv",
    "VendorDataTlv",
    "VendorModelTlv",
    "VendorNameTlv",
    "VendorStackVersionTlv",
    "VendorSwVersionTlv",
    "WakeupChannelTlv",
    "decode_meshcop_tlvs",
    "encode_meshcop_tlvs",
]


class MeshcopTlvType(IntEnum):
    """MeshCoP TLV type numbers (fact sheet §3.2)."""

    CHANNEL = 0
    PAN_ID = 1
    EXTENDED_PAN_ID = 2
    NETWORK_NAME = 3
    PSKC = 4
    NETWORK_KEY = 5
    NETWORK_KEY_SEQUENCE = 6
    MESH_LOCAL_PREFIX = 7
    STEERING_DATA = 8
    BORDER_AGENT_LOCATOR = 9
    COMMISSIONER_ID = 10
    COMMISSIONER_SESSION_ID = 11
    SECURITY_POLICY = 12
    GET = 13
    ACTIVE_TIMESTAMP = 14
    COMMISSIONER_UDP_PORT = 15
    STATE = 16
    JOINER_DTLS_ENCAPSULATION = 17
    JOINER_UDP_PORT = 18
    JOINER_IID = 19
    JOINER_ROUTER_LOCATOR = 20
    JOINER_ROUTER_KEK = 21
    DURATION = 23
    PROVISIONING_URL = 32
    VENDOR_NAME = 33
    VENDOR_MODEL = 34
    VENDOR_SW_VERSION = 35
    VENDOR_DATA = 36
    VENDOR_STACK_VERSION = 37
    UDP_ENCAPSULATION = 48
    IPV6_ADDRESS = 49
    PENDING_TIMESTAMP = 51
    DELAY_TIMER = 52
    CHANNEL_MASK = 53
    COUNT = 54
    PERIOD = 55
    SCAN_DURATION = 56
    ENERGY_LIST = 57
    SECURE_DISSEMINATION = 58
    THREAD_DOMAIN_NAME = 59
    DOMAIN_PREFIX = 60
    AE_STEERING_DATA = 61
    NMKP_STEERING_DATA = 62
    COMMISSIONER_TOKEN = 63
    COMMISSIONER_SIGNATURE = 64
    AE_UDP_PORT = 65
    NMKP_UDP_PORT = 66
    TRI_HOSTNAME = 67
    REGISTRAR_IPV6_ADDRESS = 68
    REGISTRAR_HOSTNAME = 69
    COMMISSIONER_PEN_SIGNATURE = 70
    WAKEUP_CHANNEL = 74
    ADMITTER_STATE = 90
    ENROLLER_ID = 91
    ENROLLER_MODE = 92
    DISCOVERY_REQUEST = 128
    DISCOVERY_RESPONSE = 129
    JOINER_ADVERTISEMENT = 241


class MeshcopTlv(TypedTlv):
    """Base of every typed MeshCoP TLV."""

    __slots__ = ()


# --- value objects ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Timestamp:
    """MeshCoP timestamp (fact sheet §3.5): 48-bit seconds, 15-bit ticks, authoritative bit.

    Ordering follows OpenThread's ``Timestamp::Compare`` (seconds, then ticks, then the bit).
    """

    seconds: int
    ticks: int = 0
    authoritative: bool = False

    SIZE: ClassVar[int] = 8

    def __post_init__(self) -> None:
        check_uint(self.seconds, 48, "timestamp seconds")
        check_uint(self.ticks, 15, "timestamp ticks")

    def to_bytes(self) -> bytes:
        low = (self.ticks << 1) | (1 if self.authoritative else 0)
        return self.seconds.to_bytes(6, "big") + low.to_bytes(2, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Timestamp:
        need(data, 8, "Timestamp")
        low = (data[6] << 8) | data[7]
        return cls(int.from_bytes(data[:6], "big"), low >> 1, bool(low & 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityPolicy:
    """Security Policy TLV value (fact sheet §3.4; OpenThread ``key_manager.hpp``).

    The booleans mean "enabled" whatever the wire polarity (the CCM, AE, NKP and non-CCM-routers
    bits are inverted on the wire). ``flags_length`` 1 is the Thread 1.1 layout (byte 2 absent:
    decoding fills OpenThread's defaults for its fields), 2 the Thread 1.2+ layout. ``reserved``
    holds byte 2's three reserved bits (OpenThread writes 1s) and ``extra`` any flag bytes beyond
    the second, so every value re-encodes byte-identically. Defaults are OpenThread's
    (``SetToDefault``): value bytes ``02 a0 f7 f8``.
    """

    rotation_hours: int = 672
    obtain_network_key: bool = True
    native_commissioning: bool = True
    routers: bool = True
    external_commissioning: bool = True
    beacons: bool = False
    commercial_commissioning: bool = False
    autonomous_enrollment: bool = False
    network_key_provisioning: bool = False
    toble_link: bool = True
    non_ccm_routers: bool = False
    version_threshold: int = 0
    reserved: int = 0b111
    flags_length: int = 2
    extra: bytes = b""

    def __post_init__(self) -> None:
        check_uint(self.rotation_hours, 16, "rotation time")
        check_uint(self.version_threshold, 3, "version threshold")
        check_uint(self.reserved, 3, "reserved bits")
        if self.flags_length not in (1, 2):
            raise InvalidArgument("flags_length must be 1 (Thread 1.1) or 2 (Thread 1.2+)")
        if self.extra and self.flags_length != 2:
            raise InvalidArgument("extra flag bytes need flags_length 2")
        object.__setattr__(self, "extra", bytes(self.extra))

    def to_bytes(self) -> bytes:
        b1 = (
            (0x80 if self.obtain_network_key else 0)
            | (0x40 if self.native_commissioning else 0)
            | (0x20 if self.routers else 0)
            | (0x10 if self.external_commissioning else 0)
            | (0x08 if self.beacons else 0)
            | (0 if self.commercial_commissioning else 0x04)
            | (0 if self.autonomous_enrollment else 0x02)
            | (0 if self.network_key_provisioning else 0x01)
        )
        out = self.rotation_hours.to_bytes(2, "big") + bytes((b1,))
        if self.flags_length == 2:
            b2 = (
                (0x80 if self.toble_link else 0)
                | (0 if self.non_ccm_routers else 0x40)
                | (self.reserved << 3)
                | self.version_threshold
            )
            out += bytes((b2,)) + self.extra
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> SecurityPolicy:
        need(data, 3, "SecurityPolicy")
        b1 = data[2]
        two = len(data) > 3
        b2 = data[3] if two else 0xF8  # Thread 1.1 layout: OpenThread's defaults for byte 2
        return cls(
            rotation_hours=(data[0] << 8) | data[1],
            obtain_network_key=bool(b1 & 0x80),
            native_commissioning=bool(b1 & 0x40),
            routers=bool(b1 & 0x20),
            external_commissioning=bool(b1 & 0x10),
            beacons=bool(b1 & 0x08),
            commercial_commissioning=not b1 & 0x04,
            autonomous_enrollment=not b1 & 0x02,
            network_key_provisioning=not b1 & 0x01,
            toble_link=bool(b2 & 0x80),
            non_ccm_routers=not b2 & 0x40,
            reserved=(b2 >> 3) & 0x07,
            version_threshold=b2 & 0x07,
            flags_length=2 if two else 1,
            extra=bytes(data[4:]),
        )

    def describe(self) -> str:
        """The OpenThread CLI rendering, e.g. ``"672 onrc 0"`` (``cli_dataset.cpp``)."""
        letters = "".join(
            c
            for c, on in (
                ("o", self.obtain_network_key),
                ("n", self.native_commissioning),
                ("r", self.routers),
                ("c", self.external_commissioning),
                ("C", self.commercial_commissioning),
                ("e", self.autonomous_enrollment),
                ("p", self.network_key_provisioning),
                ("R", self.non_ccm_routers),
            )
            if on
        )
        return f"{self.rotation_hours} {letters} {self.version_threshold}"


@dataclass(frozen=True, slots=True)
class ChannelMaskEntry:
    """One Channel Mask entry: page and the mask bytes as on the wire.

    The wire mask is bit-reversed (fact sheet §3.7): channel 0 is the MSB of the first byte.
    """

    page: int
    mask: bytes

    def __post_init__(self) -> None:
        check_uint(self.page, 8, "channel page")
        if len(self.mask) > 0xFF:
            raise InvalidArgument("a channel mask entry holds at most 255 bytes")
        object.__setattr__(self, "mask", bytes(self.mask))

    @classmethod
    def from_channels(cls, channels: Iterable[int], page: int = 0, length: int = 4) -> Self:
        buf = bytearray(length)
        for c in channels:
            if not 0 <= c < 8 * length:
                raise InvalidArgument(f"channel {c} does not fit a {length}-byte mask")
            buf[c // 8] |= 0x80 >> (c % 8)
        return cls(page, bytes(buf))

    @property
    def channels(self) -> frozenset[int]:
        return frozenset(
            8 * i + bit for i, b in enumerate(self.mask) for bit in range(8) if b & (0x80 >> bit)
        )

    @property
    def ot_mask(self) -> int:
        """OpenThread's host-order mask (bit ``c`` set for channel ``c``; 11–26 = 0x07fff800)."""
        return sum(1 << c for c in self.channels)


@dataclass(frozen=True, slots=True)
class ChannelMask:
    """Channel Mask TLV value: a sequence of (page, length, mask) entries."""

    entries: tuple[ChannelMaskEntry, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))

    @classmethod
    def from_channels(cls, channels: Iterable[int], page: int = 0) -> ChannelMask:
        return cls((ChannelMaskEntry.from_channels(channels, page),))

    @classmethod
    def from_ot_mask(cls, mask: int, page: int = 0) -> ChannelMask:
        """From OpenThread's host-order 32-bit mask (as printed by ``dataset channelmask``)."""
        check_uint(mask, 32, "channel mask")
        return cls.from_channels((c for c in range(32) if mask >> c & 1), page)

    def channels(self, page: int = 0) -> frozenset[int]:
        out: frozenset[int] = frozenset()
        for e in self.entries:
            if e.page == page:
                out |= e.channels
        return out

    def to_bytes(self) -> bytes:
        return b"".join(bytes((e.page, len(e.mask))) + e.mask for e in self.entries)

    @classmethod
    def from_bytes(cls, data: bytes) -> ChannelMask:
        entries = []
        pos = 0
        while pos < len(data):
            if len(data) - pos < 2:
                raise ParseError("ChannelMask: entry header truncated")
            page, length = data[pos], data[pos + 1]
            if pos + 2 + length > len(data):
                raise ParseError("ChannelMask: entry mask truncated")
            entries.append(ChannelMaskEntry(page, data[pos + 2 : pos + 2 + length]))
            pos += 2 + length
        return cls(tuple(entries))


class State(IntEnum):
    """State TLV values (signed byte on the wire)."""

    REJECT = -1
    PENDING = 0
    ACCEPT = 1


# --- the TLVs ---------------------------------------------------------------------------------


class ChannelTlv(ChannelValueTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.CHANNEL


class PanIdTlv(U16Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.PAN_ID


class ExtendedPanIdTlv(FixedBytesTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.EXTENDED_PAN_ID
    SIZE = 8


class NetworkNameTlv(StringTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.NETWORK_NAME
    MAX_LENGTH = 16


class PskcTlv(SecretTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.PSKC


class NetworkKeyTlv(SecretTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.NETWORK_KEY


class NetworkKeySequenceTlv(U32Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.NETWORK_KEY_SEQUENCE


class MeshLocalPrefixTlv(FixedBytesTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.MESH_LOCAL_PREFIX
    SIZE = 8

    @property
    def network(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network((self.value + bytes(8), 64))


class SteeringDataTlv(BytesTlv, MeshcopTlv):
    """Bloom filter of allowed joiners (1–16 bytes; fact sheet §5.4)."""

    __slots__ = ()
    TYPE = MeshcopTlvType.STEERING_DATA
    MIN_LENGTH = 1
    MAX_LENGTH = 16

    @property
    def permits_all(self) -> bool:
        return all(b == 0xFF for b in self.value)

    @property
    def is_empty(self) -> bool:
        """No joiner allowed (all zero)."""
        return not any(self.value)


class BorderAgentLocatorTlv(U16Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.BORDER_AGENT_LOCATOR


class CommissionerIdTlv(StringTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.COMMISSIONER_ID
    MAX_LENGTH = 64


class CommissionerSessionIdTlv(U16Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.COMMISSIONER_SESSION_ID


@dataclass(frozen=True, slots=True)
class SecurityPolicyTlv(MeshcopTlv):
    TYPE = MeshcopTlvType.SECURITY_POLICY
    value: SecurityPolicy = field(default_factory=SecurityPolicy)

    def value_bytes(self) -> bytes:
        return self.value.to_bytes()

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(SecurityPolicy.from_bytes(value))


@dataclass(frozen=True, slots=True)
class GetTlv(MeshcopTlv):
    """The TLV types a MGMT_*_GET asks for."""

    TYPE = MeshcopTlvType.GET
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


@dataclass(frozen=True, slots=True)
class TimestampValueTlv(TypedTlv):
    """Shape of a TLV holding a :class:`Timestamp` (MeshCoP 14/51, MLE 22/23)."""

    value: Timestamp

    def value_bytes(self) -> bytes:
        return self.value.to_bytes()

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(Timestamp.from_bytes(value))


class ActiveTimestampTlv(TimestampValueTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.ACTIVE_TIMESTAMP


class PendingTimestampTlv(TimestampValueTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.PENDING_TIMESTAMP


class CommissionerUdpPortTlv(U16Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.COMMISSIONER_UDP_PORT


@dataclass(frozen=True, slots=True)
class StateTlv(MeshcopTlv):
    """State: 1 accept, 0 pending, -1 (0xFF) reject; any signed byte is kept."""

    TYPE = MeshcopTlvType.STATE
    value: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not -128 <= self.value <= 127:
            raise InvalidArgument("state must be a signed byte")

    def value_bytes(self) -> bytes:
        return bytes((self.value & 0xFF,))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 1, cls.__name__)
        v = value[0]
        return cls(v - 256 if v > 127 else v)

    @property
    def accepted(self) -> bool:
        return self.value == State.ACCEPT


@dataclass(frozen=True, slots=True)
class JoinerDtlsEncapsulationTlv(MeshcopTlv):
    """DTLS records relayed for a joiner; written in extended form by default, like OpenThread."""

    TYPE = MeshcopTlvType.JOINER_DTLS_ENCAPSULATION
    value: bytes
    extended: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", bytes(self.value))
        if len(self.value) > 0xFFFF:
            raise InvalidArgument("encapsulated payload too long")

    @property
    def wire_extended(self) -> bool:
        return self.extended

    def value_bytes(self) -> bytes:
        return self.value

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(value)

    @classmethod
    def _from_tlv(cls, tlv: Tlv) -> Self:
        return cls(tlv.value, tlv.extended)


class JoinerUdpPortTlv(U16Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.JOINER_UDP_PORT


class JoinerIidTlv(FixedBytesTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.JOINER_IID
    SIZE = 8


class JoinerRouterLocatorTlv(U16Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.JOINER_ROUTER_LOCATOR


class JoinerRouterKekTlv(SecretTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.JOINER_ROUTER_KEK


class DurationTlv(U16Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.DURATION


class ProvisioningUrlTlv(StringTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.PROVISIONING_URL
    MAX_LENGTH = 64


class VendorNameTlv(StringTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.VENDOR_NAME
    MAX_LENGTH = 32


class VendorModelTlv(StringTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.VENDOR_MODEL
    MAX_LENGTH = 32


class VendorSwVersionTlv(StringTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.VENDOR_SW_VERSION
    MAX_LENGTH = 16


class VendorDataTlv(BytesTlv, MeshcopTlv):
    """Vendor data, kept as bytes (OpenThread treats it as a string of at most 64 bytes)."""

    __slots__ = ()
    TYPE = MeshcopTlvType.VENDOR_DATA
    MAX_LENGTH = 64


@dataclass(frozen=True, slots=True)
class VendorStackVersionTlv(MeshcopTlv):
    """OUI (3) | build (12 bits) + revision (4 bits) | minor (high nibble) + major (low nibble)."""

    TYPE = MeshcopTlvType.VENDOR_STACK_VERSION
    oui: int
    build: int = 0
    revision: int = 0
    minor: int = 0
    major: int = 0

    def __post_init__(self) -> None:
        check_uint(self.oui, 24, "OUI")
        check_uint(self.build, 12, "build")
        check_uint(self.revision, 4, "revision")
        check_uint(self.minor, 4, "minor")
        check_uint(self.major, 4, "major")

    def value_bytes(self) -> bytes:
        br = (self.build << 4) | self.revision
        return (
            self.oui.to_bytes(3, "big")
            + br.to_bytes(2, "big")
            + bytes(((self.minor << 4) | self.major,))
        )

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 6, cls.__name__)
        br = (value[3] << 8) | value[4]
        return cls(
            int.from_bytes(value[:3], "big"), br >> 4, br & 0x0F, value[5] >> 4, value[5] & 0x0F
        )


@dataclass(frozen=True, slots=True)
class UdpEncapsulationTlv(MeshcopTlv):
    """Source port (2) | destination port (2) | UDP payload; extended form by default."""

    TYPE = MeshcopTlvType.UDP_ENCAPSULATION
    source_port: int
    destination_port: int
    payload: bytes = b""
    extended: bool = True

    def __post_init__(self) -> None:
        check_uint(self.source_port, 16, "source port")
        check_uint(self.destination_port, 16, "destination port")
        object.__setattr__(self, "payload", bytes(self.payload))
        if len(self.payload) > 0xFFFF - 4:
            raise InvalidArgument("encapsulated UDP payload too long")

    @property
    def wire_extended(self) -> bool:
        return self.extended

    def value_bytes(self) -> bytes:
        return (
            self.source_port.to_bytes(2, "big")
            + self.destination_port.to_bytes(2, "big")
            + self.payload
        )

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 4, cls.__name__)
        return cls((value[0] << 8) | value[1], (value[2] << 8) | value[3], value[4:])

    @classmethod
    def _from_tlv(cls, tlv: Tlv) -> Self:
        v = cls.from_value(tlv.value)
        return cls(v.source_port, v.destination_port, v.payload, tlv.extended)


class Ipv6AddressTlv(Ipv6AddressValueTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.IPV6_ADDRESS


class DelayTimerTlv(U32Tlv, MeshcopTlv):
    """Milliseconds until a pending dataset becomes active."""

    __slots__ = ()
    TYPE = MeshcopTlvType.DELAY_TIMER


@dataclass(frozen=True, slots=True)
class ChannelMaskTlv(MeshcopTlv):
    TYPE = MeshcopTlvType.CHANNEL_MASK
    value: ChannelMask

    def value_bytes(self) -> bytes:
        return self.value.to_bytes()

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(ChannelMask.from_bytes(value))


class CountTlv(U8Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.COUNT


class PeriodTlv(U16Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.PERIOD


class ScanDurationTlv(U16Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.SCAN_DURATION


@dataclass(frozen=True, slots=True)
class EnergyListTlv(MeshcopTlv):
    """Energy measurements in dBm, one signed byte each."""

    TYPE = MeshcopTlvType.ENERGY_LIST
    value: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", tuple(self.value))
        for v in self.value:
            if isinstance(v, bool) or not -128 <= v <= 127:
                raise InvalidArgument("energy values are signed bytes")

    def value_bytes(self) -> bytes:
        return bytes(v & 0xFF for v in self.value)

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(tuple(b - 256 if b > 127 else b for b in value))


class ThreadDomainNameTlv(StringTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.THREAD_DOMAIN_NAME
    MAX_LENGTH = 16


class DomainPrefixTlv(BytesTlv, MeshcopTlv):
    """CCM Domain Prefix, kept raw (layout not needed here)."""

    __slots__ = ()
    TYPE = MeshcopTlvType.DOMAIN_PREFIX


class AeSteeringDataTlv(BytesTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.AE_STEERING_DATA
    MAX_LENGTH = 16


class NmkpSteeringDataTlv(BytesTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.NMKP_STEERING_DATA
    MAX_LENGTH = 16


class CommissionerTokenTlv(BytesTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.COMMISSIONER_TOKEN


class CommissionerSignatureTlv(BytesTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.COMMISSIONER_SIGNATURE


class AeUdpPortTlv(U16Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.AE_UDP_PORT


class NmkpUdpPortTlv(U16Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.NMKP_UDP_PORT


class TriHostnameTlv(StringTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.TRI_HOSTNAME


class RegistrarIpv6AddressTlv(Ipv6AddressValueTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.REGISTRAR_IPV6_ADDRESS


class RegistrarHostnameTlv(StringTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.REGISTRAR_HOSTNAME


class CommissionerPenSignatureTlv(BytesTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.COMMISSIONER_PEN_SIGNATURE


class WakeupChannelTlv(ChannelValueTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.WAKEUP_CHANNEL


class AdmitterStateTlv(U8Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.ADMITTER_STATE


class EnrollerIdTlv(StringTlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.ENROLLER_ID
    MAX_LENGTH = 64


class EnrollerModeTlv(U8Tlv, MeshcopTlv):
    __slots__ = ()
    TYPE = MeshcopTlvType.ENROLLER_MODE


@dataclass(frozen=True, slots=True)
class DiscoveryRequestTlv(MeshcopTlv):
    """Discovery Request (128): version in the high nibble of byte 0, joiner flag 0x08 (§7)."""

    TYPE = MeshcopTlvType.DISCOVERY_REQUEST
    version: int
    joiner: bool = False

    def __post_init__(self) -> None:
        check_uint(self.version, 4, "Thread version")

    def value_bytes(self) -> bytes:
        return bytes(((self.version << 4) | (0x08 if self.joiner else 0), 0))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 2, cls.__name__)
        return cls(value[0] >> 4, bool(value[0] & 0x08))


@dataclass(frozen=True, slots=True)
class DiscoveryResponseTlv(MeshcopTlv):
    """Discovery Response (129): version nibble, native-commissioner 0x08, CCM 0x04 (§7)."""

    TYPE = MeshcopTlvType.DISCOVERY_RESPONSE
    version: int
    native_commissioner: bool = False
    ccm: bool = False

    def __post_init__(self) -> None:
        check_uint(self.version, 4, "Thread version")

    def value_bytes(self) -> bytes:
        b0 = (
            (self.version << 4)
            | (0x08 if self.native_commissioner else 0)
            | (0x04 if self.ccm else 0)
        )
        return bytes((b0, 0))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 2, cls.__name__)
        return cls(value[0] >> 4, bool(value[0] & 0x08), bool(value[0] & 0x04))


@dataclass(frozen=True, slots=True)
class JoinerAdvertisementTlv(MeshcopTlv):
    """OUI (3) | advertisement data (1–64)."""

    TYPE = MeshcopTlvType.JOINER_ADVERTISEMENT
    oui: int
    adv_data: bytes

    def __post_init__(self) -> None:
        check_uint(self.oui, 24, "OUI")
        object.__setattr__(self, "adv_data", bytes(self.adv_data))
        if not 1 <= len(self.adv_data) <= 64:
            raise InvalidArgument("advertisement data must be 1..64 bytes")

    def value_bytes(self) -> bytes:
        return self.oui.to_bytes(3, "big") + self.adv_data

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        if not 4 <= len(value) <= 67:
            raise ParseError(f"{cls.__name__}: {len(value)} bytes outside 4..67")
        return cls(int.from_bytes(value[:3], "big"), value[3:])


MESHCOP_TLV_CLASSES: dict[int, type[TypedTlv]] = typed_registry(
    ChannelTlv,
    PanIdTlv,
    ExtendedPanIdTlv,
    NetworkNameTlv,
    PskcTlv,
    NetworkKeyTlv,
    NetworkKeySequenceTlv,
    MeshLocalPrefixTlv,
    SteeringDataTlv,
    BorderAgentLocatorTlv,
    CommissionerIdTlv,
    CommissionerSessionIdTlv,
    SecurityPolicyTlv,
    GetTlv,
    ActiveTimestampTlv,
    CommissionerUdpPortTlv,
    StateTlv,
    JoinerDtlsEncapsulationTlv,
    JoinerUdpPortTlv,
    JoinerIidTlv,
    JoinerRouterLocatorTlv,
    JoinerRouterKekTlv,
    DurationTlv,
    ProvisioningUrlTlv,
    VendorNameTlv,
    VendorModelTlv,
    VendorSwVersionTlv,
    VendorDataTlv,
    VendorStackVersionTlv,
    UdpEncapsulationTlv,
    Ipv6AddressTlv,
    PendingTimestampTlv,
    DelayTimerTlv,
    ChannelMaskTlv,
    CountTlv,
    PeriodTlv,
    ScanDurationTlv,
    EnergyListTlv,
    ThreadDomainNameTlv,
    DomainPrefixTlv,
    AeSteeringDataTlv,
    NmkpSteeringDataTlv,
    CommissionerTokenTlv,
    CommissionerSignatureTlv,
    AeUdpPortTlv,
    NmkpUdpPortTlv,
    TriHostnameTlv,
    RegistrarIpv6AddressTlv,
    RegistrarHostnameTlv,
    CommissionerPenSignatureTlv,
    WakeupChannelTlv,
    AdmitterStateTlv,
    EnrollerIdTlv,
    EnrollerModeTlv,
    DiscoveryRequestTlv,
    DiscoveryResponseTlv,
    JoinerAdvertisementTlv,
)
"""Every typed MeshCoP TLV class by type number (Secure Dissemination, 58, stays raw)."""


def decode_meshcop_tlvs(data: bytes | bytearray | memoryview) -> tuple[MeshcopTlv | Tlv, ...]:
    """Typed MeshCoP TLVs of a payload, unknown ones as raw :class:`Tlv`, in wire order."""
    return decode_typed(data, MESHCOP_TLV_CLASSES)  # type: ignore[return-value]


def encode_meshcop_tlvs(items: Iterable[MeshcopTlv | Tlv]) -> bytes:
    """Encode typed and raw MeshCoP TLVs in order."""
    return encode_items(items)
