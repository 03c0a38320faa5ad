"""The IEEE 802.15.4 MAC header parser: frame type, flags, sequence number and addressing
(2003/2006 and 2015 PAN ID compression). The one parser of these fields: the chip emulator's
address filter and the sniffer use it directly, and the full frame codec
(``gateway.wire.mac802154``, security and IEs) builds on it, since drivers cannot import gateway."""

from __future__ import annotations

from dataclasses import dataclass

FT_BEACON = 0
FT_DATA = 1
FT_ACK = 2
FT_COMMAND = 3

ADDR_NONE = 0
ADDR_SHORT = 2
ADDR_EXT = 3

BROADCAST_PAN = 0xFFFF
BROADCAST_SHORT = 0xFFFF


class HeaderError(ValueError):
    """The bytes do not hold a parseable 802.15.4 MAC header."""


@dataclass(frozen=True)
class MacHeader:
    frame_type: int
    security: bool
    frame_pending: bool
    ack_request: bool
    pan_id_compression: bool
    seq_suppressed: bool
    version: int
    seq: int | None
    dst_mode: int
    src_mode: int
    dst_pan: int | None
    dst_addr: int | bytes | None  # int for short, bytes (canonical, big-endian) for extended
    src_pan: int | None
    src_addr: int | bytes | None
    length: int  # header length in bytes
    command_id: int | None = None  # first payload byte of an unsecured MAC command

    @property
    def is_broadcast(self) -> bool:
        return self.dst_mode == ADDR_SHORT and self.dst_addr == BROADCAST_SHORT

    @property
    def src_pan_elided(self) -> bool:
        """2003/2006 PAN ID compression: the source PAN ID is not on air (``src_pan`` repeats the
        destination's)."""
        return (
            self.version < 2
            and self.pan_id_compression
            and self.dst_mode != ADDR_NONE
            and self.src_mode != ADDR_NONE
        )


def pan_presence(version: int, dst_mode: int, src_mode: int, comp: bool) -> tuple[bool, bool]:
    """Which PAN ID fields are on air (dst, src) for this frame control field."""
    if version < 2:
        # 2003/2006: each PAN ID goes with its address; compression drops the source PAN when
        # both addresses are present (IEEE 802.15.4-2006 7.2.1.1.5).
        dst_pan = dst_mode != ADDR_NONE
        src_pan = src_mode != ADDR_NONE and not (comp and dst_mode != ADDR_NONE)
        return dst_pan, src_pan
    # IEEE 802.15.4-2015 Table 7-2
    if dst_mode == ADDR_NONE and src_mode == ADDR_NONE:
        return comp, False
    if src_mode == ADDR_NONE:
        return not comp, False
    if dst_mode == ADDR_NONE:
        return False, not comp
    if dst_mode == ADDR_EXT and src_mode == ADDR_EXT:
        return not comp, False
    return True, not comp


def parse_header(frame: bytes | bytearray | memoryview) -> MacHeader:
    """Parse the MAC header of ``frame`` (with or without FCS); raises :class:`HeaderError`."""
    b = bytes(frame)
    if len(b) < 2:
        raise HeaderError("frame shorter than a frame control field")
    fcf = b[0] | (b[1] << 8)
    frame_type = fcf & 0x7
    security = bool(fcf & 0x08)
    pending = bool(fcf & 0x10)
    ar = bool(fcf & 0x20)
    comp = bool(fcf & 0x40)
    seq_suppressed = bool(fcf & 0x100)
    dst_mode = (fcf >> 10) & 0x3
    version = (fcf >> 12) & 0x3
    src_mode = (fcf >> 14) & 0x3
    if version < 2:
        seq_suppressed = False
    if dst_mode == 1 or src_mode == 1:
        raise HeaderError("reserved addressing mode")
    pos = 2
    seq: int | None = None
    if not seq_suppressed:
        if len(b) < 3:
            raise HeaderError("frame too short for a sequence number")
        seq = b[2]
        pos = 3
    dst_pan_p, src_pan_p = pan_presence(version, dst_mode, src_mode, comp)

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(b):
            raise HeaderError("frame too short for its addressing fields")
        out = b[pos : pos + n]
        pos += n
        return out

    def addr(mode: int) -> int | bytes | None:
        if mode == ADDR_SHORT:
            return int.from_bytes(take(2), "little")
        if mode == ADDR_EXT:
            return take(8)[::-1]
        return None

    dst_pan = int.from_bytes(take(2), "little") if dst_pan_p else None
    dst_addr = addr(dst_mode)
    src_pan = int.from_bytes(take(2), "little") if src_pan_p else None
    src_addr = addr(src_mode)
    if version < 2 and comp and src_mode != ADDR_NONE and dst_mode != ADDR_NONE:
        src_pan = dst_pan
    command_id = b[pos] if frame_type == FT_COMMAND and not security and pos < len(b) else None
    return MacHeader(
        frame_type, security, pending, ar, comp, seq_suppressed, version, seq, dst_mode,
        src_mode, dst_pan, dst_addr, src_pan, src_addr, pos, command_id,
    )  # fmt: skip


def imm_ack(seq: int, frame_pending: bool) -> bytes:
    """An Imm-Ack MHR (2006 version bits as OpenThread sends them), without FCS."""
    fcf = FT_ACK | (0x10 if frame_pending else 0) | (1 << 12)
    return bytes((fcf & 0xFF, fcf >> 8, seq & 0xFF))


def describe(frame: bytes) -> str:
    """A one-line human summary of a frame (for sniffers and logs)."""
    try:
        h = parse_header(frame)
    except HeaderError:
        return f"len={len(frame)} (unparseable header)"
    kind = {FT_BEACON: "BEACON", FT_DATA: "DATA", FT_ACK: "ACK", FT_COMMAND: "CMD"}.get(
        h.frame_type, f"type{h.frame_type}"
    )

    def fmt(pan: int | None, a: int | bytes | None) -> str:
        if a is None:
            return "-"
        s = a.hex() if isinstance(a, bytes) else f"0x{a:04x}"
        return f"{pan:04x}/{s}" if pan is not None else s

    flags = "".join(
        f for f, on in (("S", h.security), ("P", h.frame_pending), ("A", h.ack_request)) if on
    )
    seq = "-" if h.seq is None else str(h.seq)
    return (
        f"{kind} v{h.version} seq={seq} {fmt(h.src_pan, h.src_addr)} -> "
        f"{fmt(h.dst_pan, h.dst_addr)} {flags} len={len(frame)}"
    ).rstrip()
