"""Spinel frames and data types, sans-IO (OpenThread ``src/lib/spinel/spinel.c`` semantics).

A Spinel frame is a header byte (``10`` flag bits, interface id in bits 4-5, transaction id TID in
bits 0-3; TID 0 for unsolicited frames), a command (packed unsigned integer), for the property
commands a property id (packed unsigned integer), and the value.

Packed unsigned integers carry 7 bits per byte, least significant group first, the high bit set
on every byte but the last; Spinel limits them to 21 bits (three bytes).

Values are described by format strings (SPINEL_DATATYPE_*): ``b`` bool, ``C``/``c`` (u)int8,
``S``/``s`` (u)int16, ``L``/``l`` (u)int32, ``X``/``x`` (u)int64 (all little-endian), ``i``
packed unsigned int, ``E`` EUI-64 (8 bytes), ``e`` EUI-48, ``6`` IPv6 address, ``U`` UTF-8 string
with a terminating zero, ``d`` data with a 16-bit length, ``D`` data up to the end of its container
(with a 16-bit length like ``d`` when something follows it), ``t(...)`` a structure with a 16-bit
length, ``A(...)`` an array of items up to the end of its container, ``.`` nothing.

:func:`unpack` and :func:`decode_frame` raise :class:`SpinelParseError` (and nothing else) on
malformed bytes; :func:`pack` raises :class:`ValueError` on values that do not fit.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

from drivers.spinel.consts import HEADER_FLAG, PROP_COMMANDS, TID_MAX, Cmd, prop_name

MAX_PACKED_UINT = (1 << 21) - 1
MAX_FRAME = 1300


class SpinelParseError(ValueError):
    """The bytes are not a well-formed Spinel frame or value."""


# --- packed unsigned integers -----------------------------------------------------------------


def pack_uint(value: int) -> bytes:
    if not 0 <= value <= MAX_PACKED_UINT:
        raise ValueError(f"a packed unsigned integer is 0..{MAX_PACKED_UINT}, not {value}")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def unpack_uint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """(value, offset after it)."""
    value = 0
    shift = 0
    pos = offset
    while True:
        if pos >= len(data):
            raise SpinelParseError("a packed unsigned integer runs past the end")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift >= 21:
            raise SpinelParseError("a packed unsigned integer is longer than three bytes")
    return value, pos


# --- data types --------------------------------------------------------------------------------

_FIXED = {
    "b": (1, "<B"),
    "C": (1, "<B"),
    "c": (1, "<b"),
    "S": (2, "<H"),
    "s": (2, "<h"),
    "L": (4, "<I"),
    "l": (4, "<i"),
    "X": (8, "<Q"),
    "x": (8, "<q"),
}
_BLOBS = {"E": 8, "e": 6, "6": 16}


@dataclass(frozen=True)
class _Item:
    kind: str
    children: tuple[_Item, ...] = ()


@functools.lru_cache(maxsize=256)
def _compile(fmt: str) -> tuple[_Item, ...]:
    items, pos = _compile_seq(fmt, 0)
    if pos != len(fmt):
        raise ValueError(f"unbalanced ')' in Spinel format {fmt!r}")
    return items


def _compile_seq(fmt: str, pos: int) -> tuple[tuple[_Item, ...], int]:
    items: list[_Item] = []
    while pos < len(fmt):
        ch = fmt[pos]
        if ch == ")":
            return tuple(items), pos
        if ch in "tA":
            if pos + 1 >= len(fmt) or fmt[pos + 1] != "(":
                raise ValueError(f"'{ch}' needs '(' in Spinel format {fmt!r}")
            children, end = _compile_seq(fmt, pos + 2)
            if end >= len(fmt) or fmt[end] != ")":
                raise ValueError(f"unclosed '(' in Spinel format {fmt!r}")
            items.append(_Item(ch, children))
            pos = end + 1
        elif ch in _FIXED or ch in _BLOBS or ch in "iUdD.":
            items.append(_Item(ch))
            pos += 1
        else:
            raise ValueError(f"unknown type {ch!r} in Spinel format {fmt!r}")
    return tuple(items), pos


def unpack(fmt: str, data: bytes, *, partial: bool = False) -> tuple[Any, ...]:
    """The values ``fmt`` describes at the start of ``data`` (bytes after them are ignored, as
    OpenThread does). With ``partial``, values missing at the end are left out (metadata "MAY be
    partially specified"): the result may be shorter than the format."""
    values, _ = _unpack_seq(_compile(fmt), bytes(data), 0, len(data), partial)
    return tuple(values)


def unpack_prefix(fmt: str, data: bytes) -> tuple[tuple[Any, ...], int]:
    """Like :func:`unpack`, and the number of bytes the values took."""
    values, end = _unpack_seq(_compile(fmt), bytes(data), 0, len(data))
    return tuple(values), end


def _unpack_seq(items: tuple[_Item, ...], data: bytes, pos: int, end: int,
                partial: bool = False) -> tuple[list[Any], int]:  # fmt: skip
    out: list[Any] = []
    for index, item in enumerate(items):
        if partial and pos >= end:
            break
        last = index == len(items) - 1
        value, pos = _unpack_one(item, data, pos, end, last)
        if item.kind != ".":
            out.append(value)
    return out, pos


def _need(data_end: int, pos: int, size: int, what: str) -> None:
    if pos + size > data_end:
        raise SpinelParseError(f"{what} runs past the end of the value")


def _unpack_one(item: _Item, data: bytes, pos: int, end: int, last: bool) -> tuple[Any, int]:
    kind = item.kind
    if kind in _FIXED:
        size, code = _FIXED[kind]
        _need(end, pos, size, f"'{kind}'")
        (value,) = struct.unpack_from(code, data, pos)
        return (bool(value) if kind == "b" else value), pos + size
    if kind in _BLOBS:
        size = _BLOBS[kind]
        _need(end, pos, size, f"'{kind}'")
        return data[pos : pos + size], pos + size
    if kind == "i":
        value, new = unpack_uint(data[:end], pos)
        return value, new
    if kind == "U":
        zero = data.find(b"\x00", pos, end)
        if zero < 0:
            raise SpinelParseError("a string has no terminating zero")
        try:
            text = data[pos:zero].decode("utf-8")
        except UnicodeDecodeError:
            raise SpinelParseError("a string is not valid UTF-8") from None
        return text, zero + 1
    if kind == "D" and last:
        return data[pos:end], end
    if kind in "dD":
        _need(end, pos, 2, "a data length")
        (length,) = struct.unpack_from("<H", data, pos)
        _need(end, pos + 2, length, "data")
        return data[pos + 2 : pos + 2 + length], pos + 2 + length
    if kind == "t":
        _need(end, pos, 2, "a structure length")
        (length,) = struct.unpack_from("<H", data, pos)
        _need(end, pos + 2, length, "a structure")
        inner_end = pos + 2 + length
        values, _ = _unpack_seq(item.children, data, pos + 2, inner_end, partial=True)
        if len(values) < sum(1 for c in item.children if c.kind != "."):
            raise SpinelParseError("a structure is shorter than its fields")
        return tuple(values), inner_end
    if kind == "A":
        items: list[Any] = []
        while pos < end:
            values, new = _unpack_seq(item.children, data, pos, end)
            if new == pos:
                raise SpinelParseError("an array item of no bytes")
            items.append(values[0] if len(values) == 1 else tuple(values))
            pos = new
        return items, end
    return None, pos  # '.'


def pack(fmt: str, *values: Any) -> bytes:
    items = _compile(fmt)
    wanted = sum(1 for i in items if i.kind != ".")
    if len(values) != wanted:
        raise ValueError(f"Spinel format {fmt!r} takes {wanted} values, not {len(values)}")
    return _pack_seq(items, list(values))


def _pack_seq(items: tuple[_Item, ...], values: list[Any]) -> bytes:
    out = bytearray()
    it = iter(values)
    for index, item in enumerate(items):
        if item.kind == ".":
            continue
        out += _pack_one(item, next(it), index == len(items) - 1)
    return bytes(out)


def _pack_one(item: _Item, value: Any, last: bool) -> bytes:
    kind = item.kind
    if kind in _FIXED:
        _size, code = _FIXED[kind]
        try:
            return struct.pack(code, int(value))
        except struct.error:
            raise ValueError(f"{value!r} does not fit Spinel type '{kind}'") from None
    if kind in _BLOBS:
        blob = bytes(value)
        if len(blob) != _BLOBS[kind]:
            raise ValueError(f"Spinel type '{kind}' has {_BLOBS[kind]} bytes, not {len(blob)}")
        return blob
    if kind == "i":
        return pack_uint(int(value))
    if kind == "U":
        raw = str(value).encode("utf-8")
        if b"\x00" in raw:
            raise ValueError("a Spinel string cannot hold a zero byte")
        return raw + b"\x00"
    if kind == "D" and last:
        return bytes(value)
    if kind in "dD":
        blob = bytes(value)
        if len(blob) > 0xFFFF:
            raise ValueError("data longer than 65535 bytes")
        return struct.pack("<H", len(blob)) + blob
    if kind == "t":
        body = _pack_seq(item.children, list(value))
        return struct.pack("<H", len(body)) + body
    if kind == "A":
        single = sum(1 for c in item.children if c.kind != ".") == 1
        return b"".join(_pack_seq(item.children, [v] if single else list(v)) for v in value)
    raise AssertionError(kind)


# --- frames ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpinelFrame:
    command: int
    prop: int | None = None
    value: bytes = b""
    tid: int = 0
    iid: int = 0

    def to_bytes(self) -> bytes:
        if not 0 <= self.tid <= TID_MAX or not 0 <= self.iid <= 3:
            raise ValueError("TID is 0..15 and the interface id 0..3")
        out = bytes((HEADER_FLAG | (self.iid << 4) | self.tid,)) + pack_uint(self.command)
        if self.command in PROP_COMMANDS:
            if self.prop is None:
                raise ValueError(f"command {self.command} needs a property")
            out += pack_uint(self.prop)
        elif self.prop is not None:
            raise ValueError(f"command {self.command} takes no property")
        out += self.value
        if len(out) > MAX_FRAME:
            raise ValueError(f"a Spinel frame has at most {MAX_FRAME} bytes, not {len(out)}")
        return out

    def __str__(self) -> str:
        try:
            cmd = Cmd(self.command).name
        except ValueError:
            cmd = f"CMD_{self.command}"
        prop = "" if self.prop is None else f" {prop_name(self.prop)}"
        return f"[tid {self.tid}] {cmd}{prop} {self.value.hex()}"


def decode_frame(data: bytes) -> SpinelFrame:
    """One frame as the HDLC layer delivered it."""
    data = bytes(data)
    if not data:
        raise SpinelParseError("an empty Spinel frame")
    if len(data) > MAX_FRAME:
        raise SpinelParseError(f"a Spinel frame of {len(data)} bytes (at most {MAX_FRAME})")
    header = data[0]
    if header & 0xC0 != HEADER_FLAG:
        raise SpinelParseError(f"header 0x{header:02x} lacks the Spinel flag bits (10)")
    command, pos = unpack_uint(data, 1)
    prop: int | None = None
    if command in PROP_COMMANDS:
        prop, pos = unpack_uint(data, pos)
    return SpinelFrame(command, prop, data[pos:], tid=header & 0x0F, iid=(header >> 4) & 3)
