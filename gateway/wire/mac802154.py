"""IEEE 802.15.4 MAC frames: 2003/2006 and 2015 frame versions as Thread uses them.

Sans-IO: :meth:`MacFrame.from_bytes` parses a PSDU (with or without its FCS, say which),
:meth:`MacFrame.to_bytes` builds one, :func:`secure` / :func:`unsecure` apply and remove CCM*
frame security (all security levels 0..7, key id modes 0..3, Thread nonce).

Conventions (see docs/wire-mac-6lowpan.md):

* Extended addresses are held in **canonical big-endian order** (the order OpenThread's CLI and
  Wireshark print, e.g. ``d6bffa0cbba1b012``). On air they are little-endian; the codec reverses.
  Short addresses and PAN IDs are plain ints (little-endian on air).
* ``dst_pan`` / ``src_pan`` are the PAN ID fields *as present on air* (``None`` = field absent),
  and ``pan_id_compression`` is the FCF bit. Their combination is checked against the 2006 rule or
  the 2015 table (IEEE 802.15.4-2015 Table 7-2) at construction. :meth:`MacFrame.create` computes
  them from logical PAN IDs; :attr:`MacFrame.source_pan` gives the logical source PAN.
* ``payload`` is the MAC payload. For command frames it starts with the command identifier; for
  2015 frames with payload IEs it starts with them (see :func:`split_payload_ies`).
* A frame with an auxiliary security header is either ``protected`` (payload as on air, MIC in
  ``mic``) or not (plaintext payload, no MIC). The parser returns protected frames;
  :func:`unsecure` returns the plaintext view, :func:`secure` the protected one. ``to_bytes``
  refuses an unprotected frame that has a security header, so plaintext never leaves by accident.
* Parsing is lossless: ``MacFrame.from_bytes(b).to_bytes() == b`` for every accepted ``b``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar, Final, TypeAlias

from drivers.errors import InvalidArgument
from drivers.fcs import crc16_kermit
from drivers.fcs import fcs as _fcs
from drivers.mac_header import ADDR_EXT as _ADDR_EXT
from drivers.mac_header import ADDR_NONE as _ADDR_NONE
from drivers.mac_header import ADDR_SHORT as _ADDR_SHORT
from drivers.mac_header import HeaderError, pan_presence, parse_header
from gateway.errors import CryptoError, ParseError
from gateway.wire.ccm_star import (
    ccm_star_decrypt,
    ccm_star_encrypt,
    level_encrypts,
    level_mic_length,
    make_nonce,
)

__all__ = [
    "Address",
    "AuxSecurityHeader",
    "BROADCAST",
    "ExtAddress",
    "FrameType",
    "FrameVersion",
    "HeaderIE",
    "KeyLookup",
    "MacCommand",
    "MacFrame",
    "PayloadIE",
    "ShortAddress",
    "build_header_ies",
    "build_payload_ies",
    "pan_id_fields",
    "parse_header_ies",
    "parse_payload_ies",
    "secure",
    "split_payload_ies",
    "unsecure",
]


class FrameType(enum.IntEnum):
    BEACON = 0
    DATA = 1
    ACK = 2
    COMMAND = 3


class FrameVersion(enum.IntEnum):
    V2003 = 0
    V2006 = 1
    V2015 = 2


class MacCommand(enum.IntEnum):
    """MAC command identifiers (IEEE 802.15.4-2006 Table 82) Thread devices meet."""

    ASSOCIATION_REQUEST = 0x01
    ASSOCIATION_RESPONSE = 0x02
    DISASSOCIATION_NOTIFICATION = 0x03
    DATA_REQUEST = 0x04
    PAN_ID_CONFLICT = 0x05
    ORPHAN_NOTIFICATION = 0x06
    BEACON_REQUEST = 0x07
    COORDINATOR_REALIGNMENT = 0x08
    GTS_REQUEST = 0x09


@dataclass(frozen=True, slots=True)
class ShortAddress:
    """A 16-bit short address (0xFFFF is broadcast, 0xFFFE means "use the extended address")."""

    value: int

    def __post_init__(self) -> None:
        if not isinstance(self.value, int) or not 0 <= self.value <= 0xFFFF:
            raise InvalidArgument(f"short address must be 0..0xffff, not {self.value!r}")

    @property
    def is_broadcast(self) -> bool:
        return self.value == 0xFFFF

    def to_air(self) -> bytes:
        return self.value.to_bytes(2, "little")

    def __str__(self) -> str:
        return f"0x{self.value:04x}"

    def __repr__(self) -> str:
        return f"ShortAddress(0x{self.value:04x})"


@dataclass(frozen=True, slots=True)
class ExtAddress:
    """A 64-bit extended address, ``octets`` in canonical big-endian order (as printed)."""

    octets: bytes

    def __post_init__(self) -> None:
        if len(self.octets) != 8:
            raise InvalidArgument("an extended address is 8 bytes")
        object.__setattr__(self, "octets", bytes(self.octets))

    @classmethod
    def from_hex(cls, text: str) -> ExtAddress:
        try:
            raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
        except ValueError:
            raise InvalidArgument("extended address must be 16 hex digits") from None
        return cls(raw)

    @classmethod
    def from_int(cls, value: int) -> ExtAddress:
        return cls(value.to_bytes(8, "big"))

    @classmethod
    def from_air(cls, raw: bytes) -> ExtAddress:
        """From the little-endian on-air byte order."""
        return cls(bytes(reversed(raw)))

    def to_air(self) -> bytes:
        return self.octets[::-1]

    def hex(self) -> str:
        return self.octets.hex()

    def __int__(self) -> int:
        return int.from_bytes(self.octets, "big")

    def iid(self) -> bytes:
        """IPv6 interface identifier: the address with the U/L bit inverted (RFC 4944 §6)."""
        return bytes((self.octets[0] ^ 0x02,)) + self.octets[1:]

    @classmethod
    def from_iid(cls, iid: bytes) -> ExtAddress:
        if len(iid) != 8:
            raise InvalidArgument("an interface identifier is 8 bytes")
        return cls(bytes((iid[0] ^ 0x02,)) + bytes(iid[1:]))

    def __str__(self) -> str:
        return self.octets.hex()

    def __repr__(self) -> str:
        return f"ExtAddress('{self.octets.hex()}')"


Address: TypeAlias = ShortAddress | ExtAddress | None
BROADCAST: Final = ShortAddress(0xFFFF)


def _addr_mode(addr: Address) -> int:
    if addr is None:
        return _ADDR_NONE
    if isinstance(addr, ShortAddress):
        return _ADDR_SHORT
    if isinstance(addr, ExtAddress):
        return _ADDR_EXT
    raise InvalidArgument(f"not a MAC address: {addr!r}")


def pan_id_fields(
    version: FrameVersion | int,
    dst: Address,
    src: Address,
    dst_pan: int | None,
    src_pan: int | None,
) -> tuple[int | None, int | None, bool]:
    """From logical PAN IDs to the on-air ``(dst_pan, src_pan, pan_id_compression)``.

    Follows the usual transmit rules (OpenThread ``Frame::InitMacHeader``): compress when both
    addresses are present and the PANs are equal; in 2015 frames ext/ext pairs carry at most the
    destination PAN, and a frame with a single address may omit its PAN (pass ``None``).
    """
    dm, sm = _addr_mode(dst), _addr_mode(src)
    if version < FrameVersion.V2015:
        if dm != _ADDR_NONE and dst_pan is None:
            raise InvalidArgument("a destination address needs a destination PAN ID")
        if sm != _ADDR_NONE and src_pan is None:
            raise InvalidArgument("a source address needs a source PAN ID")
        if dm != _ADDR_NONE and sm != _ADDR_NONE and dst_pan == src_pan:
            return dst_pan, None, True
        return (
            dst_pan if dm != _ADDR_NONE else None,
            src_pan if sm != _ADDR_NONE else None,
            False,
        )
    if dm == _ADDR_NONE and sm == _ADDR_NONE:
        return dst_pan, None, dst_pan is not None
    if sm == _ADDR_NONE:
        return dst_pan, None, dst_pan is None
    if dm == _ADDR_NONE:
        return None, src_pan, src_pan is None
    if dm == _ADDR_EXT and sm == _ADDR_EXT:
        return dst_pan, None, dst_pan is None
    if dst_pan is None:
        raise InvalidArgument("this address combination needs a destination PAN ID")
    if src_pan is None or src_pan == dst_pan:
        return dst_pan, None, True
    return dst_pan, src_pan, False


@dataclass(frozen=True, slots=True)
class AuxSecurityHeader:
    """Auxiliary security header.

    ``flags`` holds security-control bits 5..7 as a 3-bit value: in 2015 frames bit 5 is Frame
    Counter Suppression (then ``frame_counter`` is ``None``) and bit 6 ASN-in-Nonce (TSCH); in
    2003/2006 frames they are reserved and kept as received.
    """

    level: int
    key_id_mode: int = 0
    frame_counter: int | None = 0
    key_source: bytes = b""
    key_index: int | None = None
    flags: int = 0

    KEY_SOURCE_LENGTHS: ClassVar[tuple[int, int, int, int]] = (0, 0, 4, 8)

    def __post_init__(self) -> None:
        if not 0 <= self.level <= 7:
            raise InvalidArgument("security level must be 0..7")
        if not 0 <= self.key_id_mode <= 3:
            raise InvalidArgument("key id mode must be 0..3")
        if not 0 <= self.flags <= 7:
            raise InvalidArgument("security control flags are 3 bits")
        if self.frame_counter is not None and not 0 <= self.frame_counter <= 0xFFFFFFFF:
            raise InvalidArgument("frame counter must fit 32 bits")
        if len(self.key_source) != self.KEY_SOURCE_LENGTHS[self.key_id_mode]:
            raise InvalidArgument(
                f"key id mode {self.key_id_mode} needs a "
                f"{self.KEY_SOURCE_LENGTHS[self.key_id_mode]}-byte key source"
            )
        if (self.key_id_mode == 0) != (self.key_index is None):
            raise InvalidArgument("key index is required for key id modes 1..3 and only then")
        if self.key_index is not None and not 0 <= self.key_index <= 0xFF:
            raise InvalidArgument("key index must be 0..255")
        object.__setattr__(self, "key_source", bytes(self.key_source))

    @property
    def mic_length(self) -> int:
        return level_mic_length(self.level)

    @property
    def encrypts(self) -> bool:
        return level_encrypts(self.level)

    @property
    def control(self) -> int:
        return self.level | (self.key_id_mode << 3) | (self.flags << 5)

    def to_bytes(self) -> bytes:
        out = bytearray((self.control,))
        if self.frame_counter is not None:
            out += self.frame_counter.to_bytes(4, "little")
        out += self.key_source
        if self.key_index is not None:
            out.append(self.key_index)
        return bytes(out)

    @classmethod
    def parse(cls, data: bytes, pos: int, version: int) -> tuple[AuxSecurityHeader, int]:
        if pos >= len(data):
            raise ParseError("truncated auxiliary security header")
        control = data[pos]
        pos += 1
        level, mode, flags = control & 7, (control >> 3) & 3, control >> 5
        counter: int | None = None
        if not (version >= FrameVersion.V2015 and flags & 1):
            if pos + 4 > len(data):
                raise ParseError("truncated frame counter")
            counter = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        src_len = cls.KEY_SOURCE_LENGTHS[mode]
        need = src_len + (1 if mode else 0)
        if pos + need > len(data):
            raise ParseError("truncated key identifier")
        source = data[pos : pos + src_len]
        index = data[pos + src_len] if mode else None
        return cls(level, mode, counter, source, index, flags), pos + need


@dataclass(frozen=True, slots=True)
class HeaderIE:
    element_id: int
    content: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.element_id <= 0xFF or len(self.content) > 0x7F:
            raise InvalidArgument("header IE id is 8 bits, content at most 127 bytes")


@dataclass(frozen=True, slots=True)
class PayloadIE:
    group_id: int
    content: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.group_id <= 0xF or len(self.content) > 0x7FF:
            raise InvalidArgument("payload IE group is 4 bits, content at most 2047 bytes")


HT1: Final = 0x7E  # header termination 1: payload IEs follow
HT2: Final = 0x7F  # header termination 2: payload follows, no payload IEs
PAYLOAD_TERMINATION: Final = 0xF


def _scan_header_ies(data: bytes, pos: int, end: int) -> int:
    """End position of the header IE list starting at ``pos`` (stops after a termination IE)."""
    if pos >= end:
        raise ParseError("IE present but no header IE")
    while pos < end:
        if pos + 2 > end:
            raise ParseError("truncated header IE descriptor")
        desc = data[pos] | (data[pos + 1] << 8)
        length, element = desc & 0x7F, (desc >> 7) & 0xFF
        pos += 2 + length
        if pos > end:
            raise ParseError("header IE runs past the frame")
        if element in (HT1, HT2):
            break
    return pos


def parse_header_ies(raw: bytes) -> tuple[HeaderIE, ...]:
    """Split raw header IE bytes (as in :attr:`MacFrame.header_ies`) into elements."""
    out: list[HeaderIE] = []
    pos = 0
    while pos < len(raw):
        if pos + 2 > len(raw):
            raise ParseError("truncated header IE descriptor")
        desc = raw[pos] | (raw[pos + 1] << 8)
        length, element = desc & 0x7F, (desc >> 7) & 0xFF
        if pos + 2 + length > len(raw):
            raise ParseError("header IE runs past its list")
        out.append(HeaderIE(element, raw[pos + 2 : pos + 2 + length]))
        pos += 2 + length
    return tuple(out)


def build_header_ies(ies: tuple[HeaderIE, ...] | list[HeaderIE]) -> bytes:
    out = bytearray()
    for ie in ies:
        desc = len(ie.content) | (ie.element_id << 7)
        out += desc.to_bytes(2, "little") + ie.content
    return bytes(out)


def parse_payload_ies(raw: bytes) -> tuple[tuple[PayloadIE, ...], bytes]:
    """Payload IEs at the start of ``raw`` up to the termination IE (group 0xF) or the end;
    returns ``(ies, rest)``."""
    out: list[PayloadIE] = []
    pos = 0
    while pos < len(raw):
        if pos + 2 > len(raw):
            raise ParseError("truncated payload IE descriptor")
        desc = raw[pos] | (raw[pos + 1] << 8)
        length, group = desc & 0x7FF, (desc >> 11) & 0xF
        if pos + 2 + length > len(raw):
            raise ParseError("payload IE runs past the payload")
        out.append(PayloadIE(group, raw[pos + 2 : pos + 2 + length]))
        pos += 2 + length
        if group == PAYLOAD_TERMINATION:
            break
    return tuple(out), raw[pos:]


def build_payload_ies(ies: tuple[PayloadIE, ...] | list[PayloadIE]) -> bytes:
    out = bytearray()
    for ie in ies:
        desc = len(ie.content) | (ie.group_id << 11) | 0x8000
        out += desc.to_bytes(2, "little") + ie.content
    return bytes(out)


def _beacon_open_length(payload: bytes) -> int:
    """Length of a 2003/2006 beacon's superframe spec, GTS and pending address fields."""
    pos = 2
    if pos >= len(payload):
        raise ParseError("truncated beacon GTS specification")
    gts_count = payload[pos] & 7
    pos += 1
    if gts_count:
        pos += 1 + 3 * gts_count
    if pos >= len(payload):
        raise ParseError("truncated beacon pending address specification")
    spec = payload[pos]
    pos += 1 + 2 * (spec & 7) + 8 * ((spec >> 4) & 7)
    if pos > len(payload):
        raise ParseError("truncated beacon pending address list")
    return pos


