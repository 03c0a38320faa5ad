"""DTLS 1.2 handshake messages: fragments, the hello messages, extensions and reassembly.

Codecs (frozen dataclasses with ``to_bytes``/``from_bytes``; every ``from_bytes`` raises only
:class:`~gateway.errors.ParseError` on bad input):

* :class:`HandshakeFragment` — the 12-byte DTLS handshake header (RFC 6347 §4.2.2) and its
  fragment; :func:`parse_fragments` splits a handshake record (which may hold several).
* :class:`ClientHello`, :class:`ServerHello`, :class:`HelloVerifyRequest` with
  :class:`Extension` lists (RFC 5246 §7.4.1, RFC 6347 §4.2.1).
* Extension helpers for what TLS_ECJPAKE_WITH_AES_128_CCM_8 uses: supported_groups (10),
  ec_point_formats (11), ecjpake_key_kp_pair (256) and renegotiation_info (0xFF01).

:class:`HandshakeReassembler` puts fragments back together in ``message_seq`` order with bounded
memory; :func:`fragment_message` cuts an outgoing message to fit a record.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from gateway.errors import ParseError

__all__ = [
    "CIPHER_SUITE_ECJPAKE_AES_128_CCM_8",
    "CIPHER_SUITE_EMPTY_RENEGOTIATION_INFO_SCSV",
    "EXT_EC_POINT_FORMATS",
    "EXT_ECJPAKE_KEY_KP_PAIR",
    "EXT_EXTENDED_MASTER_SECRET",
    "EXT_RENEGOTIATION_INFO",
    "EXT_SUPPORTED_GROUPS",
    "GROUP_SECP256R1",
    "HANDSHAKE_HEADER_LEN",
    "HS_CLIENT_HELLO",
    "HS_CLIENT_KEY_EXCHANGE",
    "HS_FINISHED",
    "HS_HELLO_REQUEST",
    "HS_HELLO_VERIFY_REQUEST",
    "HS_SERVER_HELLO",
    "HS_SERVER_HELLO_DONE",
    "HS_SERVER_KEY_EXCHANGE",
    "POINT_FORMAT_UNCOMPRESSED",
    "AddResult",
    "ClientHello",
    "Extension",
    "HandshakeFragment",
    "HandshakeMessage",
    "HandshakeReassembler",
    "HelloVerifyRequest",
    "ServerHello",
    "encode_ec_point_formats",
    "encode_supported_groups",
    "find_extension",
    "fragment_message",
    "full_message",
    "parse_ec_point_formats",
    "parse_fragments",
    "parse_supported_groups",
]

HS_HELLO_REQUEST: Final[int] = 0
HS_CLIENT_HELLO: Final[int] = 1
HS_SERVER_HELLO: Final[int] = 2
HS_HELLO_VERIFY_REQUEST: Final[int] = 3
HS_SERVER_KEY_EXCHANGE: Final[int] = 12
HS_SERVER_HELLO_DONE: Final[int] = 14
HS_CLIENT_KEY_EXCHANGE: Final[int] = 16
HS_FINISHED: Final[int] = 20

HANDSHAKE_HEADER_LEN: Final[int] = 12

#: Mbed TLS's (and Thread's) suite number; not IANA-registered (draft-cragie-tls-ecjpake-01).
CIPHER_SUITE_ECJPAKE_AES_128_CCM_8: Final[int] = 0xC0FF
#: RFC 5746 §3.3; Mbed TLS clients always send it in an initial ClientHello.
CIPHER_SUITE_EMPTY_RENEGOTIATION_INFO_SCSV: Final[int] = 0x00FF

EXT_SUPPORTED_GROUPS: Final[int] = 10
EXT_EC_POINT_FORMATS: Final[int] = 11
EXT_EXTENDED_MASTER_SECRET: Final[int] = 23
EXT_ECJPAKE_KEY_KP_PAIR: Final[int] = 256
EXT_RENEGOTIATION_INFO: Final[int] = 0xFF01

GROUP_SECP256R1: Final[int] = 23
POINT_FORMAT_UNCOMPRESSED: Final[int] = 0

_FRAG_HEADER = struct.Struct(">B3sH3s3s")
_MAX_UINT24: Final[int] = (1 << 24) - 1


class _Reader:
    """Bounds-checked reads that raise :class:`ParseError` (never IndexError/struct.error)."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def take(self, n: int, field_name: str) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise ParseError(f"{self._what}: truncated in {field_name}")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u8(self, field_name: str) -> int:
        return self.take(1, field_name)[0]

    def u16(self, field_name: str) -> int:
        return int.from_bytes(self.take(2, field_name), "big")

    def vec8(self, field_name: str) -> bytes:
        return self.take(self.u8(field_name), field_name)

    def vec16(self, field_name: str) -> bytes:
        return self.take(self.u16(field_name), field_name)

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def end(self) -> None:
        if self.remaining:
            raise ParseError(f"{self._what}: {self.remaining} trailing bytes")


