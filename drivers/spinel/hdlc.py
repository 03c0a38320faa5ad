"""HDLC-lite framing as OpenThread uses it for Spinel on a UART (``src/lib/hdlc``), sans-IO.

A frame is ``7E | escaped(payload | FCS) | 7E``. The five bytes 7E (flag), 7D (escape), 11 and 13
(XON/XOFF) and F8 are sent as ``7D, byte ^ 0x20``. The FCS is the 16-bit frame check sequence of
PPP (RFC 1662: CRC-16/X-25, reflected polynomial 0x1021, initial value 0xFFFF, complemented),
little-endian; over payload and FCS the running value is the constant 0xF0B8.

:class:`HdlcDecoder` takes the byte stream in chunks of any size and returns whole payloads; what
it drops (bad FCS, a frame too short to hold an FCS, one longer than the bound, an escape right
before a flag, bytes before the first flag) it counts in :attr:`HdlcDecoder.stats`. It never
raises on input, and its buffer never grows past the bound.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

FLAG = 0x7E
ESCAPE = 0x7D
XON = 0x11
XOFF = 0x13
VENDOR = 0xF8
SPECIAL = frozenset((FLAG, ESCAPE, XON, XOFF, VENDOR))
GOOD_FCS = 0xF0B8
# A Spinel frame is at most 1300 bytes (SPINEL_FRAME_MAX_SIZE); the FCS adds 2.
MAX_PAYLOAD = 1300

_REVERSED_BITS = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_ESCAPED = {b: bytes((ESCAPE, b ^ 0x20)) for b in SPECIAL}


def fcs16(data: bytes | bytearray | memoryview, fcs: int = 0xFFFF) -> int:
    """The running PPP FCS (before the final complement) after ``data``.

    CRC-16/X-25 is the bit-reflected form of the CRC that :func:`binascii.crc_hqx` computes (the
    same polynomial, MSB first): reflecting every input byte and the 16-bit result turns one into
    the other (0xFFFF reflects to itself), and keeps the byte loop in C."""
    rev = binascii.crc_hqx(bytes(data).translate(_REVERSED_BITS), _reflect16(fcs))
    return _reflect16(rev)


def _reflect16(value: int) -> int:
    return (_REVERSED_BITS[value & 0xFF] << 8) | _REVERSED_BITS[value >> 8]


def frame_check_sequence(payload: bytes | bytearray | memoryview) -> bytes:
    """The two FCS bytes that follow ``payload`` (``crc16/x-25(b"123456789") == 0x906E``)."""
    return (fcs16(payload) ^ 0xFFFF).to_bytes(2, "little")


def escape(data: bytes | bytearray) -> bytes:
    if not any(b in SPECIAL for b in data):
        return bytes(data)
    return b"".join(_ESCAPED.get(b) or bytes((b,)) for b in data)


def encode_frame(payload: bytes | bytearray) -> bytes:
    """One HDLC-lite frame: flag, escaped payload and FCS, flag."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a Spinel frame has at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    return b"\x7e" + escape(bytes(payload) + frame_check_sequence(payload)) + b"\x7e"


@dataclass
class DecoderStats:
    frames: int = 0
    bad_fcs: int = 0
    too_short: int = 0
    too_long: int = 0
    bad_escape: int = 0
    noise_bytes: int = 0  # bytes outside any frame (before the first flag, after an overflow)

    @property
    def errors(self) -> int:
        return self.bad_fcs + self.too_short + self.too_long + self.bad_escape

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class HdlcDecoder:
    """Byte stream in, HDLC payloads (without FCS) out."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._synced = False  # a flag has been seen: bytes are inside a frame
        self._overflow = False  # the current frame passed the bound: skip to the next flag

    def reset(self) -> None:
        """Forget a partial frame (after the peer reset, say)."""
        self._buf.clear()
        self._synced = False
        self._overflow = False

    @property
    def pending(self) -> int:
        """Bytes of the frame in progress (at most ``2 * (max_payload + 2)``)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        frames: list[bytes] = []
        view = bytes(data)
        pos = 0
        n = len(view)
        limit = 2 * (self.max_payload + 2)  # every byte escaped
        while pos < n:
            flag = view.find(b"\x7e", pos)
            end = n if flag < 0 else flag
            if not self._synced:
                self.stats.noise_bytes += end - pos
            elif not self._overflow:
                self._buf += view[pos:end]
                if len(self._buf) > limit:
                    self.stats.too_long += 1
                    self.stats.noise_bytes += len(self._buf)
                    self._buf.clear()
                    self._overflow = True
            else:
                self.stats.noise_bytes += end - pos
            if flag < 0:
                break
            pos = flag + 1
            if self._synced and not self._overflow and self._buf:
                payload = self._finish(bytes(self._buf))
                if payload is not None:
                    frames.append(payload)
            self._buf.clear()
            self._synced = True
            self._overflow = False
        return frames

    def _finish(self, raw: bytes) -> bytes | None:
        if ESCAPE in raw:
            out = bytearray()
            i = 0
            while True:
                j = raw.find(b"\x7d", i)
                if j < 0:
                    out += raw[i:]
                    break
                if j + 1 >= len(raw):  # 7D 7E: an aborted frame
                    self.stats.bad_escape += 1
                    return None
                out += raw[i:j]
                out.append(raw[j + 1] ^ 0x20)
                i = j + 2
            body = bytes(out)
        else:
            body = raw
        if len(body) < 2:
            self.stats.too_short += 1
            return None
        if len(body) - 2 > self.max_payload:
            self.stats.too_long += 1
            return None
        if fcs16(body) != GOOD_FCS:
            self.stats.bad_fcs += 1
            return None
        self.stats.frames += 1
        return body[:-2]