@dataclass(frozen=True)
class MacFrame:
    """One IEEE 802.15.4 MAC frame (MHR, payload, MIC; the FCS is added/checked on request)."""

    frame_type: FrameType
    seq: int | None = 0
    dst_pan: int | None = None
    dst: Address = None
    src_pan: int | None = None
    src: Address = None
    payload: bytes = b""
    version: FrameVersion = FrameVersion.V2006
    pan_id_compression: bool = False
    ack_request: bool = False
    frame_pending: bool = False
    security: AuxSecurityHeader | None = None
    protected: bool = False
    mic: bytes = b""
    header_ies: bytes = b""
    fcf_reserved: int = 0

    MAX_PSDU: ClassVar[int] = 127

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "frame_type", FrameType(self.frame_type))
            object.__setattr__(self, "version", FrameVersion(self.version))
        except ValueError:
            raise InvalidArgument("unsupported frame type or version") from None
        object.__setattr__(self, "payload", bytes(self.payload))
        object.__setattr__(self, "mic", bytes(self.mic))
        object.__setattr__(self, "header_ies", bytes(self.header_ies))
        if self.seq is None:
            if self.version != FrameVersion.V2015:
                raise InvalidArgument("sequence number suppression needs a 2015 frame")
        elif not 0 <= self.seq <= 0xFF:
            raise InvalidArgument("sequence number must be 0..255")
        dm, sm = _addr_mode(self.dst), _addr_mode(self.src)
        want_dst, want_src = pan_presence(self.version, dm, sm, self.pan_id_compression)
        if (self.dst_pan is not None) != want_dst or (self.src_pan is not None) != want_src:
            raise InvalidArgument(
                "PAN ID fields do not match the addressing modes and PAN ID compression "
                "(use MacFrame.create or pan_id_fields)"
            )
        for pan in (self.dst_pan, self.src_pan):
            if pan is not None and not 0 <= pan <= 0xFFFF:
                raise InvalidArgument("PAN ID must be 0..0xffff")
        if self.frame_type == FrameType.COMMAND and not self.payload:
            raise InvalidArgument("a command frame starts with its command identifier")
        if self.header_ies and self.version != FrameVersion.V2015:
            raise InvalidArgument("header IEs need a 2015 frame")
        allowed = 0x0080 if self.version == FrameVersion.V2015 else 0x0380
        if self.fcf_reserved & ~allowed:
            raise InvalidArgument("fcf_reserved holds only reserved frame control bits")
        if self.security is None:
            if self.protected or self.mic:
                raise InvalidArgument("protected / mic need a security header")
        else:
            if self.version < FrameVersion.V2015 and self.security.frame_counter is None:
                raise InvalidArgument("frame counter suppression needs a 2015 frame")
            if self.version == FrameVersion.V2015 and (
                (self.security.frame_counter is None) != bool(self.security.flags & 1)
            ):
                raise InvalidArgument("frame counter presence disagrees with its flag")
            want_mic = self.security.mic_length if self.protected else 0
            if len(self.mic) != want_mic:
                raise InvalidArgument(f"mic must be {want_mic} bytes")

    # -- construction helpers ------------------------------------------------------------

    @classmethod
    def create(
        cls,
        frame_type: FrameType,
        *,
        seq: int | None = 0,
        dst: Address = None,
        dst_pan: int | None = None,
        src: Address = None,
        src_pan: int | None = None,
        payload: bytes = b"",
        version: FrameVersion = FrameVersion.V2006,
        ack_request: bool = False,
        frame_pending: bool = False,
        security: AuxSecurityHeader | None = None,
        header_ies: bytes = b"",
    ) -> MacFrame:
        """A frame from logical addressing: PAN ID compression is worked out for you."""
        on_dst, on_src, comp = pan_id_fields(version, dst, src, dst_pan, src_pan)
        return cls(
            frame_type,
            seq,
            on_dst,
            dst,
            on_src,
            src,
            payload,
            version,
            comp,
            ack_request,
            frame_pending,
            security,
            False,
            b"",
            header_ies,
        )

    @classmethod
    def imm_ack(
        cls, seq: int, *, frame_pending: bool = False, version: FrameVersion = FrameVersion.V2006
    ) -> MacFrame:
        """An Imm-Ack (OpenThread's simulation sends ``12 10 <seq>``: 2006, frame pending)."""
        return cls(FrameType.ACK, seq, version=version, frame_pending=frame_pending)

    # -- derived fields -------------------------------------------------------------------

    @property
    def source_pan(self) -> int | None:
        """The source PAN ID after PAN ID compression is undone (``None`` if unknown)."""
        if self.src_pan is not None:
            return self.src_pan
        if self.src is None:
            return None
        return self.dst_pan

    @property
    def destination_pan(self) -> int | None:
        return self.dst_pan

    @property
    def command_id(self) -> int | None:
        """Command identifier of a command frame (``None`` when not readable: encrypted 2015)."""
        if self.frame_type != FrameType.COMMAND:
            return None
        encrypted = self.protected and self.security is not None and self.security.encrypts
        if self.version == FrameVersion.V2015 and encrypted:
            return None
        body = self.payload
        if self.version == FrameVersion.V2015 and self.header_ies:
            last = parse_header_ies(self.header_ies)[-1]
            if last.element_id == HT1:
                _ies, body = parse_payload_ies(body)
        return body[0] if body else None

    @property
    def frame_control(self) -> int:
        fcf = int(self.frame_type) | (int(self.version) << 12) | self.fcf_reserved
        fcf |= 0x0008 if self.security is not None else 0
        fcf |= 0x0010 if self.frame_pending else 0
        fcf |= 0x0020 if self.ack_request else 0
        fcf |= 0x0040 if self.pan_id_compression else 0
        if self.version == FrameVersion.V2015:
            fcf |= 0x0100 if self.seq is None else 0
            fcf |= 0x0200 if self.header_ies else 0
        fcf |= _addr_mode(self.dst) << 10
        fcf |= _addr_mode(self.src) << 14
        return fcf

    def header_bytes(self) -> bytes:
        """The MHR: frame control, sequence number, addressing, aux security header, header IEs."""
        out = bytearray(self.frame_control.to_bytes(2, "little"))
        if self.seq is not None:
            out.append(self.seq)
        if self.dst_pan is not None:
            out += self.dst_pan.to_bytes(2, "little")
        if self.dst is not None:
            out += self.dst.to_air()
        if self.src_pan is not None:
            out += self.src_pan.to_bytes(2, "little")
        if self.src is not None:
            out += self.src.to_air()
        if self.security is not None:
            out += self.security.to_bytes()
        out += self.header_ies
        return bytes(out)

    def payload_capacity(self, *, max_psdu: int = 127) -> int:
        """Payload bytes that fit one PSDU of ``max_psdu`` with this header, MIC and FCS."""
        mic = self.security.mic_length if self.security is not None else 0
        return max_psdu - 2 - len(self.header_bytes()) - mic

    def open_payload_length(self) -> int:
        """Bytes at the start of the payload that security authenticates but never encrypts:
        the command id of 2003/2006 command frames, the superframe/GTS/pending fields of
        2003/2006 beacons (IEEE 802.15.4-2006 7.5.8.2.1, OpenThread ``ParseInfo``)."""
        if self.version == FrameVersion.V2015:
            return 0
        if self.frame_type == FrameType.COMMAND:
            if not self.payload:
                raise ParseError("command frame without a command identifier")
            return 1
        if self.frame_type == FrameType.BEACON:
            return _beacon_open_length(self.payload)
        return 0

    def to_bytes(self, *, fcs: bool = False) -> bytes:
        """The PSDU; with ``fcs=True`` the CRC-16/KERMIT FCS is appended."""
        if self.security is not None and not self.protected:
            raise InvalidArgument("frame has a security header but is not secured: call secure()")
        body = self.header_bytes() + self.payload + self.mic
        return body + _fcs(body) if fcs else body

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, fcs: bool = False) -> MacFrame:
        """Parse a PSDU. With ``fcs=True`` the last two bytes are the FCS, which must check."""
        raw = bytes(data)
        if fcs:
            if len(raw) < 2:
                raise ParseError("frame shorter than its FCS")
            if crc16_kermit(raw) != 0:
                raise ParseError("bad FCS")
            raw = raw[:-2]
        if len(raw) < 2:
            raise ParseError("frame shorter than its frame control field")
        fcf = raw[0] | (raw[1] << 8)
        ftype = fcf & 7
        if ftype > FrameType.COMMAND:
            raise ParseError(f"unsupported frame type {ftype}")
        version = (fcf >> 12) & 3
        if version > FrameVersion.V2015:
            raise ParseError("reserved frame version")
        try:
            h = parse_header(raw)
        except HeaderError as exc:
            raise ParseError(str(exc)) from None
        is2015 = version == FrameVersion.V2015
        ie_present = is2015 and bool(fcf & 0x0200)
        reserved = fcf & (0x0080 if is2015 else 0x0380)
        comp, seq, pos, end = h.pan_id_compression, h.seq, h.length, len(raw)

        def addr(a: int | bytes | None) -> Address:
            if isinstance(a, bytes):
                return ExtAddress(a)
            return None if a is None else ShortAddress(a)

        dst_pan, dst = h.dst_pan, addr(h.dst_addr)
        src_pan = None if h.src_pan_elided else h.src_pan
        src = addr(h.src_addr)
        security: AuxSecurityHeader | None = None
        mic = b""
        if fcf & 0x0008:
            security, pos = AuxSecurityHeader.parse(raw, pos, version)
            mic_len = security.mic_length
            if end - pos < mic_len:
                raise ParseError("frame too short for its MIC")
            end -= mic_len
            mic = raw[end:]
        header_ies = b""
        if ie_present:
            ie_end = _scan_header_ies(raw, pos, end)
            header_ies = raw[pos:ie_end]
            pos = ie_end
        if ftype == FrameType.COMMAND and pos >= end:
            raise ParseError("command frame without a command identifier")
        try:
            return cls(
                FrameType(ftype),
                seq,
                dst_pan,
                dst,
                src_pan,
                src,
                raw[pos:end],
                FrameVersion(version),
                comp,
                bool(fcf & 0x0020),
                bool(fcf & 0x0010),
                security,
                security is not None,
                mic,
                header_ies,
                reserved,
            )
        except InvalidArgument as exc:  # pragma: no cover - the checks above mirror __post_init__
            raise ParseError(f"inconsistent frame: {exc.message}") from None

    def __str__(self) -> str:
        parts = [f"{self.frame_type.name} v{self.version.name[1:]}"]
        if self.seq is not None:
            parts.append(f"seq={self.seq}")
        if self.dst is not None or self.dst_pan is not None:
            parts.append(f"dst={_pan_str(self.dst_pan)}/{self.dst}")
        if self.src is not None:
            parts.append(f"src={_pan_str(self.source_pan)}/{self.src}")
        if self.security is not None:
            parts.append(
                f"sec(l{self.security.level} kim{self.security.key_id_mode} "
                f"fc={self.security.frame_counter})"
            )
        if self.ack_request:
            parts.append("AR")
        parts.append(f"len={len(self.payload)}")
        return " ".join(parts)