def _u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


# -- fragments ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeFragment:
    """One handshake fragment: the DTLS handshake header and ``fragment_length`` body bytes."""

    msg_type: int
    length: int
    message_seq: int
    fragment_offset: int
    fragment: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.msg_type <= 0xFF:
            raise ValueError("msg_type out of range")
        if not 0 <= self.message_seq <= 0xFFFF:
            raise ValueError("message_seq out of range")
        if not 0 <= self.length <= _MAX_UINT24:
            raise ValueError("length out of range")
        if self.fragment_offset < 0 or self.fragment_offset + len(self.fragment) > self.length:
            raise ValueError("fragment outside the message")

    @property
    def fragment_length(self) -> int:
        return len(self.fragment)

    @property
    def is_complete(self) -> bool:
        return self.fragment_offset == 0 and len(self.fragment) == self.length

    def to_bytes(self) -> bytes:
        return (
            _FRAG_HEADER.pack(
                self.msg_type,
                _u24(self.length),
                self.message_seq,
                _u24(self.fragment_offset),
                _u24(len(self.fragment)),
            )
            + self.fragment
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> HandshakeFragment:
        frags = parse_fragments(data)
        if len(frags) != 1:
            raise ParseError("expected exactly one handshake fragment")
        return frags[0]


def parse_fragments(data: bytes) -> list[HandshakeFragment]:
    """All handshake fragments in a handshake record's plaintext (at least one)."""
    out: list[HandshakeFragment] = []
    pos = 0
    if not data:
        raise ParseError("empty handshake record")
    while pos < len(data):
        if len(data) - pos < HANDSHAKE_HEADER_LEN:
            raise ParseError("truncated DTLS handshake header")
        msg_type, length_b, seq, off_b, flen_b = _FRAG_HEADER.unpack_from(data, pos)
        length = int.from_bytes(length_b, "big")
        offset = int.from_bytes(off_b, "big")
        flen = int.from_bytes(flen_b, "big")
        start = pos + HANDSHAKE_HEADER_LEN
        if start + flen > len(data):
            raise ParseError("handshake fragment longer than its record")
        if offset + flen > length:
            raise ParseError("handshake fragment outside its message")
        body = bytes(data[start : start + flen])
        out.append(HandshakeFragment(msg_type, length, seq, offset, body))
        pos = start + flen
    return out


def full_message(msg_type: int, message_seq: int, body: bytes) -> bytes:
    """A whole message with its DTLS header, as it enters the Finished hash (RFC 6347 §4.2.6)."""
    return HandshakeFragment(msg_type, len(body), message_seq, 0, body).to_bytes()


def fragment_message(
    msg_type: int, message_seq: int, body: bytes, max_fragment: int
) -> list[HandshakeFragment]:
    """Cut a message into fragments of at most ``max_fragment`` body bytes (>= 1)."""
    if max_fragment < 1:
        raise ValueError("max_fragment must be positive")
    if not body:
        return [HandshakeFragment(msg_type, 0, message_seq, 0, b"")]
    return [
        HandshakeFragment(msg_type, len(body), message_seq, off, body[off : off + max_fragment])
        for off in range(0, len(body), max_fragment)
    ]


# -- extensions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extension:
    ext_type: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.ext_type <= 0xFFFF or len(self.data) > 0xFFFF:
            raise ValueError("extension out of range")

    def to_bytes(self) -> bytes:
        return struct.pack(">HH", self.ext_type, len(self.data)) + self.data


def _encode_extensions(extensions: tuple[Extension, ...] | None) -> bytes:
    if extensions is None:
        return b""
    block = b"".join(e.to_bytes() for e in extensions)
    if len(block) > 0xFFFF:
        raise ValueError("extensions too long")
    return len(block).to_bytes(2, "big") + block


def _parse_extensions(reader: _Reader, what: str) -> tuple[Extension, ...] | None:
    """The optional extensions block at the end of a hello (None when absent)."""
    if reader.remaining == 0:
        return None
    block = reader.vec16("extensions")
    reader.end()
    ext_reader = _Reader(block, what)
    out: list[Extension] = []
    seen: set[int] = set()
    while ext_reader.remaining:
        ext_type = ext_reader.u16("extension type")
        data = ext_reader.vec16("extension data")
        if ext_type in seen:  # RFC 5246 §7.4.1.4: at most one of each type
            raise ParseError(f"{what}: duplicate extension {ext_type}")
        seen.add(ext_type)
        out.append(Extension(ext_type, data))
    return tuple(out)


def find_extension(extensions: tuple[Extension, ...] | None, ext_type: int) -> bytes | None:
    for ext in extensions or ():
        if ext.ext_type == ext_type:
            return ext.data
    return None


def encode_supported_groups(groups: tuple[int, ...]) -> bytes:
    body = b"".join(g.to_bytes(2, "big") for g in groups)
    return len(body).to_bytes(2, "big") + body


def parse_supported_groups(data: bytes) -> tuple[int, ...]:
    reader = _Reader(data, "supported_groups")
    body = reader.vec16("named_group_list")
    reader.end()
    if not body or len(body) % 2:
        raise ParseError("supported_groups: bad list length")
    return tuple(int.from_bytes(body[i : i + 2], "big") for i in range(0, len(body), 2))


def encode_ec_point_formats(formats: tuple[int, ...]) -> bytes:
    return bytes([len(formats), *formats])


def parse_ec_point_formats(data: bytes) -> tuple[int, ...]:
    reader = _Reader(data, "ec_point_formats")
    body = reader.vec8("ec_point_format_list")
    reader.end()
    if not body:
        raise ParseError("ec_point_formats: empty list")
    return tuple(body)


# -- hello messages ----------------------------------------------------------------------------


def _check_random(random: bytes) -> None:
    if len(random) != 32:
        raise ValueError("random must be 32 bytes")


@dataclass(frozen=True)
class ClientHello:
    """RFC 6347 §4.2.1 ClientHello (with the DTLS cookie field)."""

    client_version: int
    random: bytes
    session_id: bytes
    cookie: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: bytes
    extensions: tuple[Extension, ...] | None

    def __post_init__(self) -> None:
        _check_random(self.random)
        if len(self.session_id) > 32 or len(self.cookie) > 255:
            raise ValueError("session_id or cookie too long")
        if not 1 <= len(self.cipher_suites) <= 0x7FFF or not self.compression_methods:
            raise ValueError("cipher suites and compression methods must not be empty")

    def extension(self, ext_type: int) -> bytes | None:
        return find_extension(self.extensions, ext_type)

    def _suites(self) -> bytes:
        body = b"".join(s.to_bytes(2, "big") for s in self.cipher_suites)
        return len(body).to_bytes(2, "big") + body

    def cookie_input(self) -> bytes:
        """Every field but the cookie, unambiguously framed (what a stateless cookie binds)."""
        return (
            self.client_version.to_bytes(2, "big")
            + self.random
            + bytes([len(self.session_id)])
            + self.session_id
            + self._suites()
            + bytes([len(self.compression_methods)])
            + self.compression_methods
            + (
                b"\x01" + _encode_extensions(self.extensions)
                if self.extensions is not None
                else b""
            )
        )

    def to_bytes(self) -> bytes:
        return (
            self.client_version.to_bytes(2, "big")
            + self.random
            + bytes([len(self.session_id)])
            + self.session_id
            + bytes([len(self.cookie)])
            + self.cookie
            + self._suites()
            + bytes([len(self.compression_methods)])
            + self.compression_methods
            + _encode_extensions(self.extensions)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ClientHello:
        r = _Reader(data, "ClientHello")
        version = r.u16("client_version")
        random = r.take(32, "random")
        session_id = r.vec8("session_id")
        if len(session_id) > 32:
            raise ParseError("ClientHello: session_id longer than 32 bytes")
        cookie = r.vec8("cookie")
        suites_raw = r.vec16("cipher_suites")
        if not suites_raw or len(suites_raw) % 2:
            raise ParseError("ClientHello: bad cipher_suites length")
        suites = tuple(
            int.from_bytes(suites_raw[i : i + 2], "big") for i in range(0, len(suites_raw), 2)
        )
        compression = r.vec8("compression_methods")
        if not compression:
            raise ParseError("ClientHello: no compression method")
        extensions = _parse_extensions(r, "ClientHello")
        return cls(version, random, session_id, cookie, suites, compression, extensions)


@dataclass(frozen=True)
class ServerHello:
    server_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[Extension, ...] | None

    def __post_init__(self) -> None:
        _check_random(self.random)
        if len(self.session_id) > 32:
            raise ValueError("session_id too long")

    def extension(self, ext_type: int) -> bytes | None:
        return find_extension(self.extensions, ext_type)

    def to_bytes(self) -> bytes:
        return (
            self.server_version.to_bytes(2, "big")
            + self.random
            + bytes([len(self.session_id)])
            + self.session_id
            + self.cipher_suite.to_bytes(2, "big")
            + bytes([self.compression_method])
            + _encode_extensions(self.extensions)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ServerHello:
        r = _Reader(data, "ServerHello")
        version = r.u16("server_version")
        random = r.take(32, "random")
        session_id = r.vec8("session_id")
        if len(session_id) > 32:
            raise ParseError("ServerHello: session_id longer than 32 bytes")
        suite = r.u16("cipher_suite")
        compression = r.u8("compression_method")
        extensions = _parse_extensions(r, "ServerHello")
        return cls(version, random, session_id, suite, compression, extensions)


@dataclass(frozen=True)
class HelloVerifyRequest:
    server_version: int
    cookie: bytes

    def __post_init__(self) -> None:
        if len(self.cookie) > 255:
            raise ValueError("cookie too long")

    def to_bytes(self) -> bytes:
        return self.server_version.to_bytes(2, "big") + bytes([len(self.cookie)]) + self.cookie

    @classmethod
    def from_bytes(cls, data: bytes) -> HelloVerifyRequest:
        r = _Reader(data, "HelloVerifyRequest")
        version = r.u16("server_version")
        cookie = r.vec8("cookie")
        r.end()
        return cls(version, cookie)


# -- reassembly --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeMessage:
    """A reassembled handshake message and the record epoch its fragments arrived in."""

    msg_type: int
    message_seq: int
    body: bytes = field(repr=False)
    epoch: int

    def full(self) -> bytes:
        return full_message(self.msg_type, self.message_seq, self.body)


class AddResult(Enum):
    ACCEPTED = "accepted"  # new data for a current or future message
    OLD = "old"  # a message already delivered (a retransmission by the peer)
    DROPPED = "dropped"  # out of the window, over a bound or inconsistent


class _Partial:
    __slots__ = ("body", "epoch", "filled", "have", "length", "msg_type")

    def __init__(self, msg_type: int, length: int, epoch: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.epoch = epoch
        self.body = bytearray(length)
        self.have = bytearray(length)  # 1 where a byte has been received
        self.filled = 0

    def add(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        self.body[offset:end] = data
        missing = len(data) - sum(self.have[offset:end])
        if missing:
            self.have[offset:end] = b"\x01" * len(data)
            self.filled += missing

    @property
    def complete(self) -> bool:
        return self.filled == self.length


class HandshakeReassembler:
    """Reorders and reassembles incoming handshake fragments, delivering messages in order.

    Bounded: messages longer than ``max_message_len`` and fragments whose ``message_seq`` is
    ``window`` or more ahead of the next expected one are dropped, and at most
    ``max_buffered`` bytes of incomplete or early messages are held.
    """

    def __init__(
        self,
        next_seq: int = 0,
        *,
        max_message_len: int = 8192,
        window: int = 8,
        max_buffered: int = 16384,
    ) -> None:
        self.next_seq = next_seq
        self._max_message_len = max_message_len
        self._window = window
        self._max_buffered = max_buffered
        self._partial: dict[int, _Partial] = {}

    @property
    def buffered_bytes(self) -> int:
        return sum(p.length for p in self._partial.values())

    def reset(self, next_seq: int) -> None:
        self.next_seq = next_seq
        self._partial.clear()

    def add(self, frag: HandshakeFragment, epoch: int) -> AddResult:
        seq = frag.message_seq
        if seq < self.next_seq:
            return AddResult.OLD
        if seq >= self.next_seq + self._window or frag.length > self._max_message_len:
            return AddResult.DROPPED
        part = self._partial.get(seq)
        if part is None:
            if self.buffered_bytes + frag.length > self._max_buffered:
                return AddResult.DROPPED
            part = _Partial(frag.msg_type, frag.length, epoch)
            self._partial[seq] = part
        elif part.msg_type != frag.msg_type or part.length != frag.length or part.epoch != epoch:
            return AddResult.DROPPED
        part.add(frag.fragment_offset, frag.fragment)
        return AddResult.ACCEPTED

    def pop(self) -> HandshakeMessage | None:
        """The next message in sequence if it is complete (and advances ``next_seq``)."""
        part = self._partial.get(self.next_seq)
        if part is None or not part.complete:
            return None
        del self._partial[self.next_seq]
        msg = HandshakeMessage(part.msg_type, self.next_seq, bytes(part.body), part.epoch)
        self.next_seq += 1
        return msg
