"""6LoWPAN fragmentation (RFC 4944 §5.3, with RFC 6282 §2 sizes) and bounded reassembly.

* :class:`FragmentHeader` encodes/parses FRAG1 (4 bytes) and FRAGN (5 bytes).
* :func:`fragment` splits a compressed 6LoWPAN datagram (IPHC or 0x41 first) into frame
  payloads of at most ``max_payload`` bytes. The FRAG1 carries the whole compressed header;
  ``datagram_size`` and offsets count the *uncompressed* packet, as RFC 6282 requires.
* :class:`Reassembler` rebuilds datagrams keyed by (source link address, destination link
  address, datagram size, tag). Memory is bounded (``max_datagrams`` in progress and
  ``max_bytes`` of reserved datagram sizes); time is passed in (``feed(..., now)``); an exact
  duplicate fragment is ignored, a same-place fragment with different bytes drops the datagram,
  any other overlap drops what was collected and restarts with the newest fragment (RFC 4944
  §5.3). Completed datagrams come back in compressed form, ready for
  :func:`gateway.wire.lowpan.decompress`.
* :func:`parse_lowpan_frame` peels mesh, broadcast and fragment headers off a MAC payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from drivers.errors import InvalidArgument
from gateway.errors import ParseError
from gateway.wire.lowpan import DISPATCH_BC0, Dispatch, MeshHeader, classify, header_sizes
from gateway.wire.mac802154 import Address

__all__ = [
    "FragmentHeader",
    "LowpanFrame",
    "ReassemblyCounters",
    "Reassembler",
    "fragment",
    "parse_lowpan_frame",
]

MAX_DATAGRAM_SIZE: Final = 0x7FF  # 11-bit datagram_size
FRAG1_HEADER_LENGTH: Final = 4
FRAGN_HEADER_LENGTH: Final = 5


@dataclass(frozen=True, slots=True)
class FragmentHeader:
    """FRAG1 when ``offset`` is ``None``, FRAGN otherwise (``offset`` in bytes, a multiple of 8)."""

    datagram_size: int
    tag: int
    offset: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.datagram_size <= MAX_DATAGRAM_SIZE:
            raise InvalidArgument("datagram size is 11 bits")
        if not 0 <= self.tag <= 0xFFFF:
            raise InvalidArgument("datagram tag is 16 bits")
        if self.offset is not None and (self.offset % 8 or not 0 <= self.offset <= 0xFF * 8):
            raise InvalidArgument("fragment offset is a multiple of 8 up to 2040")

    @property
    def is_first(self) -> bool:
        return self.offset is None

    def to_bytes(self) -> bytes:
        first = (0xE000 if self.offset is not None else 0xC000) | self.datagram_size
        out = first.to_bytes(2, "big") + self.tag.to_bytes(2, "big")
        if self.offset is not None:
            out += bytes((self.offset // 8,))
        return out

    @classmethod
    def parse(cls, data: bytes) -> tuple[FragmentHeader, int]:
        """Parse at the start of ``data``; returns the header and its length."""
        kind = classify(data)
        if kind is Dispatch.FRAG1:
            if len(data) < FRAG1_HEADER_LENGTH:
                raise ParseError("truncated FRAG1 header")
            size = int.from_bytes(data[0:2], "big") & 0x7FF
            return cls(size, int.from_bytes(data[2:4], "big")), FRAG1_HEADER_LENGTH
        if kind is Dispatch.FRAGN:
            if len(data) < FRAGN_HEADER_LENGTH:
                raise ParseError("truncated FRAGN header")
            size = int.from_bytes(data[0:2], "big") & 0x7FF
            return (
                cls(size, int.from_bytes(data[2:4], "big"), data[4] * 8),
                FRAGN_HEADER_LENGTH,
            )
        raise ParseError("not a fragment header")


@dataclass(frozen=True, slots=True)
class LowpanFrame:
    """The 6LoWPAN headers in front of a datagram (or of a datagram fragment)."""

    mesh: MeshHeader | None
    broadcast_seq: int | None
    fragment: FragmentHeader | None
    data: bytes

    def link_addresses(self, mac_src: Address, mac_dst: Address) -> tuple[Address, Address]:
        """The addresses IPHC and reassembly use: the mesh header's originator and final
        destination when there is one (RFC 4944 §5.2, RFC 6282 §3.2.2), else the MAC ones."""
        if self.mesh is not None:
            return self.mesh.originator, self.mesh.final
        return mac_src, mac_dst

    def to_bytes(self) -> bytes:
        out = b""
        if self.mesh is not None:
            out += self.mesh.to_bytes()
        if self.broadcast_seq is not None:
            out += bytes((DISPATCH_BC0, self.broadcast_seq))
        if self.fragment is not None:
            out += self.fragment.to_bytes()
        return out + self.data


def parse_lowpan_frame(payload: bytes | bytearray | memoryview) -> LowpanFrame:
    """Peel the RFC 4944 headers (mesh, LOWPAN_BC0, fragment, in that order) off a MAC payload.
    ``data`` is what follows: a datagram (IPHC/0x41) or a fragment's bytes. NALP payloads are
    refused: they are not 6LoWPAN."""
    raw = bytes(payload)
    pos = 0
    mesh: MeshHeader | None = None
    bc0: int | None = None
    frag: FragmentHeader | None = None
    kind = classify(raw)
    if kind is Dispatch.NALP:
        raise ParseError("not a 6LoWPAN frame (NALP dispatch)")
    if kind is Dispatch.MESH:
        mesh, pos = MeshHeader.parse(raw)
        kind = classify(raw[pos:])
    if kind is Dispatch.BC0:
        if pos + 2 > len(raw):
            raise ParseError("truncated LOWPAN_BC0 header")
        bc0 = raw[pos + 1]
        pos += 2
        kind = classify(raw[pos:])
    if kind in (Dispatch.FRAG1, Dispatch.FRAGN):
        frag, n = FragmentHeader.parse(raw[pos:])
        pos += n
        if frag.is_first:
            kind = classify(raw[pos:])
        else:
            return LowpanFrame(mesh, bc0, frag, raw[pos:])
    if kind not in (Dispatch.IPHC, Dispatch.IPV6):
        raise ParseError(f"unsupported 6LoWPAN dispatch ({kind.value})")
    return LowpanFrame(mesh, bc0, frag, raw[pos:])


def fragment(datagram: bytes, *, max_payload: int, tag: int) -> list[bytes]:
    """Split a compressed datagram into frame payloads of at most ``max_payload`` bytes.

    Returns ``[datagram]`` when it fits. Otherwise a FRAG1 with the whole compressed header
    and as many payload bytes as keep the next offset a multiple of 8, then FRAGNs carrying
    multiples of 8 bytes (the last one the remainder).
    """
    raw = bytes(datagram)
    if len(raw) <= max_payload:
        return [raw]
    try:
        compressed, uncompressed = header_sizes(raw)
    except ParseError as exc:
        raise InvalidArgument(f"not a 6LoWPAN datagram: {exc.message}") from None
    size = uncompressed + len(raw) - compressed
    if size > MAX_DATAGRAM_SIZE:
        raise InvalidArgument(f"datagram of {size} bytes exceeds the 2047-byte 6LoWPAN limit")
    if max_payload - FRAGN_HEADER_LENGTH < 8:
        raise InvalidArgument("max_payload too small for 6LoWPAN fragments")
    room = max_payload - FRAG1_HEADER_LENGTH - compressed
    if room < 0:
        raise InvalidArgument("the compressed header does not fit the first fragment")
    first_end = (uncompressed + room) // 8 * 8  # uncompressed offset where FRAG1 ends
    if first_end < uncompressed:
        raise InvalidArgument("the compressed header does not fit the first fragment")
    take = first_end - uncompressed
    out = [FragmentHeader(size, tag).to_bytes() + raw[: compressed + take]]
    pos = compressed + take  # position in raw
    offset = first_end  # uncompressed offset
    chunk = (max_payload - FRAGN_HEADER_LENGTH) // 8 * 8
    while pos < len(raw):
        piece = raw[pos : pos + chunk]
        out.append(FragmentHeader(size, tag, offset).to_bytes() + piece)
        pos += len(piece)
        offset += len(piece)
    return out


@dataclass
class ReassemblyCounters:
    """What the reassembler did (monotonic counters, for the radio service's statistics)."""

    fragments: int = 0
    completed: int = 0
    duplicates: int = 0
    timeouts: int = 0
    overlaps: int = 0
    inconsistent: int = 0
    no_buffer: int = 0
    malformed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(slots=True)
class _Span:
    lo: int  # uncompressed offsets [lo, hi); FRAG1's span starts at 0 (its header)
    hi: int
    data: bytes  # payload bytes (FRAG1: after the compressed header)
    head: bytes | None  # FRAG1 only: the compressed header


@dataclass(slots=True)
class _Partial:
    size: int
    started: float
    spans: list[_Span] = field(default_factory=list)
    received: int = 0
    header: bytes | None = None


_Key = tuple[Address, Address, int, int]


class Reassembler:
    """Bounded 6LoWPAN reassembly. Not thread-safe; the caller owns the clock."""

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        max_datagrams: int = 8,
        max_bytes: int = 8 * 1280,
    ) -> None:
        if timeout <= 0 or max_datagrams < 1 or max_bytes < 1:
            raise InvalidArgument("timeout, max_datagrams and max_bytes must be positive")
        self.timeout = timeout
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.counters = ReassemblyCounters()
        self._partials: dict[_Key, _Partial] = {}

    @property
    def pending(self) -> int:
        return len(self._partials)

    @property
    def bytes_reserved(self) -> int:
        return sum(p.size for p in self._partials.values())

    def expire(self, now: float) -> int:
        """Drop datagrams older than ``timeout``; returns how many."""
        stale = [k for k, p in self._partials.items() if now - p.started >= self.timeout]
        for k in stale:
            del self._partials[k]
        self.counters.timeouts += len(stale)
        return len(stale)

    def clear(self) -> None:
        self._partials.clear()

    def accept(self, frame: LowpanFrame, src: Address, dst: Address, now: float) -> bytes | None:
        """The datagram carried by a parsed frame: its data when unfragmented, else what
        :meth:`feed` returns for its fragment."""
        if frame.fragment is None:
            return frame.data
        return self.feed(frame.fragment.to_bytes() + frame.data, src, dst, now)

    def feed(self, data: bytes, src: Address, dst: Address, now: float) -> bytes | None:
        """Give one fragment (starting at its FRAG1/FRAGN header, mesh/BC0 headers removed);
        ``src``/``dst`` are the link addresses (the mesh header's when there is one). Returns
        the whole compressed datagram when this fragment completes it. Malformed bytes raise
        :class:`ParseError` (and count as ``malformed``)."""
        raw = bytes(data)
        self.expire(now)
        try:
            header, n = FragmentHeader.parse(raw)
            body = raw[n:]
            if header.datagram_size == 0:
                raise ParseError("zero datagram size")
            if header.offset is None:
                compressed, uncompressed = header_sizes(body)
                start, chunk, head = uncompressed, body[compressed:], body[:compressed]
            else:
                if not body:
                    raise ParseError("empty FRAGN")
                start, chunk, head = header.offset, body, None
            if start + len(chunk) > header.datagram_size:
                raise ParseError("fragment beyond the datagram size")
        except ParseError:
            self.counters.malformed += 1
            raise
        self.counters.fragments += 1
        key: _Key = (src, dst, header.datagram_size, header.tag)
        partial = self._partials.get(key)
        if partial is None:
            partial = self._new(key, header.datagram_size, now)
            if partial is None:
                return None
        verdict = self._place(partial, start, chunk, head)
        if verdict == "duplicate":
            self.counters.duplicates += 1
            return None
        if verdict == "inconsistent":
            self.counters.inconsistent += 1
            del self._partials[key]
            return None
        if verdict == "overlap":
            self.counters.overlaps += 1
            del self._partials[key]
            partial = self._new(key, header.datagram_size, now)
            if partial is None:
                return None
            self._place(partial, start, chunk, head)
        if partial.header is None or partial.received != partial.size:
            return None
        del self._partials[key]
        self.counters.completed += 1
        ordered = sorted(partial.spans, key=lambda span: span.lo)
        return partial.header + b"".join(span.data for span in ordered)

    def _new(self, key: _Key, size: int, now: float) -> _Partial | None:
        if len(self._partials) >= self.max_datagrams or self.bytes_reserved + size > self.max_bytes:
            self.counters.no_buffer += 1
            return None
        partial = _Partial(size, now)
        self._partials[key] = partial
        return partial

    @staticmethod
    def _place(partial: _Partial, start: int, chunk: bytes, head: bytes | None) -> str:
        lo = 0 if head is not None else start
        hi = start + len(chunk)
        for span in partial.spans:
            if span.lo == lo and span.hi == hi and (span.head is None) == (head is None):
                same = span.data == chunk and span.head == head
                return "duplicate" if same else "inconsistent"
            if lo < span.hi and span.lo < hi:
                return "overlap"
        partial.spans.append(_Span(lo, hi, chunk, head))
        partial.received += hi - lo
        if head is not None:
            partial.header = head
        return "ok"