def _pan_str(pan: int | None) -> str:
    return "-" if pan is None else f"0x{pan:04x}"


def split_payload_ies(frame: MacFrame) -> tuple[tuple[PayloadIE, ...], bytes]:
    """Payload IEs of an unprotected 2015 frame whose header IEs end with HT1, and the rest of the
    payload; ``((), payload)`` when there are none."""
    if frame.version != FrameVersion.V2015 or not frame.header_ies:
        return (), frame.payload
    if frame.protected and frame.security is not None and frame.security.encrypts:
        raise InvalidArgument("payload IEs are encrypted: unsecure() the frame first")
    if parse_header_ies(frame.header_ies)[-1].element_id != HT1:
        return (), frame.payload
    return parse_payload_ies(frame.payload)


KeyLookup: TypeAlias = Callable[[MacFrame], bytes | None]
"""Given a received frame (its ``security`` and ``src``), the 16-byte key or ``None``."""


def _nonce_source(frame: MacFrame, ext_src: ExtAddress | None) -> bytes | None:
    if ext_src is not None:
        return ext_src.octets
    if isinstance(frame.src, ExtAddress):
        return frame.src.octets
    return None


def secure(
    frame: MacFrame,
    key: bytes,
    *,
    ext_src: ExtAddress | None = None,
    frame_counter: int | None = None,
) -> MacFrame:
    """Apply CCM* to an unprotected frame that carries an :class:`AuxSecurityHeader`.

    The nonce uses ``ext_src`` (required when the frame's source is not extended: Thread
    devices send from their short address but secure with their extended one) and the frame
    counter (``frame_counter`` overrides and is written into the header).
    """
    sec = frame.security
    if sec is None:
        raise InvalidArgument("frame has no auxiliary security header")
    if frame.protected:
        raise InvalidArgument("frame is already secured")
    if frame_counter is not None:
        sec = replace(sec, frame_counter=frame_counter)
        frame = replace(frame, security=sec)
    if sec.level == 0:
        return replace(frame, protected=True)
    if sec.frame_counter is None:
        raise InvalidArgument("frame counter suppression (TSCH ASN nonce) is not supported")
    source = _nonce_source(frame, ext_src)
    if source is None:
        raise InvalidArgument("secure() needs ext_src when the source address is not extended")
    nonce = make_nonce(source, sec.frame_counter, sec.level)
    open_len = frame.open_payload_length() if sec.encrypts else len(frame.payload)
    a_data = frame.header_bytes() + frame.payload[:open_len]
    out, mic = ccm_star_encrypt(
        key, nonce, a_data, frame.payload[open_len:], sec.mic_length, sec.encrypts
    )
    return replace(frame, payload=frame.payload[:open_len] + out, mic=mic, protected=True)


