"""Generic Thread TLVs (MeshCoP, MLE, network data share this framing).

Wire form (OpenThread ``src/core/common/tlvs.hpp``; fact sheet §3.1)::

    base:      type (1) | length (1, 0..254)          | value
    extended:  type (1) | 0xFF | length (2, big-endian) | value

A length byte of 0xFF always announces the extended form, whatever the real length, so values
longer than 254 bytes must use it and shorter ones may (OpenThread writes the Joiner DTLS and UDP
Encapsulation TLVs extended even when short). :class:`Tlv` remembers which form it came in so
that a decode/encode round trip is byte-identical; unknown TLVs therefore pass through unchanged
and in order.

A :class:`Tlv`'s repr shows its type and length only, never the value: a generic TLV may hold a
network key, a PSKc or a KEK.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Self, TypeVar

from gateway.errors import InvalidArgument, ParseError

__all__ = [
    "BytesTlv",
    "ChannelValueTlv",
    "FixedBytesTlv",
    "Ipv6AddressValueTlv",
    "SecretTlv",
    "StringTlv",
    "U8Tlv",
    "U16Tlv",
    "U32Tlv",
    "check_bytes",
    "check_uint",
    "decode_utf8",
    "need",
    "EXTENDED_LENGTH",
    "MAX_BASE_LENGTH",
    "MAX_EXTENDED_LENGTH",
    "Tlv",
    "TypedTlv",
    "decode_tlvs",
    "decode_typed",
    "encode_items",
    "encode_tlvs",
    "find_all",
    "find_first",
    "first_of",
    "iter_tlvs",
    "typed_registry",
]

EXTENDED_LENGTH = 0xFF
"""The length byte that announces the extended form."""
MAX_BASE_LENGTH = 254
"""The longest value a base (1-byte length) TLV can carry (``OT_NETWORK_BASE_TLV_MAX_LENGTH``)."""
MAX_EXTENDED_LENGTH = 0xFFFF


@dataclass(frozen=True, slots=True)
class Tlv:
    """One TLV as it is on the wire: its type, its raw value and whether it is in extended form.

    ``extended`` asks for the extended form even for a short value; values longer than 254 bytes
    are always written extended.
    """

    type: int
    value: bytes
    extended: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 0xFF:
            raise InvalidArgument(f"TLV type {self.type} out of range 0..255")
        raw: object = self.value
        if not isinstance(raw, bytes):
            if not isinstance(raw, bytearray | memoryview):
                raise InvalidArgument("TLV value must be bytes")
            object.__setattr__(self, "value", bytes(raw))
        if len(self.value) > MAX_EXTENDED_LENGTH:
            raise InvalidArgument(
                f"TLV value of {len(self.value)} bytes exceeds {MAX_EXTENDED_LENGTH}"
            )

    def __repr__(self) -> str:
        ext = ", extended" if self.is_extended else ""
        return f"Tlv(type={self.type}, len={len(self.value)}{ext})"

    @property
    def is_extended(self) -> bool:
        """Whether :meth:`to_bytes` writes the extended form."""
        return self.extended or len(self.value) > MAX_BASE_LENGTH

    @property
    def size(self) -> int:
        """Encoded size in bytes (header plus value)."""
        return len(self.value) + (4 if self.is_extended else 2)

    def to_bytes(self) -> bytes:
        n = len(self.value)
        if self.extended or n > MAX_BASE_LENGTH:
            return bytes((self.type, EXTENDED_LENGTH, n >> 8, n & 0xFF)) + self.value
        return bytes((self.type, n)) + self.value

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Tlv:
        """Exactly one TLV filling ``data``."""
        tlvs = decode_tlvs(data)
        if len(tlvs) != 1:
            raise ParseError(f"expected exactly one TLV, found {len(tlvs)}")
        return tlvs[0]


def iter_tlvs(data: bytes | bytearray | memoryview) -> Iterator[Tlv]:
    """Yield the TLVs of ``data`` in order; raises :class:`ParseError` on a truncated TLV."""
    buf = bytes(data)
    end = len(buf)
    pos = 0
    while pos < end:
        if end - pos < 2:
            raise ParseError(f"TLV header truncated at offset {pos}")
        tlv_type = buf[pos]
        length = buf[pos + 1]
        if length == EXTENDED_LENGTH:
            if end - pos < 4:
                raise ParseError(f"extended TLV header truncated at offset {pos}")
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            start = pos + 4
            extended = True
        else:
            start = pos + 2
            extended = False
        stop = start + length
        if stop > end:
            raise ParseError(
                f"TLV type {tlv_type} at offset {pos} claims {length} bytes, {end - start} remain"
            )
        yield Tlv(tlv_type, buf[start:stop], extended)
        pos = stop


def decode_tlvs(data: bytes | bytearray | memoryview) -> tuple[Tlv, ...]:
    """All TLVs of ``data`` in order (unknown types included)."""
    return tuple(iter_tlvs(data))


def encode_tlvs(tlvs: Iterable[Tlv]) -> bytes:
    """Concatenate the encodings of ``tlvs`` in the given order."""
    return b"".join(t.to_bytes() for t in tlvs)


def find_first(tlvs: Iterable[Tlv], tlv_type: int) -> Tlv | None:
    """The first TLV of ``tlv_type`` (OpenThread's "find by type" rule), or None."""
    for t in tlvs:
        if t.type == tlv_type:
            return t
    return None


def find_all(tlvs: Iterable[Tlv], tlv_type: int) -> tuple[Tlv, ...]:
    """Every TLV of ``tlv_type``, in order."""
    return tuple(t for t in tlvs if t.type == tlv_type)


# --- typed TLVs -------------------------------------------------------------------------------


class TypedTlv:
    """Base of the typed TLV classes of one namespace (MeshCoP, MLE).

    A subclass is a frozen dataclass with a ``TYPE`` and the two halves of its value codec:
    :meth:`value_bytes` and :meth:`from_value`. ``from_value`` raises :class:`ParseError` on a
    malformed value; the dataclass constructors raise
    :class:`~gateway.errors.InvalidArgument` on out-of-range fields.
    """

    __slots__ = ()
    TYPE: ClassVar[int]

    def value_bytes(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        raise NotImplementedError

    @property
    def wire_extended(self) -> bool:
        """Whether the TLV is written in extended form even when short."""
        return False

    def to_tlv(self) -> Tlv:
        return Tlv(self.TYPE, self.value_bytes(), self.wire_extended)

    def to_bytes(self) -> bytes:
        return self.to_tlv().to_bytes()

    @classmethod
    def from_tlv(cls, tlv: Tlv) -> Self:
        """Decode a raw TLV of this class's type (:class:`ParseError` if malformed)."""
        if tlv.type != cls.TYPE:
            raise ParseError(f"TLV type {tlv.type} is not {cls.__name__} ({cls.TYPE})")
        try:
            return cls._from_tlv(tlv)
        except ParseError:
            raise
        except (InvalidArgument, ValueError, TypeError, IndexError, OverflowError) as exc:
            raise ParseError(f"malformed {cls.__name__}: {exc}") from exc

    @classmethod
    def _from_tlv(cls, tlv: Tlv) -> Self:
        return cls.from_value(tlv.value)


T = TypeVar("T", bound=TypedTlv)


def typed_registry(*classes: type[TypedTlv]) -> dict[int, type[TypedTlv]]:
    """Map TLV type to class, refusing two classes for one type."""
    reg: dict[int, type[TypedTlv]] = {}
    for cls in classes:
        if cls.TYPE in reg:
            raise InvalidArgument(f"two classes for TLV type {cls.TYPE}")
        reg[cls.TYPE] = cls
    return reg


def decode_typed(
    data: bytes | bytearray | memoryview, registry: Mapping[int, type[TypedTlv]]
) -> tuple[TypedTlv | Tlv, ...]:
    """Decode ``data`` into typed TLVs where ``registry`` knows the type, raw :class:`Tlv`
    otherwise (pass-through, order kept). A malformed known TLV raises :class:`ParseError`."""
    out: list[TypedTlv | Tlv] = []
    for raw in iter_tlvs(data):
        cls = registry.get(raw.type)
        out.append(raw if cls is None else cls.from_tlv(raw))
    return tuple(out)


def encode_items(items: Iterable[TypedTlv | Tlv]) -> bytes:
    """Encode typed and raw TLVs in the given order."""
    return b"".join(item.to_bytes() for item in items)


def first_of(items: Sequence[TypedTlv | Tlv], cls: type[T]) -> T | None:
    """The first item of class ``cls`` in ``items``, or None."""
    for item in items:
        if isinstance(item, cls):
            return item
    return None


# --- value helpers and shapes shared by the TLV namespaces ---------------------------------


def need(value: bytes, size: int, name: str) -> None:
    if len(value) < size:
        raise ParseError(f"{name}: value has {len(value)} bytes, needs {size}")


def check_uint(v: int, bits: int, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < (1 << bits):
        raise InvalidArgument(f"{name} must be an integer in 0..{(1 << bits) - 1}")


def check_bytes(v: bytes, size: int, name: str) -> bytes:
    if not isinstance(v, bytes | bytearray | memoryview):
        raise InvalidArgument(f"{name} must be bytes")
    b = bytes(v)
    if len(b) != size:
        raise InvalidArgument(f"{name} must be {size} bytes, got {len(b)}")
    return b


def decode_utf8(value: bytes, max_len: int | None, name: str) -> str:
    if max_len is not None and len(value) > max_len:
        raise ParseError(f"{name}: {len(value)} bytes exceeds the limit of {max_len}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{name}: not valid UTF-8") from exc


# --- generic value shapes ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class U8Tlv(TypedTlv):
    value: int

    def __post_init__(self) -> None:
        check_uint(self.value, 8, type(self).__name__)

    def value_bytes(self) -> bytes:
        return bytes((self.value,))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 1, cls.__name__)
        return cls(value[0])


@dataclass(frozen=True, slots=True)
class U16Tlv(TypedTlv):
    value: int

    def __post_init__(self) -> None:
        check_uint(self.value, 16, type(self).__name__)

    def value_bytes(self) -> bytes:
        return self.value.to_bytes(2, "big")

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 2, cls.__name__)
        return cls((value[0] << 8) | value[1])


@dataclass(frozen=True, slots=True)
class U32Tlv(TypedTlv):
    value: int

    def __post_init__(self) -> None:
        check_uint(self.value, 32, type(self).__name__)

    def value_bytes(self) -> bytes:
        return self.value.to_bytes(4, "big")

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 4, cls.__name__)
        return cls(int.from_bytes(value[:4], "big"))


