"""6LoWPAN (RFC 4944, RFC 6282): dispatch classification, mesh header, LOWPAN_BC0, IPHC with
stateless and context-based address compression, and LOWPAN_NHC for UDP and IPv6 extension
headers (including IPv6-in-IPv6, as OpenThread sends MPL traffic).

* :func:`classify` names the dispatch of a 6LoWPAN payload (NALP 0x00-0x3F is "not a LoWPAN
  frame": CBSB frames use it).
* :func:`decompress` turns an IPHC (or 0x41 uncompressed) datagram into an
  :class:`~gateway.wire.ipv6.Ipv6Packet`; :func:`compress` does the reverse, choosing the
  smallest encoding (OpenThread's choices: checksum carried inline, trailing Pad1/PadN elided).
* Link-layer addresses come from the MAC header or the mesh header; extended addresses are
  canonical (big-endian) :class:`~gateway.wire.mac802154.ExtAddress` objects. Elided IIDs from
  short addresses use RFC 6282's ``0000:00ff:fe00:XXXX`` form.
* :func:`header_sizes` gives the compressed and uncompressed header lengths a fragmenter needs.

Everything that parses raises only :class:`~gateway.errors.ParseError` on bad input.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Final

from drivers.errors import InvalidArgument
from gateway.errors import ParseError
from gateway.wire.ipv6 import (
    HEADER_LENGTH,
    PROTO_DSTOPTS,
    PROTO_HOPOPTS,
    PROTO_IPV6,
    PROTO_ROUTING,
    PROTO_UDP,
    UDP_HEADER_LENGTH,
    Ipv6Packet,
    upper_layer_checksum,
)
from gateway.wire.mac802154 import Address, ExtAddress, ShortAddress

__all__ = [
    "Dispatch",
    "LowpanContext",
    "MeshHeader",
    "classify",
    "compress",
    "decompress",
    "header_sizes",
    "link_iid",
]

DISPATCH_IPV6: Final = 0x41
DISPATCH_BC0: Final = 0x50


class Dispatch(enum.Enum):
    NALP = "nalp"  # 00xxxxxx: not a LoWPAN frame (other protocols, e.g. CBSB)
    IPV6 = "ipv6"  # 01000001: uncompressed IPv6
    HC1 = "hc1"  # 01000010: RFC 4944 HC1, obsoleted by RFC 6282 (not supported)
    BC0 = "bc0"  # 01010000: LOWPAN_BC0 broadcast header
    IPHC = "iphc"  # 011xxxxx: RFC 6282 IPHC
    MESH = "mesh"  # 10xxxxxx: mesh addressing header
    FRAG1 = "frag1"  # 11000xxx: first fragment
    FRAGN = "fragn"  # 11100xxx: subsequent fragment
    RESERVED = "reserved"


def classify(data: bytes | int) -> Dispatch:
    """The dispatch type of a 6LoWPAN payload (or of its first byte)."""
    if isinstance(data, int):
        b = data
    else:
        if not data:
            raise ParseError("empty 6LoWPAN payload")
        b = data[0]
    if b < 0x40:
        return Dispatch.NALP
    if b == DISPATCH_IPV6:
        return Dispatch.IPV6
    if b == 0x42:
        return Dispatch.HC1
    if b == DISPATCH_BC0:
        return Dispatch.BC0
    if b & 0xE0 == 0x60:
        return Dispatch.IPHC
    if b & 0xC0 == 0x80:
        return Dispatch.MESH
    if b & 0xF8 == 0xC0:
        return Dispatch.FRAG1
    if b & 0xF8 == 0xE0:
        return Dispatch.FRAGN
    return Dispatch.RESERVED


@dataclass(frozen=True, slots=True)
class LowpanContext:
    """One IPHC context: a prefix (any length 0..128) and whether to use it when compressing
    (Thread's 6LoWPAN Context TLV "C" flag; decompression always honours it)."""

    prefix: IPv6Network
    compress: bool = True

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "prefix", IPv6Network(self.prefix))
        except ValueError:
            raise InvalidArgument(f"not an IPv6 prefix: {self.prefix!r}") from None


Contexts = Mapping[int, LowpanContext]


