"""TMF / MeshCoP CoAP messages on top of aiocoap's message codec.

Thread management traffic (TMF, UDP 61631) and the MeshCoP commissioning messages inside the
Border Agent and joiner DTLS sessions are CoAP requests, usually POST, to two-segment URI paths
such as ``c/cp`` (fact sheet §2), with a payload of concatenated MeshCoP TLVs and no
Content-Format. Successful responses are 2.04 Changed. This module never encodes CoAP itself:
:meth:`TmfMessage.to_bytes` and :meth:`TmfMessage.from_bytes` go through
``aiocoap.Message.encode()`` / ``aiocoap.Message.decode()``; decoding adds the RFC 7252 §3
checks aiocoap leaves to its protocol layer (token length 9–15, truncated token, empty message
with content) and maps every aiocoap or codec failure to :class:`~gateway.errors.ParseError`.

:class:`TmfMessage` is a frozen value (aiocoap messages are mutable); :meth:`to_aiocoap` gives a
request for aiocoap's own client contexts.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import aiocoap
import aiocoap.error
from aiocoap import optiontypes
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.numbers.types import Type

from gateway.errors import InvalidArgument, ParseError
from gateway.wire.meshcop import MeshcopTlv, decode_meshcop_tlvs, encode_meshcop_tlvs
from gateway.wire.tlv import Tlv, check_uint

__all__ = [
    "COMMISSIONING_URIS",
    "TMF_PORT",
    "CoapCode",
    "MessageType",
    "TmfMessage",
    "TmfUri",
    "empty_ack",
    "new_token",
    "tmf_request",
    "tmf_response",
]

TMF_PORT = 61631
TOKEN_LENGTH = 2
"""OpenThread's default token length (``OT_COAP_DEFAULT_TOKEN_LENGTH``)."""


class MessageType(IntEnum):
    CON = 0
    NON = 1
    ACK = 2
    RST = 3


class CoapCode(IntEnum):
    """The CoAP codes TMF uses (class << 5 | detail)."""

    EMPTY = 0
    GET = 1
    POST = 2
    PUT = 3
    DELETE = 4
    CREATED = 0x41
    DELETED = 0x42
    VALID = 0x43
    CHANGED = 0x44
    CONTENT = 0x45
    BAD_REQUEST = 0x80
    UNAUTHORIZED = 0x81
    BAD_OPTION = 0x82
    FORBIDDEN = 0x83
    NOT_FOUND = 0x84
    METHOD_NOT_ALLOWED = 0x85
    NOT_ACCEPTABLE = 0x86
    REQUEST_ENTITY_INCOMPLETE = 0x88
    PRECONDITION_FAILED = 0x8C
    REQUEST_ENTITY_TOO_LARGE = 0x8D
    UNSUPPORTED_CONTENT_FORMAT = 0x8F
    INTERNAL_SERVER_ERROR = 0xA0
    NOT_IMPLEMENTED = 0xA1
    SERVICE_UNAVAILABLE = 0xA3


class TmfUri(StrEnum):
    """TMF / MeshCoP URI paths (OpenThread ``src/core/thread/uri_paths.cpp``; CCM extras from
    ot-commissioner ``src/library/uri.hpp``)."""

    ADDRESS_ERROR = "a/ae"
    ADDRESS_NOTIFY = "a/an"
    ADDRESS_QUERY = "a/aq"
    ADDRESS_RELEASE = "a/ar"
    ADDRESS_SOLICIT = "a/as"
    SERVER_DATA = "a/sd"
    ANYCAST_LOCATE = "a/yl"
    BACKBONE_ANSWER = "b/ba"
    BACKBONE_MLR = "b/bmr"
    BACKBONE_QUERY = "b/bq"
    MGMT_ANNOUNCE_BEGIN = "c/ab"
    MGMT_ACTIVE_GET = "c/ag"
    MGMT_ACTIVE_REPLACE = "c/ar"
    MGMT_ACTIVE_SET = "c/as"
    COMM_KA = "c/ca"
    MGMT_COMMISSIONER_GET = "c/cg"
    COMM_PET = "c/cp"
    MGMT_COMMISSIONER_SET = "c/cs"
    MGMT_DATASET_CHANGED = "c/dc"
    MGMT_ED_REPORT = "c/er"
    MGMT_ED_SCAN = "c/es"
    JOIN_ENT = "c/je"
    JOIN_FIN = "c/jf"
    LEAD_KA = "c/la"
    LEAD_PET = "c/lp"
    MGMT_PANID_CONFLICT = "c/pc"
    MGMT_PENDING_GET = "c/pg"
    MGMT_PANID_QUERY = "c/pq"
    MGMT_PENDING_SET = "c/ps"
    RLY_RX = "c/rx"
    RLY_TX = "c/tx"
    UDP_RX = "c/ur"
    UDP_TX = "c/ut"
    DIAG_ANSWER = "d/da"
    DIAG_GET = "d/dg"
    DIAG_QUERY = "d/dq"
    DIAG_RESET = "d/dr"
    DUA_NOTIFY = "n/dn"
    DUA_REQUEST = "n/dr"
    MLR = "n/mr"
    # Thread 1.2+/CCM, known to ot-commissioner
    MGMT_GET = "c/mg"
    MGMT_SET = "c/ms"
    MGMT_BBR_GET = "c/bg"
    MGMT_BBR_SET = "c/bs"
    MGMT_REENROLL = "c/re"
    MGMT_DOMAIN_RESET = "c/rt"
    MGMT_NET_MIGRATE = "c/nm"
    MGMT_SEC_PENDING_SET = "c/sp"
    JOIN_APP = "c/ja"

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.value.split("/"))


