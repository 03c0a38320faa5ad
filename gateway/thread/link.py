"""The link adaptation layer between IPv6/UDP datagrams and IEEE 802.15.4 MAC frames (sans-IO).

Outbound, :func:`encode_datagram` turns an :class:`~gateway.wire.ipv6.Ipv6Packet` plus a link
destination and a link security mode into MAC data frames: IPHC-compressed (RFC 6282) and, when
the datagram does not fit one frame, split into FRAG1/FRAGN fragments (RFC 4944) that share a
datagram tag from a :class:`TagAllocator` (unique per sender, as OpenThread does). The frames
come back *unprotected*; their :class:`TxFrame.security` says how they must be secured:

* :attr:`LinkSecurity.NONE` -- sent in the clear (MLE discovery, joiner DTLS);
* :attr:`LinkSecurity.MAC` -- level 5, key id mode 1 with the Thread MAC key;
* :attr:`LinkSecurity.KEK` -- level 5, key id mode 0 with the joiner router KEK (JOIN_ENT).

The fragment sizes already leave room for the auxiliary security header and the 4-byte MIC, so
whoever applies the security (the radio service, or :func:`secure_tx_frame` on a radio owned
directly) never overflows the 127-byte PSDU.

Inbound, :class:`LinkReceiver` takes *plaintext* frames (security already removed, and said
which) and returns whole :class:`RxDatagram` values with the link information (source address,
PANs, security used, RSSI, LQI, channel). Secured and unsecured traffic are reassembled
separately and the unsecured side has small bounds, so untrusted senders cannot exhaust the
state trusted traffic needs. Time is always passed in.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field, replace
from ipaddress import IPv6Address
from typing import Final

from gateway.errors import InvalidArgument, ParseError
from gateway.wire.fragment import Reassembler, fragment, parse_lowpan_frame
from gateway.wire.ipv6 import PROTO_UDP, Ipv6Packet, UdpDatagram
from gateway.wire.lowpan import Contexts, compress, decompress
from gateway.wire.mac802154 import (
    Address,
    AuxSecurityHeader,
    ExtAddress,
    FrameType,
    MacFrame,
    ShortAddress,
    secure,
    unsecure,
)

__all__ = [
    "SECURITY_LEVEL",
    "LinkCounters",
    "LinkReceiver",
    "LinkSecurity",
    "RxDatagram",
    "TagAllocator",
    "TxFrame",
    "classify_security",
    "encode_datagram",
    "link_local",
    "peek_packet",
    "secure_tx_frame",
    "unsecure_frame",
]

SECURITY_LEVEL: Final = 5  # ENC-MIC-32, what Thread uses for every secured frame
LINK_LOCAL_PREFIX: Final = b"\xfe\x80" + bytes(6)


class LinkSecurity(enum.Enum):
    """How a frame is (to be) secured at the MAC layer."""

    NONE = "none"
    MAC = "mac"  # level 5, key id mode 1, Thread MAC key
    KEK = "kek"  # level 5, key id mode 0, joiner router KEK

    @property
    def key_id_mode(self) -> int | None:
        return {LinkSecurity.NONE: None, LinkSecurity.MAC: 1, LinkSecurity.KEK: 0}[self]


def classify_security(frame: MacFrame) -> LinkSecurity | None:
    """The :class:`LinkSecurity` of a received frame; ``None`` for anything Thread does not use
    on data (other levels, key id modes 2 and 3)."""
    sec = frame.security
    if sec is None:
        return LinkSecurity.NONE
    if sec.level != SECURITY_LEVEL:
        return None
    if sec.key_id_mode == 1:
        return LinkSecurity.MAC
    if sec.key_id_mode == 0:
        return LinkSecurity.KEK
    return None


def link_local(ext: ExtAddress) -> IPv6Address:
    """``fe80::<IID>`` of an extended address (U/L bit inverted, RFC 4944 §6)."""
    return IPv6Address(LINK_LOCAL_PREFIX + ext.iid())


class TagAllocator:
    """6LoWPAN datagram tags: a random start, then one more per fragmented datagram, so two
    datagrams in flight from this sender never share a tag."""

    def __init__(self, start: int | None = None) -> None:
        self._next = secrets.randbelow(0x10000) if start is None else start & 0xFFFF

    def next(self) -> int:
        tag = self._next
        self._next = (self._next + 1) & 0xFFFF
        return tag


@dataclass(frozen=True)
class TxFrame:
    """One MAC frame to transmit: ``frame`` is unprotected and carries no security header;
    ``security`` says what the transmitter must apply (see the module docstring)."""

    frame: MacFrame
    security: LinkSecurity = LinkSecurity.NONE

    def psdu(self) -> bytes:
        """The frame bytes without FCS (only valid for :attr:`LinkSecurity.NONE`)."""
        if self.security is not LinkSecurity.NONE:
            raise InvalidArgument("this frame must be secured before it is sent")
        return self.frame.to_bytes()


def _template_security(security: LinkSecurity, key_index: int) -> AuxSecurityHeader | None:
    if security is LinkSecurity.NONE:
        return None
    if security is LinkSecurity.MAC:
        return AuxSecurityHeader(SECURITY_LEVEL, 1, 0, b"", key_index)
    return AuxSecurityHeader(SECURITY_LEVEL, 0, 0, b"", None)


def encode_datagram(
    packet: Ipv6Packet,
    *,
    src: ExtAddress | ShortAddress,
    dst: ExtAddress | ShortAddress,
    dst_pan: int,
    src_pan: int | None = None,
    security: LinkSecurity = LinkSecurity.NONE,
    tags: TagAllocator,
    mac_key_index: int = 1,
    ack_request: bool | None = None,
    contexts: Contexts | None = None,
    max_psdu: int = MacFrame.MAX_PSDU,
) -> list[TxFrame]:
    """MAC data frames (802.15.4-2006) carrying ``packet``, fragmented when needed.

    ``src_pan`` defaults to ``dst_pan`` (PAN ID compression); a joiner's discovery request uses
    the broadcast destination PAN and its own random source PAN. ``ack_request`` defaults to
    "unicast destination". ``mac_key_index`` is only used to size the key id mode 1 header.
    """
    if isinstance(dst, ShortAddress) and dst.is_broadcast:
        ack = False if ack_request is None else ack_request
    else:
        ack = True if ack_request is None else ack_request
    template = MacFrame.create(
        FrameType.DATA,
        seq=0,
        dst=dst,
        dst_pan=dst_pan,
        src=src,
        src_pan=dst_pan if src_pan is None else src_pan,
        ack_request=ack,
        security=_template_security(security, mac_key_index),
    )
    room = template.payload_capacity(max_psdu=max_psdu)
    compressed = compress(packet, src, dst, contexts)
    pieces = [compressed] if len(compressed) <= room else None
    if pieces is None:
        try:
            pieces = fragment(compressed, max_payload=room, tag=tags.next())
        except InvalidArgument as exc:
            raise InvalidArgument(f"cannot send this datagram: {exc.message}") from None
    return [TxFrame(replace(template, security=None, payload=p), security) for p in pieces]


def secure_tx_frame(
    tx: TxFrame,
    *,
    key: bytes,
    frame_counter: int,
    ext_src: ExtAddress,
    key_index: int | None = None,
) -> MacFrame:
    """Apply the security a :class:`TxFrame` asks for, for a node that owns its radio directly
    (the reference joiner): returns the protected frame (``to_bytes()`` is the PSDU)."""
    mode = tx.security.key_id_mode
    if mode is None:
        return tx.frame
    if mode == 1 and key_index is None:
        raise InvalidArgument("key id mode 1 needs a key index")
    aux = AuxSecurityHeader(SECURITY_LEVEL, mode, frame_counter, b"", key_index if mode else None)
    return secure(replace(tx.frame, security=aux), key, ext_src=ext_src)


def unsecure_frame(frame: MacFrame, key: bytes, *, ext_src: ExtAddress | None = None) -> MacFrame:
    """Check and remove the security of a received frame (``CryptoError`` when it fails)."""
    return unsecure(frame, key, ext_src=ext_src)


@dataclass(frozen=True)
class RxDatagram:
    """A reassembled IPv6 datagram and how it arrived."""

    packet: Ipv6Packet
    src_link: ExtAddress | ShortAddress
    dst_link: Address
    src_pan: int | None
    dst_pan: int | None
    security: LinkSecurity
    rssi: int = 0
    lqi: int = 0
    channel: int = 0

    @property
    def src_ext(self) -> ExtAddress | None:
        return self.src_link if isinstance(self.src_link, ExtAddress) else None

    def udp(self) -> UdpDatagram | None:
        """The UDP datagram (checksum verified), or ``None`` for anything else or a bad one."""
        if self.packet.next_header != PROTO_UDP:
            return None
        try:
            return self.packet.udp_datagram()
        except ParseError:
            return None


def peek_packet(payload: bytes, src: Address, dst: Address) -> Ipv6Packet | None:
    """For a 6LoWPAN MAC payload that holds a whole datagram or its FRAG1: the IPv6 packet its
    header describes (for a FRAG1, with only the bytes of that fragment as payload); ``None``
    for a FRAGN, which has no header to look at. Raises :class:`ParseError` when malformed."""
    lf = parse_lowpan_frame(payload)
    if lf.fragment is not None and not lf.fragment.is_first:
        return None
    s, d = lf.link_addresses(src, dst)
    return decompress(lf.data, s, d)


@dataclass
class LinkCounters:
    frames: int = 0
    datagrams: int = 0
    not_lowpan: int = 0
    malformed: int = 0
    not_data: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class LinkReceiver:
    """Reassembles received frames into datagrams. Secured traffic (``MAC``/``KEK``) and
    unsecured traffic use separate :class:`~gateway.wire.fragment.Reassembler` objects; the
    unsecured one times out sooner (it only ever holds joiner handshakes, which the policer
    already admitted, at most 16 datagrams at once)."""

    contexts: Contexts | None = None
    secured: Reassembler = field(
        default_factory=lambda: Reassembler(timeout=5.0, max_datagrams=8, max_bytes=8 * 1280)
    )
    unsecured: Reassembler = field(
        default_factory=lambda: Reassembler(timeout=3.0, max_datagrams=16, max_bytes=16 * 1280)
    )
    counters: LinkCounters = field(default_factory=LinkCounters)

    def receive(
        self,
        frame: MacFrame,
        security: LinkSecurity,
        now: float,
        *,
        rssi: int = 0,
        lqi: int = 0,
        channel: int = 0,
    ) -> RxDatagram | None:
        """A plaintext data frame in; the datagram it completes (or ``None``) out. Anything
        malformed is counted and dropped (never raises for received bytes)."""
        self.counters.frames += 1
        if frame.frame_type != FrameType.DATA or frame.src is None or not frame.payload:
            self.counters.not_data += 1
            return None
        if frame.payload[0] < 0x40:
            self.counters.not_lowpan += 1
            return None
        reasm = self.unsecured if security is LinkSecurity.NONE else self.secured
        try:
            lf = parse_lowpan_frame(frame.payload)
            src, dst = lf.link_addresses(frame.src, frame.dst)
            data = reasm.accept(lf, src, dst, now)
            if data is None:
                return None
            size = lf.fragment.datagram_size if lf.fragment is not None else None
            packet = decompress(data, src, dst, self.contexts, datagram_size=size)
        except (ParseError, InvalidArgument):
            self.counters.malformed += 1
            return None
        if src is None:  # pragma: no cover - parse_lowpan_frame/mesh always give one
            self.counters.malformed += 1
            return None
        self.counters.datagrams += 1
        return RxDatagram(
            packet,
            src,
            dst,
            frame.source_pan,
            frame.dst_pan,
            security,
            rssi,
            lqi,
            channel,
        )

    def expire(self, now: float) -> None:
        self.secured.expire(now)
        self.unsecured.expire(now)

    def stats(self) -> dict[str, object]:
        return {
            **self.counters.as_dict(),
            "reassembly_secured": self.secured.counters.as_dict(),
            "reassembly_unsecured": self.unsecured.counters.as_dict(),
        }