@dataclass(frozen=True, slots=True)
class MeshHeader:
    """RFC 4944 §5.2 mesh addressing header. Hops left above 14 use OpenThread's deep-hops form
    (nibble 0xF followed by a byte). Addresses are big-endian on the wire (canonical order)."""

    hops_left: int
    originator: ShortAddress | ExtAddress
    final: ShortAddress | ExtAddress

    def __post_init__(self) -> None:
        if not 0 <= self.hops_left <= 0xFF:
            raise InvalidArgument("hops left is 0..255")
        for a in (self.originator, self.final):
            if not isinstance(a, (ShortAddress, ExtAddress)):
                raise InvalidArgument("mesh header addresses are short or extended")

    def to_bytes(self) -> bytes:
        first = 0x80
        first |= 0x20 if isinstance(self.originator, ShortAddress) else 0
        first |= 0x10 if isinstance(self.final, ShortAddress) else 0
        out = bytearray()
        if self.hops_left < 0xF:
            out.append(first | self.hops_left)
        else:
            out += bytes((first | 0xF, self.hops_left))
        for a in (self.originator, self.final):
            out += a.value.to_bytes(2, "big") if isinstance(a, ShortAddress) else a.octets
        return bytes(out)

    @classmethod
    def parse(cls, data: bytes) -> tuple[MeshHeader, int]:
        """Parse at the start of ``data``; returns the header and its length."""
        if not data or data[0] & 0xC0 != 0x80:
            raise ParseError("not a mesh header")
        first = data[0]
        pos = 1
        hops = first & 0xF
        if hops == 0xF:
            if len(data) < 2:
                raise ParseError("truncated deep hops left")
            hops = data[1]
            pos = 2
        addrs: list[ShortAddress | ExtAddress] = []
        for short in (bool(first & 0x20), bool(first & 0x10)):
            n = 2 if short else 8
            if pos + n > len(data):
                raise ParseError("truncated mesh header address")
            chunk = data[pos : pos + n]
            addrs.append(ShortAddress(int.from_bytes(chunk, "big")) if short else ExtAddress(chunk))
            pos += n
        return cls(hops, addrs[0], addrs[1]), pos


def link_iid(link: Address) -> bytes:
    """The IPv6 interface identifier derived from a link-layer address (RFC 6282 §3.2.2)."""
    if isinstance(link, ExtAddress):
        return link.iid()
    if isinstance(link, ShortAddress):
        return b"\x00\x00\x00\xff\xfe\x00" + link.value.to_bytes(2, "big")
    raise ParseError("address elided but no link-layer address to derive it from")


_LINK_LOCAL_PREFIX: Final = b"\xfe\x80" + bytes(6)
_SHORT_IID_PREFIX: Final = b"\x00\x00\x00\xff\xfe\x00"
_EXT_EIDS: Final = {PROTO_HOPOPTS: 0, PROTO_ROUTING: 1, PROTO_DSTOPTS: 3}
_EID_PROTOS: Final = {0: PROTO_HOPOPTS, 1: PROTO_ROUTING, 3: PROTO_DSTOPTS, 7: PROTO_IPV6}
_ZERO16: Final = bytes(16)


def _overlay(ctx: LowpanContext, base: bytes) -> bytes:
    """``base`` with its first ``prefixlen`` bits replaced by the context prefix."""
    plen = ctx.prefix.prefixlen
    if plen == 0:
        return base
    mask = ((1 << plen) - 1) << (128 - plen)
    value = (int.from_bytes(base, "big") & ~mask) | (int(ctx.prefix.network_address) & mask)
    return value.to_bytes(16, "big")


def _iid_bits(mode: int, inline: bytes, link: Address) -> bytes:
    """The 64 IID bits for SAM/DAM 1..3 (64-bit inline, 16-bit inline, elided)."""
    if mode == 1:
        return inline
    if mode == 2:
        return _SHORT_IID_PREFIX + inline
    return link_iid(link)


def _context(contexts: Contexts | None, cid: int) -> LowpanContext:
    ctx = contexts.get(cid) if contexts is not None else None
    if ctx is None:
        raise ParseError(f"unknown 6LoWPAN context {cid}")
    return ctx


@dataclass(slots=True)
class _IpLayer:
    tc: int
    fl: int
    nh: int
    hlim: int
    src: bytes
    dst: bytes