COMMISSIONING_URIS: frozenset[TmfUri] = frozenset(
    {
        TmfUri.COMM_PET,
        TmfUri.COMM_KA,
        TmfUri.LEAD_PET,
        TmfUri.LEAD_KA,
        TmfUri.RLY_RX,
        TmfUri.RLY_TX,
        TmfUri.JOIN_FIN,
        TmfUri.JOIN_ENT,
        TmfUri.JOIN_APP,
        TmfUri.MGMT_ACTIVE_GET,
        TmfUri.MGMT_ACTIVE_SET,
        TmfUri.MGMT_ACTIVE_REPLACE,
        TmfUri.MGMT_PENDING_GET,
        TmfUri.MGMT_PENDING_SET,
        TmfUri.MGMT_COMMISSIONER_GET,
        TmfUri.MGMT_COMMISSIONER_SET,
        TmfUri.MGMT_DATASET_CHANGED,
        TmfUri.UDP_TX,
        TmfUri.UDP_RX,
    }
)
"""The URIs of the commissioning flows of fact sheet §2.3."""

_DECODE_ERRORS = (
    aiocoap.error.Error,
    InvalidArgument,
    ValueError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    OverflowError,
)


@dataclass(frozen=True, slots=True)
class TmfMessage:
    """A CoAP message as TMF uses it.

    ``options`` keeps every option other than Uri-Path as ``(number, raw value)`` in order, so
    decode and encode round-trip. ``payload`` is raw; :meth:`tlvs` decodes it as MeshCoP TLVs.
    """

    mtype: MessageType
    code: int
    mid: int
    token: bytes = b""
    uri_path: tuple[str, ...] = ()
    payload: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mtype", MessageType(self.mtype))
        except ValueError as exc:
            raise InvalidArgument(f"CoAP message type {self.mtype!r} is not 0..3") from exc
        check_uint(self.code, 8, "CoAP code")
        check_uint(self.mid, 16, "message ID")
        object.__setattr__(self, "token", bytes(self.token))
        if len(self.token) > 8:
            raise InvalidArgument("a CoAP token is at most 8 bytes")
        object.__setattr__(self, "uri_path", tuple(self.uri_path))
        object.__setattr__(self, "payload", bytes(self.payload))
        object.__setattr__(self, "options", tuple((n, bytes(v)) for n, v in self.options))

    @property
    def uri(self) -> str:
        """The path as ``"c/cp"``."""
        return "/".join(self.uri_path)

    @property
    def tmf_uri(self) -> TmfUri | None:
        """The known TMF URI, or None."""
        try:
            return TmfUri(self.uri)
        except ValueError:
            return None

    @property
    def is_request(self) -> bool:
        return 1 <= self.code <= 31

    @property
    def is_response(self) -> bool:
        return self.code >= 64

    @property
    def code_text(self) -> str:
        """Dotted form, e.g. ``"2.04"``."""
        return f"{self.code >> 5}.{self.code & 0x1F:02d}"

    def tlvs(self) -> tuple[MeshcopTlv | Tlv, ...]:
        """The payload as MeshCoP TLVs (:class:`ParseError` if malformed)."""
        return decode_meshcop_tlvs(self.payload)

    def to_aiocoap(self) -> Any:
        """An outgoing ``aiocoap.Message`` with these fields."""
        msg = aiocoap.Message(code=Code(self.code), payload=self.payload)
        msg.mtype = Type(int(self.mtype))
        msg.mid = self.mid
        msg.token = self.token
        if self.uri_path:
            msg.opt.uri_path = self.uri_path
        for number, value in self.options:
            msg.opt.add_option(optiontypes.OpaqueOption(OptionNumber(number), value))
        return msg

    def to_bytes(self) -> bytes:
        data: bytes = self.to_aiocoap().encode()
        return data

    @classmethod
    def from_aiocoap(cls, msg: Any) -> TmfMessage:
        """From a (decoded or built) ``aiocoap.Message``; :class:`ParseError` if unusable."""
        try:
            uri: list[str] = []
            others: list[tuple[int, bytes]] = []
            for opt in msg.opt.option_list():
                number = int(opt.number)
                check_uint(number, 16, "CoAP option number")  # deltas can sum past 65535
                if number == OptionNumber.URI_PATH:
                    uri.append(opt.value)
                else:
                    others.append((number, bytes(opt.encode())))
            return cls(
                MessageType(int(msg.mtype)),
                int(msg.code),
                int(msg.mid),
                bytes(msg.token),
                tuple(uri),
                bytes(msg.payload),
                tuple(others),
            )
        except _DECODE_ERRORS as exc:
            raise ParseError(f"unusable CoAP message: {exc}") from exc

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> TmfMessage:
        """Decode a CoAP datagram with aiocoap; :class:`ParseError` on anything malformed."""
        buf = bytes(data)
        if len(buf) < 4:
            raise ParseError("CoAP message shorter than its 4-byte header")
        tkl = buf[0] & 0x0F
        if tkl > 8:
            raise ParseError(f"CoAP token length {tkl} is reserved")
        if len(buf) < 4 + tkl:
            raise ParseError("CoAP token truncated")
        if buf[1] == 0 and (tkl or len(buf) > 4):
            raise ParseError("empty CoAP message with a token, options or payload")
        try:
            msg = aiocoap.Message.decode(buf)
        except _DECODE_ERRORS as exc:
            raise ParseError(f"malformed CoAP message: {exc}") from exc
        return cls.from_aiocoap(msg)