@dataclass(frozen=True, slots=True)
class FixedBytesTlv(TypedTlv):
    SIZE: ClassVar[int]
    value: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_bytes(self.value, self.SIZE, type(self).__name__))

    def value_bytes(self) -> bytes:
        return self.value

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, cls.SIZE, cls.__name__)
        return cls(value[: cls.SIZE])


@dataclass(frozen=True, slots=True)
class SecretTlv(TypedTlv):
    """A 16-byte key: never shown in repr."""

    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_bytes(self.value, 16, type(self).__name__))

    def value_bytes(self) -> bytes:
        return self.value

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 16, cls.__name__)
        return cls(value[:16])


@dataclass(frozen=True, slots=True)
class StringTlv(TypedTlv):
    MAX_LENGTH: ClassVar[int | None] = None
    MIN_LENGTH: ClassVar[int] = 0
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise InvalidArgument(f"{type(self).__name__} must be a str")
        n = len(self.value.encode("utf-8"))
        if n < self.MIN_LENGTH or (self.MAX_LENGTH is not None and n > self.MAX_LENGTH):
            raise InvalidArgument(
                f"{type(self).__name__} must be {self.MIN_LENGTH}..{self.MAX_LENGTH} UTF-8 bytes"
            )

    def value_bytes(self) -> bytes:
        return self.value.encode("utf-8")

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        if len(value) < cls.MIN_LENGTH:
            raise ParseError(f"{cls.__name__}: shorter than {cls.MIN_LENGTH} bytes")
        return cls(decode_utf8(value, cls.MAX_LENGTH, cls.__name__))