def unsecure(
    frame: MacFrame,
    key: bytes | KeyLookup,
    *,
    ext_src: ExtAddress | None = None,
) -> MacFrame:
    """Check the MIC and decrypt a received frame; returns the plaintext view.

    ``key`` is the 16-byte key or a :data:`KeyLookup`. Raises :class:`CryptoError` when the MIC
    fails, no key is known, or no extended source address is available for the nonce
    (pass ``ext_src`` for frames sent from a short address).
    """
    sec = frame.security
    if sec is None:
        raise InvalidArgument("frame has no auxiliary security header")
    if not frame.protected:
        raise InvalidArgument("frame is not protected")
    if sec.level == 0:
        return replace(frame, protected=False)
    if sec.frame_counter is None:
        raise CryptoError("frame counter suppression (TSCH ASN nonce) is not supported")
    source = _nonce_source(frame, ext_src)
    if source is None:
        raise CryptoError("no extended source address to form the CCM* nonce")
    if isinstance(key, (bytes, bytearray)):
        material: bytes | None = bytes(key)
    else:
        material = key(frame)
    if material is None:
        raise CryptoError(
            f"no key for key id mode {sec.key_id_mode} index {sec.key_index}",
            hint="The frame was secured with a key this node does not hold.",
        )
    nonce = make_nonce(source, sec.frame_counter, sec.level)
    try:
        open_len = frame.open_payload_length() if sec.encrypts else len(frame.payload)
    except ParseError as exc:
        raise CryptoError(f"cannot locate the secured payload: {exc.message}") from None
    a_data = frame.header_bytes() + frame.payload[:open_len]
    plain = ccm_star_decrypt(
        material, nonce, a_data, frame.payload[open_len:], frame.mic, sec.encrypts
    )
    return replace(frame, payload=frame.payload[:open_len] + plain, mic=b"", protected=False)