def new_token(rng: secrets.SystemRandom | None = None, length: int = TOKEN_LENGTH) -> bytes:
    """A random token (2 bytes, like OpenThread)."""
    r = rng if rng is not None else secrets.SystemRandom()
    return r.randbytes(length)


def tmf_request(
    uri: TmfUri | str,
    tlvs: Iterable[MeshcopTlv | Tlv] = (),
    *,
    mid: int,
    token: bytes,
    confirmable: bool = True,
    code: int = CoapCode.POST,
) -> TmfMessage:
    """A TMF request (POST by default) carrying MeshCoP TLVs. Notifications such as RLY_RX,
    RLY_TX, UDP_TX and UDP_RX are NON (``confirmable=False``)."""
    path = TmfUri(uri).path if isinstance(uri, TmfUri) else tuple(str(uri).strip("/").split("/"))
    return TmfMessage(
        MessageType.CON if confirmable else MessageType.NON,
        code,
        mid,
        token,
        path,
        encode_meshcop_tlvs(tlvs),
    )


def tmf_response(
    request: TmfMessage,
    tlvs: Iterable[MeshcopTlv | Tlv] = (),
    *,
    code: int = CoapCode.CHANGED,
    mid: int | None = None,
    separate: bool = False,
) -> TmfMessage:
    """The response to ``request``: a piggy-backed ACK (same MID and token) for a CON request,
    unless ``separate``; a NON with a fresh ``mid`` otherwise (OpenThread's Border Agent answers
    COMM_PET and COMM_KA this way after an :func:`empty_ack`)."""
    payload = encode_meshcop_tlvs(tlvs)
    if request.mtype == MessageType.CON and not separate:
        return TmfMessage(MessageType.ACK, code, request.mid, request.token, (), payload)
    if mid is None:
        raise InvalidArgument("a separate or NON response needs its own message ID")
    return TmfMessage(MessageType.NON, code, mid, request.token, (), payload)


def empty_ack(request: TmfMessage) -> TmfMessage:
    """The empty ACK that precedes a separate response."""
    return TmfMessage(MessageType.ACK, CoapCode.EMPTY, request.mid)