@dataclass(slots=True)
class _ExtLayer:
    body: bytes  # complete uncompressed extension header


@dataclass(slots=True)
class _UdpLayer:
    sport: int
    dport: int
    checksum: int | None


_Layer = _IpLayer | _ExtLayer | _UdpLayer


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise ParseError(f"truncated {what}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise ParseError(f"truncated {what}")
        b = self.data[self.pos]
        self.pos += 1
        return b


def _pad_options(options: bytes) -> bytes:
    """Options of an HBH/DestOpts header padded so the header is a multiple of 8 (Pad1/PadN)."""
    pad = -(2 + len(options)) % 8
    if pad == 1:
        return options + b"\x00"
    if pad:
        return options + bytes((1, pad - 2)) + bytes(pad - 2)
    return options


def _read_iphc(
    r: _Reader,
    src_link: Address,
    dst_link: Address,
    contexts: Contexts | None,
    resolve: bool,
    layers: list[_Layer],
    depth: int,
) -> None:
    """Parse one IPHC header and its NHC chain at ``r``, appending layers."""
    if depth > 4:
        raise ParseError("too many nested IPv6 headers")
    b0 = r.byte("IPHC")
    if b0 & 0xE0 != 0x60:
        raise ParseError("not an IPHC dispatch")
    b1 = r.byte("IPHC")
    tf, nh_compressed, hlim_mode = (b0 >> 3) & 3, bool(b0 & 4), b0 & 3
    cid, sac, sam, m, dac, dam = (
        b1 >> 7,
        (b1 >> 6) & 1,
        (b1 >> 4) & 3,
        (b1 >> 3) & 1,
        (b1 >> 2) & 1,
        b1 & 3,
    )
    sci = dci = 0
    if cid:
        c = r.byte("IPHC context identifier")
        sci, dci = c >> 4, c & 0xF
    tc = fl = 0
    if tf == 0:
        t = r.take(4, "traffic class and flow label")
        tc = ((t[0] & 0x3F) << 2) | (t[0] >> 6)
        fl = int.from_bytes(t[1:4], "big") & 0xFFFFF
    elif tf == 1:
        t = r.take(3, "flow label")
        tc = t[0] >> 6
        fl = int.from_bytes(t, "big") & 0xFFFFF
    elif tf == 2:
        t0 = r.byte("traffic class")
        tc = ((t0 & 0x3F) << 2) | (t0 >> 6)
    nh = 0 if nh_compressed else r.byte("next header")
    hlim = (0, 1, 64, 255)[hlim_mode] if hlim_mode else r.byte("hop limit")

    # source address
    if sac:
        if sam == 0:
            src = _ZERO16  # the unspecified address
        else:
            inline = r.take((0, 8, 2, 0)[sam], "source address")
            if resolve:
                ctx = _context(contexts, sci)
                src = _overlay(ctx, bytes(8) + _iid_bits(sam, inline, src_link))
            else:
                src = _ZERO16
    elif sam == 0:
        src = r.take(16, "source address")
    else:
        inline = r.take((0, 8, 2, 0)[sam], "source address")
        src = _LINK_LOCAL_PREFIX + _iid_bits(sam, inline, src_link) if resolve else _ZERO16

    # destination address
    if m and dac:
        if dam != 0:
            raise ParseError("reserved multicast DAM with DAC=1")
        t = r.take(6, "destination address")
        if resolve:
            ctx = _context(contexts, dci)
            if ctx.prefix.prefixlen > 64:
                raise ParseError("context prefix too long for a unicast-prefix-based multicast")
            prefix8 = ctx.prefix.network_address.packed[:8]
            dst = b"\xff" + t[0:2] + bytes((ctx.prefix.prefixlen,)) + prefix8 + t[2:6]
        else:
            dst = _ZERO16
    elif m:
        if dam == 0:
            dst = r.take(16, "destination address")
        elif dam == 1:
            t = r.take(6, "destination address")
            dst = b"\xff" + t[0:1] + bytes(9) + t[1:6]
        elif dam == 2:
            t = r.take(4, "destination address")
            dst = b"\xff" + t[0:1] + bytes(11) + t[1:4]
        else:
            dst = b"\xff\x02" + bytes(13) + r.take(1, "destination address")
    elif dac:
        if dam == 0:
            raise ParseError("reserved DAM 00 with DAC=1")
        inline = r.take((0, 8, 2, 0)[dam], "destination address")
        if resolve:
            ctx = _context(contexts, dci)
            dst = _overlay(ctx, bytes(8) + _iid_bits(dam, inline, dst_link))
        else:
            dst = _ZERO16
    elif dam == 0:
        dst = r.take(16, "destination address")
    else:
        inline = r.take((0, 8, 2, 0)[dam], "destination address")
        dst = _LINK_LOCAL_PREFIX + _iid_bits(dam, inline, dst_link) if resolve else _ZERO16

    ip = _IpLayer(tc, fl, nh, hlim, src, dst)
    layers.append(ip)
    if not nh_compressed:
        return
    # LOWPAN_NHC chain
    previous: _IpLayer | _ExtLayer = ip
    ext_count = 0
    while True:
        n = r.byte("NHC")
        if n & 0xF8 == 0xF0:  # UDP
            proto = PROTO_UDP
            ports = n & 3
            if ports == 0:
                p = r.take(4, "UDP ports")
                sport, dport = int.from_bytes(p[:2], "big"), int.from_bytes(p[2:], "big")
            elif ports == 1:
                p = r.take(3, "UDP ports")
                sport, dport = int.from_bytes(p[:2], "big"), 0xF000 | p[2]
            elif ports == 2:
                p = r.take(3, "UDP ports")
                sport, dport = 0xF000 | p[0], int.from_bytes(p[1:], "big")
            else:
                p0 = r.byte("UDP ports")
                sport, dport = 0xF0B0 | (p0 >> 4), 0xF0B0 | (p0 & 0xF)
            checksum = None if n & 4 else int.from_bytes(r.take(2, "UDP checksum"), "big")
            _set_next(previous, proto)
            layers.append(_UdpLayer(sport, dport, checksum))
            return
        if n & 0xF0 != 0xE0:
            raise ParseError(f"unsupported LOWPAN_NHC 0x{n:02x}")
        eid, more = (n >> 1) & 7, bool(n & 1)
        if eid not in _EID_PROTOS:
            raise ParseError(f"unsupported extension header NHC EID {eid}")
        _set_next(previous, _EID_PROTOS[eid])
        if eid == 7:  # IPv6 encapsulated: an IPHC header follows
            _read_iphc(r, src_link, dst_link, contexts, resolve, layers, depth + 1)
            return
        ext_count += 1
        if ext_count > 8:
            raise ParseError("too many extension headers")
        inner_nh = 0 if more else r.byte("extension header next header")
        length = r.byte("extension header length")
        content = r.take(length, "extension header")
        if eid == 1:
            if (2 + length) % 8:
                raise ParseError("routing header not a multiple of 8 octets")
        else:
            content = _pad_options(content)
        ext_len = (2 + len(content)) // 8 - 1
        ext = _ExtLayer(bytes((inner_nh, ext_len)) + content)
        layers.append(ext)
        if not more:
            return
        previous = ext


def _set_next(layer: _IpLayer | _ExtLayer, proto: int) -> None:
    if isinstance(layer, _IpLayer):
        layer.nh = proto
    else:
        layer.body = bytes((proto,)) + layer.body[1:]


def _uncompressed_length(layers: list[_Layer]) -> int:
    total = 0
    for layer in layers:
        if isinstance(layer, _IpLayer):
            total += HEADER_LENGTH
        elif isinstance(layer, _ExtLayer):
            total += len(layer.body)
        else:
            total += UDP_HEADER_LENGTH
    return total


def header_sizes(data: bytes) -> tuple[int, int]:
    """``(compressed, uncompressed)`` header lengths of a 6LoWPAN datagram: the bytes of
    ``data`` taken by the IPHC/NHC headers and the bytes they expand to. For the 0x41 dispatch
    the uncompressed IPv6 header is payload: ``(1, 0)``. No context or link address needed."""
    if not data:
        raise ParseError("empty 6LoWPAN datagram")
    kind = classify(data)
    if kind is Dispatch.IPV6:
        return 1, 0
    if kind is not Dispatch.IPHC:
        raise ParseError(f"not an IPv6 datagram dispatch ({kind.value})")
    r = _Reader(bytes(data), 0)
    layers: list[_Layer] = []
    _read_iphc(r, None, None, None, False, layers, 0)
    return r.pos, _uncompressed_length(layers)


def decompress(
    data: bytes | bytearray | memoryview,
    src_link: Address,
    dst_link: Address,
    contexts: Contexts | None = None,
    *,
    datagram_size: int | None = None,
) -> Ipv6Packet:
    """Decompress a whole 6LoWPAN datagram (IPHC or 0x41 dispatch first; mesh, broadcast and
    fragment headers already removed). ``src_link``/``dst_link`` are the MAC (or mesh header)
    addresses; ``datagram_size``, when known from fragmentation, must match."""
    raw = bytes(data)
    if not raw:
        raise ParseError("empty 6LoWPAN datagram")
    kind = classify(raw)
    if kind is Dispatch.IPV6:
        packet = Ipv6Packet.from_bytes(raw[1:])
        if datagram_size is not None and datagram_size != len(raw) - 1:
            raise ParseError("datagram size does not match the packet")
        return packet
    if kind is not Dispatch.IPHC:
        raise ParseError(f"not an IPv6 datagram dispatch ({kind.value})")
    r = _Reader(raw, 0)
    layers: list[_Layer] = []
    _read_iphc(r, src_link, dst_link, contexts, True, layers, 0)
    tail = raw[r.pos :]
    if datagram_size is not None and datagram_size != _uncompressed_length(layers) + len(tail):
        raise ParseError("datagram size does not match the compressed packet")
    enclosing = [layer for layer in layers if isinstance(layer, _IpLayer)][-1]
    for layer in reversed(layers[1:]):
        if isinstance(layer, _UdpLayer):
            length = UDP_HEADER_LENGTH + len(tail)
            if length > 0xFFFF:
                raise ParseError("UDP datagram too long")
            head = layer.sport.to_bytes(2, "big") + layer.dport.to_bytes(2, "big")
            head += length.to_bytes(2, "big")
            checksum = layer.checksum
            if checksum is None:
                checksum = upper_layer_checksum(
                    IPv6Address(enclosing.src),
                    IPv6Address(enclosing.dst),
                    PROTO_UDP,
                    head + b"\x00\x00" + tail,
                )
            tail = head + checksum.to_bytes(2, "big") + tail
        elif isinstance(layer, _ExtLayer):
            tail = layer.body + tail
        else:
            tail = _ip_header(layer, len(tail)) + tail
    outer = layers[0]
    assert isinstance(outer, _IpLayer)
    if len(tail) > 0xFFFF:
        raise ParseError("IPv6 payload too long")
    return Ipv6Packet(
        IPv6Address(outer.src),
        IPv6Address(outer.dst),
        outer.nh,
        tail,
        outer.hlim,
        outer.tc,
        outer.fl,
    )


def _ip_header(layer: _IpLayer, payload_length: int) -> bytes:
    if payload_length > 0xFFFF:
        raise ParseError("IPv6 payload too long")
    first = (6 << 28) | (layer.tc << 20) | layer.fl
    return (
        first.to_bytes(4, "big")
        + payload_length.to_bytes(2, "big")
        + bytes((layer.nh, layer.hlim))
        + layer.src
        + layer.dst
    )


# -- compression ---------------------------------------------------------------------------


def _encode_tf(tc: int, fl: int) -> tuple[int, bytes]:
    ecn, dscp = tc & 3, tc >> 2
    if tc == 0 and fl == 0:
        return 3, b""
    if fl == 0:
        return 2, bytes(((ecn << 6) | dscp,))
    if dscp == 0:
        return 1, ((ecn << 22) | fl).to_bytes(3, "big")
    return 0, bytes(((ecn << 6) | dscp,)) + fl.to_bytes(3, "big")


def _unicast_candidates(
    addr: bytes, link: Address, contexts: Contexts | None
) -> list[tuple[int, int, int, bytes]]:
    """``(cost, ac, am, inline)`` with ``am`` in 1..3 forms; cid is folded into ``ac``: ac is
    ``0`` for stateless, ``1 + cid`` for context ``cid``."""
    out: list[tuple[int, int, int, bytes]] = []
    iid = addr[8:]
    forms: list[tuple[int, bytes]] = []
    try:
        if link_iid(link) == iid:
            forms.append((3, b""))
    except ParseError:
        pass
    if iid[:6] == _SHORT_IID_PREFIX:
        forms.append((2, iid[6:]))
    forms.append((1, iid))
    if addr[:8] == _LINK_LOCAL_PREFIX:
        am, inline = forms[0]
        out.append((len(inline), 0, am, inline))
    if contexts:
        for cid, ctx in sorted(contexts.items()):
            if not ctx.compress or not 0 <= cid <= 15:
                continue
            for am, inline in forms:
                if _overlay(ctx, bytes(8) + _iid_bits(am, inline, link)) == addr:
                    out.append((len(inline) + (1 if cid else 0), 1 + cid, am, inline))
                    break
    return out


def _multicast_form(addr: bytes, contexts: Contexts | None) -> tuple[int, int, int, bytes]:
    """``(cost, dac_plus_cid, dam, inline)`` for a multicast destination."""
    if addr[1] == 0x02 and addr[2:15] == bytes(13):
        return 1, 0, 3, addr[15:]
    if addr[2:13] == bytes(11):
        return 4, 0, 2, addr[1:2] + addr[13:]
    if addr[2:11] == bytes(9):
        return 6, 0, 1, addr[1:2] + addr[11:]
    if contexts:
        for cid, ctx in sorted(contexts.items()):
            plen = ctx.prefix.prefixlen
            if not ctx.compress or not 0 <= cid <= 15 or plen > 64:
                continue
            if addr[3] == plen and addr[4:12] == ctx.prefix.network_address.packed[:8]:
                return 6 + (1 if cid else 0), 1 + cid, 0, addr[1:3] + addr[12:]
    return 16, 0, 0, addr


def _options_trailing_pad(options: bytes) -> int | None:
    """Length of the canonical trailing Pad1/PadN a decompressor would regenerate, or None when
    the options are malformed."""
    pos = 0
    last = (0, 0)
    while pos < len(options):
        if options[pos] == 0:
            last = (pos, 1)
            pos += 1
            continue
        if pos + 2 > len(options):
            return None
        size = 2 + options[pos + 1]
        if pos + size > len(options):
            return None
        last = (pos, size)
        pos += size
    start, size = last
    if size == 0:
        return 0
    tail = options[start:]
    if not (tail == b"\x00" or (tail[0] == 1 and not any(tail[2:]))):
        return 0
    if _pad_options(options[:start]) != options:
        return 0
    return size


def _compress_chain(
    nh: int,
    payload: bytes,
    src_link: Address,
    dst_link: Address,
    contexts: Contexts | None,
    elide_checksum: bool,
    enclosing: tuple[bytes, bytes],
    depth: int,
) -> tuple[bytes, bytes] | None:
    """NHC encoding of the header chain starting with protocol ``nh`` in ``payload``:
    ``(nhc_bytes, rest)`` or ``None`` when that header stays inline."""
    if nh == PROTO_UDP:
        if len(payload) < UDP_HEADER_LENGTH:
            return None
        if int.from_bytes(payload[4:6], "big") != len(payload):
            return None
        sport, dport = int.from_bytes(payload[0:2], "big"), int.from_bytes(payload[2:4], "big")
        checksum = payload[6:8]
        if elide_checksum:
            want = upper_layer_checksum(
                IPv6Address(enclosing[0]),
                IPv6Address(enclosing[1]),
                PROTO_UDP,
                payload[:6] + b"\x00\x00" + payload[8:],
            )
            if int.from_bytes(checksum, "big") != want:
                elide_checksum = False  # only a correct checksum can be recomputed
        if sport & 0xFFF0 == 0xF0B0 and dport & 0xFFF0 == 0xF0B0:
            head = bytes((0xF3, ((sport & 0xF) << 4) | (dport & 0xF)))
        elif sport & 0xFF00 == 0xF000:
            head = bytes((0xF2, sport & 0xFF)) + payload[2:4]
        elif dport & 0xFF00 == 0xF000:
            head = bytes((0xF1,)) + payload[0:2] + bytes((dport & 0xFF,))
        else:
            head = b"\xf0" + payload[0:4]
        if elide_checksum:
            return bytes((head[0] | 4,)) + head[1:], payload[8:]
        return head + checksum, payload[8:]
    if nh == PROTO_IPV6:
        if depth >= 4:
            return None
        try:
            inner = Ipv6Packet.from_bytes(payload)
        except ParseError:
            return None
        if HEADER_LENGTH + len(inner.payload) != len(payload):
            return None
        return b"\xee" + _compress_packet(
            inner, src_link, dst_link, contexts, elide_checksum, depth + 1
        ), b""
    eid = _EXT_EIDS.get(nh)
    if eid is None or len(payload) < 8:
        return None
    total = (payload[1] + 1) * 8
    if total > len(payload):
        return None
    content = payload[2:total]
    if eid != 1:
        pad = _options_trailing_pad(content)
        if pad is None:
            return None
        content = content[: len(content) - pad]
    if len(content) > 0xFF:
        return None
    inner_nh, rest = payload[0], payload[total:]
    follow = _compress_chain(
        inner_nh, rest, src_link, dst_link, contexts, elide_checksum, enclosing, depth
    )
    if follow is None:
        return bytes((0xE0 | (eid << 1), inner_nh, len(content))) + content, rest
    nhc, rest = follow
    return bytes((0xE1 | (eid << 1), len(content))) + content + nhc, rest


def _compress_packet(
    packet: Ipv6Packet,
    src_link: Address,
    dst_link: Address,
    contexts: Contexts | None,
    elide_checksum: bool,
    depth: int,
) -> bytes:
    src, dst = packet.src.packed, packet.dst.packed
    tf, tf_inline = _encode_tf(packet.traffic_class, packet.flow_label)
    hlim_mode = {1: 1, 64: 2, 255: 3}.get(packet.hop_limit, 0)

    # source
    if src == _ZERO16:
        sac, sam, s_inline, sci = 1, 0, b"", 0
    else:
        cands = _unicast_candidates(src, src_link, contexts)
        if cands:
            _cost, ac, sam, s_inline = min(cands, key=lambda c: (c[0], c[1]))
            sac, sci = (1, ac - 1) if ac else (0, 0)
        else:
            sac, sam, s_inline, sci = 0, 0, src, 0
    # destination
    if dst[0] == 0xFF:
        m = 1
        _cost, dc, dam, d_inline = _multicast_form(dst, contexts)
        dac, dci = (1, dc - 1) if dc else (0, 0)
    else:
        m = 0
        cands = _unicast_candidates(dst, dst_link, contexts)
        if cands:
            _cost, dc, dam, d_inline = min(cands, key=lambda c: (c[0], c[1]))
            dac, dci = (1, dc - 1) if dc else (0, 0)
        else:
            dac, dam, d_inline, dci = 0, 0, dst, 0

    chain = _compress_chain(
        packet.next_header,
        packet.payload,
        src_link,
        dst_link,
        contexts,
        elide_checksum,
        (src, dst),
        depth,
    )
    cid = 1 if (sci or dci) else 0
    b0 = 0x60 | (tf << 3) | (4 if chain is not None else 0) | hlim_mode
    b1 = (cid << 7) | (sac << 6) | (sam << 4) | (m << 3) | (dac << 2) | dam
    out = bytearray((b0, b1))
    if cid:
        out.append((sci << 4) | dci)
    out += tf_inline
    if chain is None:
        out.append(packet.next_header)
    if not hlim_mode:
        out.append(packet.hop_limit)
    out += s_inline + d_inline
    if chain is None:
        return bytes(out) + packet.payload
    nhc, rest = chain
    return bytes(out) + nhc + rest


def compress(
    packet: Ipv6Packet,
    src_link: Address,
    dst_link: Address,
    contexts: Contexts | None = None,
    *,
    elide_udp_checksum: bool = False,
) -> bytes:
    """IPHC-compress ``packet`` for a frame from ``src_link`` to ``dst_link``.

    Uses stateless link-local and context-based forms (contexts with ``compress=True``),
    multicast forms, UDP NHC (ports in their shortest form; checksum inline unless
    ``elide_udp_checksum`` and the checksum is correct), and extension header NHC for
    Hop-by-Hop, Routing and Destination Options headers and IPv6-in-IPv6.
    """
    return _compress_packet(packet, src_link, dst_link, contexts, elide_udp_checksum, 0)
