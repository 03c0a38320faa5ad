"""CBSB-1 frames: the cloud-server-based secure bootstrapping protocol on 802.15.4 (docs/cbsb.md).

A CBSB frame is the whole MAC payload of an IEEE 802.15.4 data frame (MAC security off). Its first
byte is the dispatch ``0x3C``, inside the 6LoWPAN "not a LoWPAN frame" range 0x00-0x3F (RFC 4944
§5.1), so Thread stacks drop it and Wireshark shows it as plain data. The second byte holds the
protocol version (high nibble, 1 for CBSB-1) and the message type (low nibble).

This module is a sans-IO codec: frozen dataclasses with ``to_bytes()``/``from_bytes()``, and
:func:`parse_frame` for any received payload. Every parser raises only
:class:`gateway.errors.ParseError` on bad bytes. Cryptographic protection (AEAD, proofs) is applied
by :mod:`gateway.wire.cbsb_session` with :mod:`gateway.crypto.cbsb_keys`; here sealed parts are
opaque bytes. Secrets (``K_bcn``, network keys, datasets) never appear in ``repr()``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import ClassVar, TypeAlias, TypeVar

from gateway.errors import InvalidArgument, ParseError

__all__ = [
    "ABORT_CODES",
    "DISPATCH",
    "M2_AUTHENTICATED",
    "M2_HINTS",
    "MAX_BROADCAST_PAYLOAD",
    "MAX_CHUNKS",
    "MAX_DELIVERY_LEN",
    "MAX_UNICAST_PAYLOAD",
    "STATUS_HINTS",
    "VERSION",
    "Abort",
    "AckBody",
    "Beacon",
    "BeaconFlags",
    "BeaconRequest",
    "CbsbInvalidArgument",
    "CbsbUnsupportedVersion",
    "ConfirmBody",
    "AppReport",
    "Delivery",
    "DeliveryAck",
    "DeliveryChunk",
    "Frame",
    "ItemType",
    "JoinConfirm",
    "JoinDone",
    "JoinRequest",
    "JoinResponse",
    "LinkParams",
    "MsgType",
    "ResponseBody",
    "Status",
    "delivery_chunk_capacity",
    "is_cbsb_frame",
    "join_header",
    "m2_first_chunk_capacity",
    "parse_frame",
    "peek_type",
    "split_delivery",
]

DISPATCH = 0x3C
"""First byte of every CBSB frame (6LoWPAN NALP range 0x00-0x3F)."""

VERSION = 1
"""CBSB-1. Carried in the high nibble of byte 1."""

SUPPORTED_VERSIONS = 0x01
"""Bitmap of versions this implementation speaks (bit v-1 for version v)."""

MAX_PSDU = 127
FCS_LEN = 2
MAX_BROADCAST_PAYLOAD = 110
"""127-byte PSDU - 15-byte MAC header (FCF, seq, dst PAN, dst short 0xFFFF, src ext) - 2-byte FCS."""
MAX_UNICAST_PAYLOAD = 104
"""127-byte PSDU - 21-byte MAC header (FCF, seq, dst PAN, dst ext, src ext) - 2-byte FCS."""

MAX_DELIVERY_LEN = 1024
"""Upper bound of the reassembled delivery payload (an OpenThread dataset is at most 254 bytes)."""
MAX_CHUNKS = 16
"""Chunk 0 travels inside M2; chunks 1..15 in Delivery frames; the ack bitmap is 16 bits."""

JOIN_HEADER_LEN = 11
TAG_LEN = 8
_MAX_FRAME = MAX_PSDU - FCS_LEN

_T = TypeVar("_T")


class CbsbUnsupportedVersion(ParseError):
    """A CBSB frame of a protocol version this implementation does not speak."""

    code = "CBSB001"
    default_hint = "A device speaks a newer CBSB version; update the gateway software."

    def __init__(self, version: int) -> None:
        super().__init__(f"unsupported CBSB version {version}")
        self.version = version


class CbsbInvalidArgument(InvalidArgument, ValueError):
    """A CBSB value that cannot be encoded (a programming error on the sending side)."""

    code = "CBSB002"


class MsgType(IntEnum):
    BEACON = 1
    JOIN_REQUEST = 2  # M1
    JOIN_RESPONSE = 3  # M2
    JOIN_CONFIRM = 4  # M3
    JOIN_DONE = 5  # M4
    BEACON_REQUEST = 6
    DELIVERY = 7
    DELIVERY_ACK = 8
    ABORT = 9


class Status(IntEnum):
    """Stable result codes (cloud-bootstrap.md §10.9 plus the wire-level ones). Never renumber."""

    OK = 0x00
    WINDOW_EXPIRED = 0x01
    NO_JOIN_ATTEMPT = 0x02
    DEVICE_NOT_ALLOWED = 0x03
    AUTH_FAILED = 0x04
    PENDING_USER_CONFIRM = 0x05
    CLOUD_UNREACHABLE = 0x06
    CLOUD_DENIED = 0x07
    THING_NO_CONFIRM = 0x08
    RADIO_ERROR = 0x09
    RATE_LIMITED = 0x0A
    BIND_REJECTED = 0x0B
    SESSION_CLOSED = 0x0C
    DELIVERY_REJECTED = 0x0D
    LOCKED_OUT = 0x0E
    PROTOCOL_ERROR = 0x0F


STATUS_HINTS: dict[Status, str] = {
    Status.OK: "The thing joined.",
    Status.WINDOW_EXPIRED: "The bootstrapping window closed; start it again from the app.",
    Status.NO_JOIN_ATTEMPT: (
        "No join attempt was heard: is the thing in pairing mode, powered and within range?"
    ),
    Status.DEVICE_NOT_ALLOWED: "A thing that is not part of this session tried to join.",
    Status.AUTH_FAILED: (
        "The thing's proof was wrong: wrong device, corrupted factory data, or a counterfeit."
    ),
    Status.PENDING_USER_CONFIRM: "Waiting for you to confirm the discovered thing in the app.",
    Status.CLOUD_UNREACHABLE: "The gateway cannot reach the cloud; check its Internet connection.",
    Status.CLOUD_DENIED: "The cloud refused this thing (unknown, or bound to another account).",
    Status.THING_NO_CONFIRM: (
        "The thing did not confirm the credentials: radio trouble, or it rejected the gateway."
    ),
    Status.RADIO_ERROR: "The gateway's radio failed; run 'gwctl radio probe'.",
    Status.RATE_LIMITED: "Too many join attempts at once; the gateway is shedding load.",
    Status.BIND_REJECTED: "The cloud refused to bind the thing to your account.",
    Status.SESSION_CLOSED: "The session was closed by the cloud or the app.",
    Status.DELIVERY_REJECTED: "The thing could not use the network credentials it received.",
    Status.LOCKED_OUT: "The thing failed its proof too often and is locked out for this session.",
    Status.PROTOCOL_ERROR: "The exchange broke off with an unexpected message.",
}

M2_AUTHENTICATED = frozenset({Status.OK, Status.CLOUD_DENIED})
"""M2 statuses that carry an AEAD part (gateway key confirmation)."""
M2_HINTS = frozenset(
    {
        Status.PENDING_USER_CONFIRM,
        Status.WINDOW_EXPIRED,
        Status.CLOUD_UNREACHABLE,
        Status.RATE_LIMITED,
    }
)
"""M2 statuses sent without protection; a thing treats them as hints, never as final."""
ABORT_CODES = frozenset(
    {
        Status.WINDOW_EXPIRED,
        Status.CLOUD_DENIED,
        Status.THING_NO_CONFIRM,
        Status.SESSION_CLOSED,
        Status.DELIVERY_REJECTED,
        Status.PROTOCOL_ERROR,
    }
)


class BeaconFlags(IntFlag):
    """Beacon byte 2, also the ``mode`` input of PSK_T: constant for a session."""

    NONE = 0
    TARGETED = 0x01
    PFS_REQUIRED = 0x02
    CLOUD_VERIFY = 0x04
    USER_CONFIRM = 0x08


_BEACON_FLAGS_MASK = 0x0F
_M1_FLAG_PFS = 0x01
_M2_FLAG_XG = 0x80


# --- helpers -----------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise ParseError("frame truncated")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def rest(self) -> bytes:
        return self.take(self.remaining())

    def done(self) -> None:
        if self._pos != len(self._data):
            raise ParseError("trailing bytes")


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise CbsbInvalidArgument(msg)


def _bytes_of(value: object, length: int, name: str) -> None:
    _require(isinstance(value, bytes) and len(value) == length, f"{name} must be {length} bytes")


def _uint(value: object, bits: int, name: str) -> None:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value < (1 << bits),
        f"{name} must be an unsigned {bits}-bit integer",
    )


def _input(data: object) -> bytes:
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise ParseError("frame must be bytes")
    if len(data) > _MAX_FRAME:
        raise ParseError("frame longer than an 802.15.4 PSDU allows")
    return data


def _head(data: bytes, expect: MsgType) -> _Reader:
    r = _Reader(data)
    if r.u8() != DISPATCH:
        raise ParseError("not a CBSB frame")
    vt = r.u8()
    if vt >> 4 != VERSION:
        raise CbsbUnsupportedVersion(vt >> 4)
    if vt & 0x0F != expect:
        raise ParseError("unexpected CBSB message type")
    return r


def _vt(t: MsgType) -> int:
    return (VERSION << 4) | int(t)


def join_header(t: MsgType, b2: int, dev_id: bytes) -> bytes:
    """The 11-byte header of every join-phase frame: dispatch, version/type, byte 2, dev_id."""
    return bytes((DISPATCH, _vt(t), b2)) + dev_id


def _construct(factory: type[_T], /, **kwargs: object) -> _T:
    """Build a dataclass from parsed fields; a field rule it breaks becomes a ParseError."""
    try:
        return factory(**kwargs)
    except ValueError as exc:
        if isinstance(exc, ParseError):
            raise
        raise ParseError(f"invalid {factory.__name__}: {exc}") from None


# --- Beacon (M0) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Beacon:
    """The RandomKey beacon, broadcast every second and on Beacon Request (docs/cbsb.md §4.2).

    Its bytes are constant for an epoch (``window_left_s`` is counted from the epoch's start), so
    the gateway can rebuild the exact ``M0`` a thing used for any epoch it still accepts.
    """

    TYPE: ClassVar[MsgType] = MsgType.BEACON
    BASE_LEN: ClassVar[int] = 62

    flags: BeaconFlags
    gw_id: bytes
    sid: bytes
    epoch: int
    r_g: bytes
    exp: int
    window_left_s: int
    channel: int
    pan_id: int
    steering: bytes = b""
    btag: bytes = bytes(8)

    def __post_init__(self) -> None:
        _uint(int(self.flags), 8, "flags")
        _require(int(self.flags) & ~_BEACON_FLAGS_MASK == 0, "reserved beacon flags set")
        _bytes_of(self.gw_id, 8, "gw_id")
        _bytes_of(self.sid, 16, "sid")
        _uint(self.epoch, 16, "epoch")
        _bytes_of(self.r_g, 16, "R_G")
        _uint(self.exp, 32, "exp")
        _uint(self.window_left_s, 16, "window_left_s")
        _uint(self.channel, 8, "channel")
        _require(11 <= self.channel <= 26, "join channel must be 11..26 (2.4 GHz O-QPSK)")
        _uint(self.pan_id, 16, "pan_id")
        _require(self.pan_id != 0xFFFF, "join PAN ID must not be the broadcast PAN")
        _require(isinstance(self.steering, bytes), "steering must be bytes")
        targeted = bool(self.flags & BeaconFlags.TARGETED)
        if targeted:
            _require(1 <= len(self.steering) <= 16, "steering must be 1..16 bytes when TARGETED")
        else:
            _require(self.steering == b"", "steering only with TARGETED")
        _bytes_of(self.btag, 8, "btag")

    def body(self) -> bytes:
        """Every byte of the beacon before ``btag`` (the input of the beacon tag)."""
        out = bytes((DISPATCH, _vt(MsgType.BEACON), int(self.flags))) + self.gw_id + self.sid
        out += struct.pack(">H", self.epoch) + self.r_g
        out += struct.pack(">IHBH", self.exp, self.window_left_s, self.channel, self.pan_id)
        if self.steering:
            out += bytes((len(self.steering),)) + self.steering
        return out

    def to_bytes(self) -> bytes:
        return self.body() + self.btag

    @classmethod
    def from_bytes(cls, data: bytes) -> Beacon:
        data = _input(data)
        r = _head(data, MsgType.BEACON)
        flags = r.u8()
        gw_id = r.take(8)
        sid = r.take(16)
        epoch = r.u16()
        r_g = r.take(16)
        exp = r.u32()
        left = r.u16()
        channel = r.u8()
        pan_id = r.u16()
        steering = b""
        if flags & BeaconFlags.TARGETED:
            n = r.u8()
            if not 1 <= n <= 16:
                raise ParseError("steering length must be 1..16")
            steering = r.take(n)
        btag = r.take(8)
        r.done()
        if flags & ~_BEACON_FLAGS_MASK:
            raise ParseError("reserved beacon flags set")
        return _construct(
            cls,
            flags=BeaconFlags(flags),
            gw_id=gw_id,
            sid=sid,
            epoch=epoch,
            r_g=r_g,
            exp=exp,
            window_left_s=left,
            channel=channel,
            pan_id=pan_id,
            steering=steering,
            btag=btag,
        )


# --- Beacon Request ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BeaconRequest:
    """Active discovery (docs/cbsb.md §4.1): a thing asks gateways on this channel for a beacon.

    It deliberately carries no identity, nonce or steering hint: only the versions the thing
    speaks. Its format is the same in every version (byte 1 always says version 1).
    """

    TYPE: ClassVar[MsgType] = MsgType.BEACON_REQUEST
    LEN: ClassVar[int] = 4

    versions: int = SUPPORTED_VERSIONS
    flags: int = 0

    def __post_init__(self) -> None:
        _uint(self.versions, 8, "versions")
        _require(self.versions != 0, "versions bitmap must not be empty")
        _require(self.flags == 0, "beacon request flags are reserved (0)")

    def to_bytes(self) -> bytes:
        return bytes((DISPATCH, _vt(MsgType.BEACON_REQUEST), self.versions, self.flags))

    @classmethod
    def from_bytes(cls, data: bytes) -> BeaconRequest:
        data = _input(data)
        r = _head(data, MsgType.BEACON_REQUEST)
        versions = r.u8()
        flags = r.u8()
        r.done()
        return _construct(cls, versions=versions, flags=flags)


# --- M1 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinRequest:
    """M1: ``dev_id``, the beacon epoch, the thing nonce ``N_T``, optional ``X_T``, and proof_T."""

    TYPE: ClassVar[MsgType] = MsgType.JOIN_REQUEST

    dev_id: bytes
    epoch: int
    n_t: bytes
    proof: bytes
    x_t: bytes | None = None

    def __post_init__(self) -> None:
        _bytes_of(self.dev_id, 8, "dev_id")
        _uint(self.epoch, 16, "epoch")
        _bytes_of(self.n_t, 16, "N_T")
        _bytes_of(self.proof, 16, "proof")
        if self.x_t is not None:
            _bytes_of(self.x_t, 32, "X_T")

    @property
    def pfs(self) -> bool:
        return self.x_t is not None

    def body(self) -> bytes:
        """M1 without the proof (the input of proof_T)."""
        flags = _M1_FLAG_PFS if self.x_t is not None else 0
        out = join_header(MsgType.JOIN_REQUEST, flags, self.dev_id)
        out += struct.pack(">H", self.epoch) + self.n_t
        if self.x_t is not None:
            out += self.x_t
        return out

    def to_bytes(self) -> bytes:
        return self.body() + self.proof

    @classmethod
    def from_bytes(cls, data: bytes) -> JoinRequest:
        data = _input(data)
        r = _head(data, MsgType.JOIN_REQUEST)
        flags = r.u8()
        if flags & ~_M1_FLAG_PFS:
            raise ParseError("reserved M1 flags set")
        dev_id = r.take(8)
        epoch = r.u16()
        n_t = r.take(16)
        x_t = r.take(32) if flags & _M1_FLAG_PFS else None
        proof = r.take(16)
        r.done()
        return _construct(cls, dev_id=dev_id, epoch=epoch, n_t=n_t, proof=proof, x_t=x_t)


# --- M2 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinResponse:
    """M2: status, ``N_T[0:4]``, optional ``X_G``, and (OK / CLOUD_DENIED) the sealed part.

    Byte 2 is the status in bits 0-6 and "X_G present" in bit 7.
    """

    TYPE: ClassVar[MsgType] = MsgType.JOIN_RESPONSE
    MIN_OK_SEALED: ClassVar[int] = 19 + TAG_LEN

    status: Status
    dev_id: bytes
    nt4: bytes
    sealed: bytes = b""
    x_g: bytes | None = None

    def __post_init__(self) -> None:
        _require(
            isinstance(self.status, Status) and self.status in M2_AUTHENTICATED | M2_HINTS,
            "status not allowed in M2",
        )
        _bytes_of(self.dev_id, 8, "dev_id")
        _bytes_of(self.nt4, 4, "nt4")
        _require(isinstance(self.sealed, bytes), "sealed must be bytes")
        if self.status == Status.OK:
            _require(len(self.sealed) >= self.MIN_OK_SEALED, "sealed part too short for OK")
        elif self.status == Status.CLOUD_DENIED:
            _require(len(self.sealed) == TAG_LEN, "an authenticated denial carries only a tag")
        else:
            _require(self.sealed == b"" and self.x_g is None, "a hint carries nothing else")
        if self.x_g is not None:
            _bytes_of(self.x_g, 32, "X_G")

    @property
    def authenticated(self) -> bool:
        return self.status in M2_AUTHENTICATED

    @staticmethod
    def build_header(status: Status, dev_id: bytes, nt4: bytes, x_g: bytes | None) -> bytes:
        """The bytes before the sealed part, for a response not built yet (AAD of its seal)."""
        b2 = int(status) | (_M2_FLAG_XG if x_g is not None else 0)
        return join_header(MsgType.JOIN_RESPONSE, b2, dev_id) + nt4 + (x_g or b"")

    def header(self) -> bytes:
        """Every byte before the sealed part (the AAD prefix of M2)."""
        return self.build_header(self.status, self.dev_id, self.nt4, self.x_g)

    def to_bytes(self) -> bytes:
        return self.header() + self.sealed

    @classmethod
    def from_bytes(cls, data: bytes) -> JoinResponse:
        data = _input(data)
        r = _head(data, MsgType.JOIN_RESPONSE)
        b2 = r.u8()
        dev_id = r.take(8)
        nt4 = r.take(4)
        try:
            status = Status(b2 & 0x7F)
        except ValueError:
            raise ParseError("unknown M2 status") from None
        x_g = r.take(32) if b2 & _M2_FLAG_XG else None
        sealed = r.rest()
        return _construct(cls, status=status, dev_id=dev_id, nt4=nt4, sealed=sealed, x_g=x_g)


@dataclass(frozen=True)
class ResponseBody:
    """Plaintext of an OK M2: ``K_bcn(16)‖total_len(2)‖n_chunks(1)‖chunk 0``."""

    FIXED_LEN: ClassVar[int] = 19

    k_bcn: bytes = field(repr=False)
    total_len: int
    n_chunks: int
    first_chunk: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _bytes_of(self.k_bcn, 16, "K_bcn")
        _uint(self.total_len, 16, "total_len")
        _require(2 <= self.total_len <= MAX_DELIVERY_LEN, "delivery length out of range")
        _uint(self.n_chunks, 8, "n_chunks")
        _require(1 <= self.n_chunks <= MAX_CHUNKS, "n_chunks must be 1..16")
        _require(isinstance(self.first_chunk, bytes), "first_chunk must be bytes")
        _require(len(self.first_chunk) <= self.total_len, "chunk 0 longer than the delivery")
        if self.n_chunks == 1:
            _require(len(self.first_chunk) == self.total_len, "single chunk must be complete")
        else:
            _require(
                self.total_len - len(self.first_chunk) >= self.n_chunks - 1,
                "too many chunks for the remaining length",
            )

    def to_bytes(self) -> bytes:
        return self.k_bcn + struct.pack(">HB", self.total_len, self.n_chunks) + self.first_chunk

    @classmethod
    def from_bytes(cls, data: bytes) -> ResponseBody:
        r = _Reader(_input(data))
        k_bcn = r.take(16)
        total = r.u16()
        n = r.u8()
        first = r.rest()
        return _construct(cls, k_bcn=k_bcn, total_len=total, n_chunks=n, first_chunk=first)


# --- M3, M4 ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinConfirm:
    """M3: the sealed ``BP(16)‖caps(2)`` (thing key confirmation and cloud-verifiable bind proof)."""

    TYPE: ClassVar[MsgType] = MsgType.JOIN_CONFIRM
    SEALED_LEN: ClassVar[int] = 18 + TAG_LEN

    dev_id: bytes
    sealed: bytes

    def __post_init__(self) -> None:
        _bytes_of(self.dev_id, 8, "dev_id")
        _bytes_of(self.sealed, self.SEALED_LEN, "sealed")

    def header(self) -> bytes:
        return join_header(MsgType.JOIN_CONFIRM, 0, self.dev_id)

    def to_bytes(self) -> bytes:
        return self.header() + self.sealed

    @classmethod
    def from_bytes(cls, data: bytes) -> JoinConfirm:
        data = _input(data)
        r = _head(data, MsgType.JOIN_CONFIRM)
        if r.u8() != 0:
            raise ParseError("reserved M3 flags set")
        dev_id = r.take(8)
        sealed = r.rest()
        return _construct(cls, dev_id=dev_id, sealed=sealed)


@dataclass(frozen=True)
class ConfirmBody:
    """Plaintext of M3."""

    bind_proof: bytes
    caps: int = 0

    def __post_init__(self) -> None:
        _bytes_of(self.bind_proof, 16, "bind_proof")
        _uint(self.caps, 16, "caps")

    def to_bytes(self) -> bytes:
        return self.bind_proof + struct.pack(">H", self.caps)

    @classmethod
    def from_bytes(cls, data: bytes) -> ConfirmBody:
        r = _Reader(_input(data))
        bp = r.take(16)
        caps = r.u16()
        r.done()
        return _construct(cls, bind_proof=bp, caps=caps)


@dataclass(frozen=True)
class JoinDone:
    """M4: a tag over the empty plaintext; the thing commits on it."""

    TYPE: ClassVar[MsgType] = MsgType.JOIN_DONE

    dev_id: bytes
    tag: bytes

    def __post_init__(self) -> None:
        _bytes_of(self.dev_id, 8, "dev_id")
        _bytes_of(self.tag, TAG_LEN, "tag")

    def header(self) -> bytes:
        return join_header(MsgType.JOIN_DONE, 0, self.dev_id)

    def to_bytes(self) -> bytes:
        return self.header() + self.tag

    @classmethod
    def from_bytes(cls, data: bytes) -> JoinDone:
        data = _input(data)
        r = _head(data, MsgType.JOIN_DONE)
        if r.u8() != 0:
            raise ParseError("reserved M4 byte set")
        dev_id = r.take(8)
        tag = r.take(TAG_LEN)
        r.done()
        return _construct(cls, dev_id=dev_id, tag=tag)


# --- chunked delivery ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryChunk:
    """Delivery chunk ``index`` (1..15) of the credentials, sealed under K_g2t with counter index."""

    TYPE: ClassVar[MsgType] = MsgType.DELIVERY

    dev_id: bytes
    index: int
    sealed: bytes

    def __post_init__(self) -> None:
        _bytes_of(self.dev_id, 8, "dev_id")
        _uint(self.index, 8, "index")
        _require(1 <= self.index < MAX_CHUNKS, "chunk index must be 1..15")
        _require(
            isinstance(self.sealed, bytes) and len(self.sealed) >= TAG_LEN + 1,
            "a chunk carries at least one byte and the tag",
        )

    def header(self) -> bytes:
        return join_header(MsgType.DELIVERY, self.index, self.dev_id)

    def to_bytes(self) -> bytes:
        return self.header() + self.sealed

    @classmethod
    def from_bytes(cls, data: bytes) -> DeliveryChunk:
        data = _input(data)
        r = _head(data, MsgType.DELIVERY)
        index = r.u8()
        dev_id = r.take(8)
        sealed = r.rest()
        return _construct(cls, dev_id=dev_id, index=index, sealed=sealed)


@dataclass(frozen=True)
class DeliveryAck:
    """Selective acknowledgement from the thing: sealed 16-bit bitmap of chunks held, seq 1..255."""

    TYPE: ClassVar[MsgType] = MsgType.DELIVERY_ACK
    SEALED_LEN: ClassVar[int] = 2 + TAG_LEN

    dev_id: bytes
    seq: int
    sealed: bytes

    def __post_init__(self) -> None:
        _bytes_of(self.dev_id, 8, "dev_id")
        _uint(self.seq, 8, "seq")
        _require(self.seq >= 1, "ack sequence numbers start at 1")
        _bytes_of(self.sealed, self.SEALED_LEN, "sealed")

    def header(self) -> bytes:
        return join_header(MsgType.DELIVERY_ACK, self.seq, self.dev_id)

    def to_bytes(self) -> bytes:
        return self.header() + self.sealed

    @classmethod
    def from_bytes(cls, data: bytes) -> DeliveryAck:
        data = _input(data)
        r = _head(data, MsgType.DELIVERY_ACK)
        seq = r.u8()
        dev_id = r.take(8)
        sealed = r.rest()
        return _construct(cls, dev_id=dev_id, seq=seq, sealed=sealed)


@dataclass(frozen=True)
class AckBody:
    """Plaintext of a Delivery Ack: bit i (LSB = chunk 0) set when chunk i is held."""

    bitmap: int

    def __post_init__(self) -> None:
        _uint(self.bitmap, 16, "bitmap")
        _require(self.bitmap & 1 == 1, "chunk 0 (inside M2) is always held")

    def to_bytes(self) -> bytes:
        return struct.pack(">H", self.bitmap)

    @classmethod
    def from_bytes(cls, data: bytes) -> AckBody:
        r = _Reader(_input(data))
        bitmap = r.u16()
        r.done()
        return _construct(cls, bitmap=bitmap)


@dataclass(frozen=True)
class Abort:
    """Either side ends an exchange. With a tag (sealed empty plaintext) it is authenticated and
    final; without one it is a hint the receiver never treats as final."""

    TYPE: ClassVar[MsgType] = MsgType.ABORT

    dev_id: bytes
    code: Status
    tag: bytes | None = None

    def __post_init__(self) -> None:
        _bytes_of(self.dev_id, 8, "dev_id")
        _require(
            isinstance(self.code, Status) and self.code in ABORT_CODES, "code not allowed in Abort"
        )
        if self.tag is not None:
            _bytes_of(self.tag, TAG_LEN, "tag")

    @property
    def authenticated(self) -> bool:
        return self.tag is not None

    def header(self) -> bytes:
        return join_header(MsgType.ABORT, int(self.code), self.dev_id)

    def to_bytes(self) -> bytes:
        return self.header() + (self.tag or b"")

    @classmethod
    def from_bytes(cls, data: bytes) -> Abort:
        data = _input(data)
        r = _head(data, MsgType.ABORT)
        b2 = r.u8()
        dev_id = r.take(8)
        rest = r.rest()
        if len(rest) not in (0, TAG_LEN):
            raise ParseError("abort carries nothing or an 8-byte tag")
        try:
            code = Status(b2)
        except ValueError:
            raise ParseError("unknown abort code") from None
        return _construct(cls, dev_id=dev_id, code=code, tag=rest or None)


Frame: TypeAlias = (
    Beacon
    | BeaconRequest
    | JoinRequest
    | JoinResponse
    | JoinConfirm
    | JoinDone
    | DeliveryChunk
    | DeliveryAck
    | Abort
)

_PARSERS: dict[int, type[Frame]] = {
    MsgType.BEACON: Beacon,
    MsgType.BEACON_REQUEST: BeaconRequest,
    MsgType.JOIN_REQUEST: JoinRequest,
    MsgType.JOIN_RESPONSE: JoinResponse,
    MsgType.JOIN_CONFIRM: JoinConfirm,
    MsgType.JOIN_DONE: JoinDone,
    MsgType.DELIVERY: DeliveryChunk,
    MsgType.DELIVERY_ACK: DeliveryAck,
    MsgType.ABORT: Abort,
}


def is_cbsb_frame(payload: bytes) -> bool:
    """True if a MAC payload starts with the CBSB dispatch byte (any version)."""
    return len(payload) >= 2 and payload[0] == DISPATCH


def peek_type(payload: bytes) -> MsgType | None:
    """The message type of a CBSB-1 frame from its first two bytes, without parsing the rest
    (lets a receiver skip frames it never handles cheaply); None if not a CBSB-1 frame."""
    if len(payload) < 2 or payload[0] != DISPATCH or payload[1] >> 4 != VERSION:
        return None
    try:
        return MsgType(payload[1] & 0x0F)
    except ValueError:
        return None


def parse_frame(data: bytes) -> Frame:
    """Parse any CBSB frame (a whole 802.15.4 MAC payload)."""
    data = _input(data)
    if len(data) < 2 or data[0] != DISPATCH:
        raise ParseError("not a CBSB frame")
    if data[1] >> 4 != VERSION:
        raise CbsbUnsupportedVersion(data[1] >> 4)
    parser = _PARSERS.get(data[1] & 0x0F)
    if parser is None:
        raise ParseError("unknown CBSB message type")
    return parser.from_bytes(data)


# --- delivery payload -------------------------------------------------------------------------


class ItemType(IntEnum):
    """Delivery items. Types >= 0x80 are optional (skipped if unknown); others are critical."""

    THREAD_ACTIVE_DATASET = 0x01
    THREAD_KEY_SEQUENCE = 0x02
    LINK_PARAMS = 0x03
    APP_REPORT = 0x80  # optional: where and how the thing reports its result over IP (step 9)


_OPTIONAL_ITEM = 0x80
_MESHCOP_NETWORK_KEY = 5


@dataclass(frozen=True)
class LinkParams:
    """Plain 802.15.4 network parameters (the proposal's M2 payload, for non-Thread things)."""

    LEN: ClassVar[int] = 24

    network_key: bytes = field(repr=False)
    key_seq: int
    pan_id: int
    short_addr: int = field(repr=False)
    channel: int
    lease_s: int

    def __post_init__(self) -> None:
        _bytes_of(self.network_key, 16, "network_key")
        _uint(self.key_seq, 8, "key_seq")
        _uint(self.pan_id, 16, "pan_id")
        _uint(self.short_addr, 16, "short_addr")
        _uint(self.channel, 8, "channel")
        _require(11 <= self.channel <= 26, "channel must be 11..26")
        _uint(self.lease_s, 16, "lease_s")

    def to_bytes(self) -> bytes:
        return self.network_key + struct.pack(
            ">BHHBH", self.key_seq, self.pan_id, self.short_addr, self.channel, self.lease_s
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> LinkParams:
        r = _Reader(_input(data))
        key = r.take(16)
        key_seq = r.u8()
        pan_id = r.u16()
        short = r.u16()
        channel = r.u8()
        lease = r.u16()
        r.done()
        return _construct(
            cls,
            network_key=key,
            key_seq=key_seq,
            pan_id=pan_id,
            short_addr=short,
            channel=channel,
            lease_s=lease,
        )


@dataclass(frozen=True)
class AppReport:
    """Optional delivery item 0x80: the thing reports its result to the user's app over IP once
    it is attached (draft step 9 through the border router): ``K_rep(16) ‖ app IPv6 address(16)
    ‖ UDP port(2)``. ``K_rep`` is the session's report key (gateway.wire.cbsb_notice)."""

    LEN: ClassVar[int] = 34

    key: bytes = field(repr=False)
    address: bytes
    port: int

    def __post_init__(self) -> None:
        _bytes_of(self.key, 16, "report key")
        _bytes_of(self.address, 16, "app address")
        _uint(self.port, 16, "app port")
        _require(self.port != 0, "the app port must not be 0")
        _require(self.address[0] != 0xFF and self.address != bytes(16), "the app address must "
                 "be a unicast IPv6 address")  # fmt: skip

    def to_bytes(self) -> bytes:
        return self.key + self.address + struct.pack(">H", self.port)

    @classmethod
    def from_bytes(cls, data: bytes) -> AppReport:
        r = _Reader(_input(data))
        key = r.take(16)
        addr = r.take(16)
        port = r.u16()
        r.done()
        return _construct(cls, key=key, address=addr, port=port)

    @classmethod
    def of(cls, delivery: Delivery) -> AppReport | None:
        """The item in ``delivery``, or None (absent, or malformed: the item is optional)."""
        for t, v in delivery.extra:
            if t == ItemType.APP_REPORT:
                try:
                    return cls.from_bytes(v)
                except ParseError:
                    return None
        return None


def _check_meshcop(dataset: bytes) -> None:
    """Structural check of MeshCoP TLVs: base TLVs that tile the value, a 16-byte network key."""
    pos = 0
    has_key = False
    seen: set[int] = set()
    while pos < len(dataset):
        if pos + 2 > len(dataset):
            raise ParseError("dataset TLV header truncated")
        t, n = dataset[pos], dataset[pos + 1]
        if n == 0xFF:
            raise ParseError("extended TLVs are not allowed in an operational dataset")
        if pos + 2 + n > len(dataset):
            raise ParseError("dataset TLV value truncated")
        if t in seen:
            raise ParseError("repeated dataset TLV")
        seen.add(t)
        if t == _MESHCOP_NETWORK_KEY:
            if n != 16:
                raise ParseError("network key TLV must be 16 bytes")
            has_key = True
        pos += 2 + n
    if not has_key:
        raise ParseError("dataset has no network key TLV")


@dataclass(frozen=True)
class Delivery:
    """What a thing needs to attach: items ``type(1)‖len(1)‖value`` (docs/cbsb.md §4.8)."""

    thread_dataset: bytes | None = field(default=None, repr=False)
    key_sequence: int | None = None
    link: LinkParams | None = None
    extra: tuple[tuple[int, bytes], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        _require(
            self.thread_dataset is not None or self.link is not None,
            "a delivery needs a Thread dataset or link parameters",
        )
        if self.thread_dataset is not None:
            _require(isinstance(self.thread_dataset, bytes), "dataset must be bytes")
            _require(1 <= len(self.thread_dataset) <= 254, "dataset must be 1..254 bytes")
            try:
                _check_meshcop(self.thread_dataset)
            except ParseError as exc:
                raise CbsbInvalidArgument(str(exc)) from None
        if self.key_sequence is not None:
            _uint(self.key_sequence, 32, "key_sequence")
        seen = set()
        for t, v in self.extra:
            _uint(t, 8, "item type")
            _require(t >= _OPTIONAL_ITEM, "extra items must be optional types (>= 0x80)")
            _require(t not in seen, "repeated item")
            seen.add(t)
            _require(isinstance(v, bytes) and len(v) <= 255, "item value must be <= 255 bytes")
        _require(len(self.to_bytes()) <= MAX_DELIVERY_LEN, "delivery too long")

    def to_bytes(self) -> bytes:
        out = bytearray()
        if self.thread_dataset is not None:
            out += bytes((ItemType.THREAD_ACTIVE_DATASET, len(self.thread_dataset)))
            out += self.thread_dataset
        if self.key_sequence is not None:
            out += bytes((ItemType.THREAD_KEY_SEQUENCE, 4)) + struct.pack(">I", self.key_sequence)
        if self.link is not None:
            out += bytes((ItemType.LINK_PARAMS, LinkParams.LEN)) + self.link.to_bytes()
        for t, v in self.extra:
            out += bytes((t, len(v))) + v
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Delivery:
        data = _input_delivery(data)
        r = _Reader(data)
        seen: set[int] = set()
        dataset: bytes | None = None
        key_seq: int | None = None
        link: LinkParams | None = None
        extra: list[tuple[int, bytes]] = []
        while r.remaining():
            t = r.u8()
            n = r.u8()
            v = r.take(n)
            if t in seen:
                raise ParseError("repeated delivery item")
            seen.add(t)
            if t == ItemType.THREAD_ACTIVE_DATASET:
                dataset = v
            elif t == ItemType.THREAD_KEY_SEQUENCE:
                if n != 4:
                    raise ParseError("key sequence item must be 4 bytes")
                key_seq = int.from_bytes(v, "big")
            elif t == ItemType.LINK_PARAMS:
                link = LinkParams.from_bytes(v)
            elif t >= _OPTIONAL_ITEM:
                extra.append((t, v))
            else:
                raise ParseError("unknown critical delivery item")
        return _construct(
            cls, thread_dataset=dataset, key_sequence=key_seq, link=link, extra=tuple(extra)
        )


def _input_delivery(data: object) -> bytes:
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise ParseError("delivery must be bytes")
    if len(data) > MAX_DELIVERY_LEN:
        raise ParseError("delivery too long")
    return data


def m2_first_chunk_capacity(max_payload: int = MAX_UNICAST_PAYLOAD, pfs: bool = False) -> int:
    """Bytes of delivery that fit in M2 next to its header, ``X_G``, fixed body and tag."""
    overhead = JOIN_HEADER_LEN + 4 + (32 if pfs else 0) + ResponseBody.FIXED_LEN + TAG_LEN
    return max(0, max_payload - overhead)


def delivery_chunk_capacity(max_payload: int = MAX_UNICAST_PAYLOAD) -> int:
    """Bytes of delivery per Delivery frame."""
    return max_payload - JOIN_HEADER_LEN - TAG_LEN


def split_delivery(payload: bytes, first_capacity: int, capacity: int) -> list[bytes]:
    """Chunk 0 (for M2) then Delivery chunks; raises CbsbInvalidArgument past :data:`MAX_CHUNKS`."""
    if capacity < 1 or first_capacity < 0:
        raise CbsbInvalidArgument("chunk capacities must be positive")
    if not 2 <= len(payload) <= MAX_DELIVERY_LEN:
        raise CbsbInvalidArgument("delivery length out of range")
    chunks = [payload[:first_capacity]]
    rest = payload[first_capacity:]
    while rest:
        chunks.append(rest[:capacity])
        rest = rest[capacity:]
    if len(chunks) > MAX_CHUNKS:
        raise CbsbInvalidArgument("delivery needs more than 16 chunks at this frame size")
    return chunks