@dataclass(frozen=True, slots=True)
class BytesTlv(TypedTlv):
    MAX_LENGTH: ClassVar[int | None] = None
    MIN_LENGTH: ClassVar[int] = 0
    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes | bytearray | memoryview):
            raise InvalidArgument(f"{type(self).__name__} must be bytes")
        b = bytes(self.value)
        if len(b) < self.MIN_LENGTH or (self.MAX_LENGTH is not None and len(b) > self.MAX_LENGTH):
            raise InvalidArgument(
                f"{type(self).__name__} must be {self.MIN_LENGTH}..{self.MAX_LENGTH} bytes"
            )
        object.__setattr__(self, "value", b)

    def value_bytes(self) -> bytes:
        return self.value

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        if len(value) < cls.MIN_LENGTH or (
            cls.MAX_LENGTH is not None and len(value) > cls.MAX_LENGTH
        ):
            raise ParseError(
                f"{cls.__name__}: {len(value)} bytes outside {cls.MIN_LENGTH}..{cls.MAX_LENGTH}"
            )
        return cls(value)


@dataclass(frozen=True, slots=True)
class Ipv6AddressValueTlv(TypedTlv):
    value: ipaddress.IPv6Address

    def __post_init__(self) -> None:
        v: object = self.value
        if isinstance(v, bytes | bytearray):
            if len(v) != 16:
                raise InvalidArgument(f"{type(self).__name__} must be 16 bytes")
            v = ipaddress.IPv6Address(bytes(v))
        elif isinstance(v, str):
            try:
                v = ipaddress.IPv6Address(v)
            except ValueError as exc:
                raise InvalidArgument(f"{type(self).__name__}: not an IPv6 address") from exc
        if not isinstance(v, ipaddress.IPv6Address):
            raise InvalidArgument(f"{type(self).__name__} must be an IPv6 address")
        object.__setattr__(self, "value", v)

    def value_bytes(self) -> bytes:
        return self.value.packed

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 16, cls.__name__)
        return cls(ipaddress.IPv6Address(value[:16]))


@dataclass(frozen=True, slots=True)
class ChannelValueTlv(TypedTlv):
    """Channel page (1) | channel (2)."""

    channel: int
    page: int = 0

    def __post_init__(self) -> None:
        check_uint(self.channel, 16, "channel")
        check_uint(self.page, 8, "channel page")

    def value_bytes(self) -> bytes:
        return bytes((self.page, self.channel >> 8, self.channel & 0xFF))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        need(value, 3, cls.__name__)
        return cls(channel=(value[1] << 8) | value[2], page=value[0])
