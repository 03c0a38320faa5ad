"""Fuzz targets of the Thread network core (gateway/thread/network), registered into
:data:`tests.fuzz.fuzz_parsers.TARGETS`.

The parsers (Network Data, the TMF address TLVs, ICMPv6 echo and the MPL option, snapshots)
get raw bytes. The two attach state machines get *records*, so that mutated inputs still reach
past the MLE message integrity check::

    record = kind (1) | peer (1) | dt (1, 10 ms units) | length (1) | data

Before each record the clock moves by ``dt`` and the core is polled. Parent core
(:class:`RouterCore`): kind 0 a raw PSDU; 1 MLE plaintext (command + TLV bytes, however
malformed) that the target secures with the network key as neighbour ``peer``; 2 a Child ID
Request whose first TLV is the Response the core expects, followed by ``data``; 3 a MAC Data
Request poll; 4 acknowledge (bit 0 of data) every frame handed out. Child core
(:class:`ChildCore`): 0 raw PSDU; 1 MLE plaintext from the parent; 2 a Parent Response
answering the child's current challenge, then ``data``; 3 a MAC-secured frame from the parent
carrying ``data`` as 6LoWPAN payload; 4 report every transmission (bit 0 acked, bit 1 frame
pending).

Invariants: nothing escapes, the child table and every indirect queue stay within their
bounds, no deadline is left in the past after a poll, every frame out encodes into one PSDU.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import random
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from gateway.errors import ParseError
from gateway.thread.link import LinkSecurity, TagAllocator
from gateway.thread.network.child import ChildConfig, ChildCore
from gateway.thread.network.child_table import ChildSnapshot
from gateway.thread.network.errors import InvalidSnapshot
from gateway.thread.network.events import Transmit
from gateway.thread.network.frames import data_frames, data_request_frame, mle_frames, protect
from gateway.thread.network.ip6 import Echo, MplOption, add_mpl, echo_packet, parse_echo, strip_mpl
from gateway.thread.network.mesh import receive_mesh
from gateway.thread.network.netdata import (
    BorderRouterEntry,
    BorderRouterTlv,
    ContextTlv,
    HasRouteEntry,
    HasRouteTlv,
    NetworkData,
    PrefixTlv,
    ServerTlv,
    ServiceTlv,
    parse_network_data,
)
from gateway.thread.network.router import RouterConfig, RouterCore
from gateway.thread.network.router_ids import (
    MAX_ALLOCATED_ROUTERS,
    RouterIdTable,
    address_release_payload,
    address_solicit_payload,
)
from gateway.thread.network.routing import INFINITE_COST, RoutingTable
from gateway.thread.network.security import KeyManager
from gateway.thread.network.snapshot import ChildNodeSnapshot, RouterSnapshot
from gateway.thread.network.tmf_tlvs import AddressTlvs, encode_thread_tlvs, parse_thread_tlvs
from gateway.wire.dataset import ActiveDataset, new_active_dataset
from gateway.wire.ipv6 import Ipv6Packet
from gateway.wire.mac802154 import BROADCAST, ExtAddress, MacFrame, ShortAddress
from gateway.wire.mle import (
    MLE_HOP_LIMIT,
    MLE_PORT,
    Address16Tlv,
    AddressRegistrationEntry,
    AddressRegistrationTlv,
    AuxSecurityHeader,
    ChallengeTlv,
    ConnectivityTlv,
    LeaderDataTlv,
    LinkFrameCounterTlv,
    LinkMarginTlv,
    MleCommand,
    MleFrameCounterTlv,
    ModeTlv,
    NetworkDataTlv,
    ResponseTlv,
    ScanMaskTlv,
    SourceAddressTlv,
    TimeoutTlv,
    TlvRequestTlv,
    VersionTlv,
    encode_mle_tlvs,
    mle_nonce,
)

__all__ = ["NETWORK_TARGETS", "NetworkTarget"]

Addr = ipaddress.IPv6Address
PREFIX = "[thread.network] "
GATEWAY = ExtAddress.from_hex("12b4300000000001")
PARENT = ExtAddress.from_hex("1ab4300000000009")
MAX_CHILDREN = 4
MAX_QUEUE = 4


class NetworkTarget(NamedTuple):
    name: str
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], Sequence[bytes]]
    max_len: int
    entry_points: tuple[str, ...]


@functools.cache
def _ds() -> ActiveDataset:
    return new_active_dataset(random.Random(77), channel=15, network_name="FuzzNet")


def _ll(ext: ExtAddress) -> Addr:
    return Addr(b"\xfe\x80" + bytes(6) + ext.iid())


def _peer_ext(n: int) -> ExtAddress:
    return ExtAddress((0xAA00_0000_0000_0000 | (n & 0x07)).to_bytes(8, "big"))


def _seal_raw(plain: bytes, keys: KeyManager, src: Addr, dst: Addr) -> Ipv6Packet:
    """An MLE datagram around arbitrary plaintext (command + TLV bytes, valid or not)."""
    fc = keys.next_mle_counter()
    aux = AuxSecurityHeader(fc, keys.key_sequence).to_bytes()
    sealed = AESCCM(keys.mle_key, tag_length=4).encrypt(
        mle_nonce(src, fc), plain, src.packed + dst.packed + aux
    )
    return Ipv6Packet.udp(
        src, dst, MLE_PORT, MLE_PORT, b"\x00" + aux + sealed, hop_limit=MLE_HOP_LIMIT
    )


def _records(data: bytes) -> list[tuple[int, int, int, bytes]]:
    out: list[tuple[int, int, int, bytes]] = []
    pos = 0
    while pos + 4 <= len(data) and len(out) < 64:
        kind, peer, dt, n = data[pos : pos + 4]
        out.append((kind, peer, dt, data[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return out


def rec(kind: int, peer: int, dt: int, data: bytes = b"") -> bytes:
    return bytes((kind, peer, dt, len(data))) + data


def _check_frame(frame: MacFrame, security: LinkSecurity) -> None:
    extra = 4 + 6 if security is LinkSecurity.MAC else 0  # MIC + key id mode 1 aux header
    size = len(frame.header_bytes()) + len(frame.payload) + extra + 2
    if size > 127:
        raise AssertionError(f"a {size}-byte PSDU")


# --- parsers -----------------------------------------------------------------------------------


def t_netdata(data: bytes) -> None:
    nd = parse_network_data(data)
    if nd.to_bytes() != data:
        raise AssertionError("Network Data does not re-encode to the same bytes")
    st = nd.stable_subset()
    if parse_network_data(st.to_bytes()) != st:
        raise AssertionError("the stable subset does not round-trip")
    nd.contexts()
    json.dumps(nd.describe())


def _netdata_seeds() -> list[bytes]:
    rich = NetworkData(
        (
            PrefixTlv.of(
                "fd00:dead:beef:cafe::/64",
                [
                    BorderRouterTlv((BorderRouterEntry(0xDC00, 0x3300),), True),
                    HasRouteTlv((HasRouteEntry(0x0400, 0x40),), False),
                    ContextTlv(1, 64, True, True),
                ],
            ),
            ServiceTlv(
                2, b"\x5c\x01", sub_tlvs=(ServerTlv(0x0400, b"\x12\x34", True),), stable=True
            ),
            ServiceTlv(3, b"\x01", enterprise_number=123, sub_tlvs=(ServerTlv(0x0800, b""),)),
        )
    )
    return [
        bytes.fromhex("08040b02174703140040fd00deadbeefcafe0504dc00330007021140"),
        rich.to_bytes(),
        bytes.fromhex("08040b021234"),
    ]


def t_tmf_tlvs(data: bytes) -> None:
    f = parse_thread_tlvs(data)
    again = parse_thread_tlvs(b"".join(t.to_bytes() for t in encode_thread_tlvs(f)))
    if again != f:
        raise AssertionError("address TLVs do not round-trip")


def _tmf_seeds() -> list[bytes]:
    f = AddressTlvs(
        target=Addr("fd00::1234"),
        ml_eid_iid=bytes(range(8)),
        rloc16=0x5400,
        last_transaction_time=12,
    )
    return [
        b"".join(t.to_bytes() for t in f.to_tlvs()),
        b"".join(t.to_bytes() for t in AddressTlvs(target=Addr("fd00::1")).to_tlvs()),
    ]


def t_router_ids(data: bytes) -> None:
    """Records of Address Solicit (kind even) and Release (odd) payloads at growing times: the
    table never holds more than 32 routers or an invalid ID, its mask matches it, and every
    answer parses."""
    table = RouterIdTable(random.Random(7), 0x80)
    now = 0.0
    for kind, _peer, dt, payload in _records(data):
        now += dt
        try:
            if kind % 2:
                address_release_payload(table, payload, now)
            else:
                parse_thread_tlvs(address_solicit_payload(table, payload, now))
        except ParseError:
            continue
        ids = table.allocated()
        if len(ids) > MAX_ALLOCATED_ROUTERS or any(not 0 <= r <= 62 for r in ids):
            raise AssertionError(f"router table out of bounds: {ids}")
        if sum(bin(b).count("1") for b in table.mask()) != len(ids):
            raise AssertionError("router mask disagrees with the table")


def _router_id_seeds() -> list[bytes]:
    def solicit(n: int, reason: int, rloc: int | None = None) -> bytes:
        f = AddressTlvs(ext_mac=bytes(7) + bytes((n,)), rloc16=rloc, status=reason)
        return b"".join(t.to_bytes() for t in f.to_tlvs())

    release = b"".join(
        t.to_bytes() for t in AddressTlvs(ext_mac=bytes(7) + b"\x01", rloc16=0x5400).to_tlvs()
    )
    return [
        rec(0, 0, 0, solicit(1, 2, 0x5400)) + rec(1, 0, 5, release) + rec(0, 0, 120, solicit(2, 3)),
        b"".join(rec(0, 0, 0, solicit(n, 3)) for n in range(34)),
    ]


def t_mesh_routes(data: bytes) -> None:
    """Records of forged Advertisements (kind even: a Route64 value from neighbour ``peer % 4 +
    2``) and mesh frames (odd: a mesh header from that neighbour) to router 1: no route cost
    reaches 16 or more, a forward always decrements hops left and never goes back to the
    sender, aging removes every neighbour."""
    from gateway.wire.lowpan import MeshHeader
    from gateway.wire.mle import Route64Tlv

    table = RoutingTable(1)
    for n in range(2, 6):
        table.set_neighbor(n, 3, 3, 0.0)
    now = 0.0
    for kind, peer, dt, payload in _records(data):
        now += dt / 10
        sender = peer % 4 + 2
        try:
            if kind % 2 == 0:
                table.update_from_route64(sender, Route64Tlv.from_value(payload), now)
                continue
            header, _ = MeshHeader.parse(payload)
        except ParseError:
            continue
        d = receive_mesh(table, 1 << 10, header, sender << 10, secured=bool(kind & 2))
        if d.action == "forward" and (
            d.header is None
            or d.header.hops_left != header.hops_left - 1
            or d.next_hop == sender << 10
        ):
            raise AssertionError(f"bad forward {d} of {header}")
        for rid in range(63):
            if table.next_hop_and_cost(rid)[1] > INFINITE_COST:
                raise AssertionError("cost above infinity")
    table.age(now + table.max_neighbor_age)
    if table.neighbors or any(table.next_hop_and_cost(r)[0] is not None for r in range(2, 63)):
        raise AssertionError("routes outlived their neighbours")


def _mesh_seeds() -> list[bytes]:
    from gateway.wire.lowpan import MeshHeader
    from gateway.wire.mac802154 import ShortAddress
    from gateway.wire.mle import Route64Tlv, RouteEntry

    route = Route64Tlv(1, (RouteEntry(1, 3, 3, 1), RouteEntry(2, 0, 0, 1), RouteEntry(9, 3, 3, 1)))
    fwd = MeshHeader(19, ShortAddress(0x1000), ShortAddress(9 << 10)).to_bytes()
    back = MeshHeader(3, ShortAddress(0x1000), ShortAddress(9 << 10)).to_bytes()
    return [rec(0, 0, 1, route.value_bytes()) + rec(3, 1, 1, fwd) + rec(3, 0, 1, back)]


def t_ip6(data: bytes) -> None:
    try:
        pkt = Ipv6Packet.from_bytes(data)
    except ParseError:
        return
    _mpl, inner = strip_mpl(pkt)
    parse_echo(inner)


def _ip6_seeds() -> list[bytes]:
    a, b = Addr("fd00::1"), Addr("ff03::1")
    echo = echo_packet(a, b, Echo(True, 1, 2, b"abcdefgh"))
    return [
        echo.to_bytes(),
        add_mpl(echo, MplOption(7, 0x5401)).to_bytes(),
        add_mpl(echo, MplOption(8, None)).to_bytes(),
    ]


def t_snapshot(data: bytes) -> None:
    try:
        obj: Any = json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        return
    for cls in (RouterSnapshot, ChildNodeSnapshot):
        try:
            snap = cls.from_dict(obj)
        except InvalidSnapshot:
            continue
        if cls.from_dict(snap.to_dict()) != snap:
            raise AssertionError("a snapshot does not round-trip")
    if isinstance(obj, dict) and isinstance(obj.get("children"), list):
        for c in obj["children"][:4]:
            try:
                ChildSnapshot.from_dict(c)
            except InvalidSnapshot:
                pass


def _snapshot_seeds() -> list[bytes]:
    core = RouterCore(_ds(), GATEWAY, rng=random.Random(1))
    core.start(0.0)
    d = core.snapshot().to_dict()
    d["children"] = [ChildSnapshot("aa00000000000001", 0x5401, 240, 0x0C, 5).to_dict()]
    child = ChildNodeSnapshot("00" * 8, "11" * 8, 0x400, 0x401, 0x0C, 240, 0, 5, 6, "22" * 8)
    return [json.dumps(d).encode(), json.dumps(child.to_dict()).encode()]


# --- the parent's attach state machine ------------------------------------------------------------


@functools.cache
def _peer_keys() -> KeyManager:
    assert _ds().network_key is not None
    return KeyManager(_ds().network_key)  # type: ignore[arg-type]


def replay_parent(data: bytes) -> RouterCore:
    ds = _ds()
    assert ds.network_key is not None and ds.pan_id is not None
    core = RouterCore(
        ds,
        GATEWAY,
        rng=random.Random(1),
        config=RouterConfig(max_children=MAX_CHILDREN, indirect_queue_messages=MAX_QUEUE),
    )
    now = 10.0
    core.start(now)
    peers = {n: KeyManager(ds.network_key, 0) for n in range(8)}
    tags = TagAllocator(3)
    handles: list[int] = []
    for kind, peer, dt, body in _records(data):
        now += dt * 0.01
        core.poll(now)
        pk = peers[peer & 7]
        ext = _peer_ext(peer)
        frames: list[MacFrame] = []
        if kind == 0:
            try:
                frames = [MacFrame.from_bytes(body)]
            except ParseError:
                frames = []
        elif kind in (1, 2):
            plain = body
            if kind == 2:
                c = core.children_table.get(ext)
                challenge = c.challenge if c is not None and c.challenge else bytes(8)
                plain = (
                    bytes((MleCommand.CHILD_ID_REQUEST,)) + ResponseTlv(challenge).to_bytes() + body
                )
            if not plain:
                continue
            dst = Addr("ff02::2") if peer & 0x80 else _ll(GATEWAY)
            pkt = _seal_raw(plain, pk, _ll(ext), dst)
            mac_dst = BROADCAST if dst.is_multicast else GATEWAY
            frames = [
                protect(t, pk, ext, 0)
                for t in mle_frames(
                    pkt,
                    src=ext,
                    dst=mac_dst,
                    pan_id=ds.pan_id,
                    tags=tags,
                    key_index=pk.mac_key_index,
                )
            ]
        elif kind == 3:
            c = core.children_table.get(ext)
            src: ExtAddress | ShortAddress = ext
            dst2: ExtAddress | ShortAddress = GATEWAY
            if peer & 0x40 and c is not None and c.rloc16 is not None:
                src, dst2 = ShortAddress(c.rloc16), ShortAddress(core.rloc16)
            if len(body) >= 4:
                pk.mac_frame_counter = int.from_bytes(body[:4], "big")
            frames = [protect(data_request_frame(src=src, dst=dst2, pan_id=ds.pan_id), pk, ext, 0)]
        elif kind == 4:
            ok = bool(body[:1] and body[0] & 1)
            for h in handles:
                core.tx_done(h, ok, now)
            handles.clear()
        for f in frames:
            core.frame_received(
                f, now, rssi=-20 - (peer & 0x3F), ack_frame_pending=True if peer & 0x20 else None
            )
        core.poll(now)
        nxt = core.next_timeout()
        if nxt is not None and nxt <= now:
            raise AssertionError(f"a deadline left in the past ({nxt} <= {now})")
        for nf in core.frames_to_send():
            _check_frame(nf.tx.frame, nf.tx.security)
            if nf.handle is not None:
                handles.append(nf.handle)
        core.radio_actions()
        core.events()
        core.ip6_to_host()
        if len(core.children_table) > MAX_CHILDREN:
            raise AssertionError("the child table grew past its bound")
        for c2 in core.children_table:
            if len(c2.queue) > MAX_QUEUE:
                raise AssertionError("an indirect queue grew past its bound")
    core.status(now)
    core.children(now)
    return core


def t_parent_attach(data: bytes) -> None:
    replay_parent(data)


def _tlvs(*items: Any) -> bytes:
    return encode_mle_tlvs(items)


def _parent_seeds() -> list[bytes]:
    pr = bytes((MleCommand.PARENT_REQUEST,)) + _tlvs(
        ModeTlv(0x0C), ChallengeTlv(bytes(range(8))), ScanMaskTlv(0x80), VersionTlv(5)
    )
    pr_sed = bytes((MleCommand.PARENT_REQUEST,)) + _tlvs(
        ModeTlv(0x04), ChallengeTlv(bytes(range(8))), ScanMaskTlv(0xC0), VersionTlv(5)
    )
    reg = AddressRegistrationTlv((AddressRegistrationEntry(bytes(range(8)), 0),))
    cid_rest = _tlvs(
        LinkFrameCounterTlv(0),
        MleFrameCounterTlv(0),
        ModeTlv(0x0C),
        TimeoutTlv(30),
        VersionTlv(5),
        reg,
        TlvRequestTlv((10, 12)),
    )
    cid_sed = _tlvs(
        LinkFrameCounterTlv(0),
        MleFrameCounterTlv(0),
        ModeTlv(0x04),
        TimeoutTlv(30),
        VersionTlv(5),
        reg,
        TlvRequestTlv((10, 12)),
    )
    cur = bytes((MleCommand.CHILD_UPDATE_REQUEST,)) + _tlvs(
        ModeTlv(0x0C), ChallengeTlv(b"\x07" * 8), TimeoutTlv(60), reg, TlvRequestTlv((12,))
    )
    dreq = bytes((MleCommand.DATA_REQUEST,)) + _tlvs(TlvRequestTlv((12,)))
    med = (
        rec(1, 0x80, 0, pr)
        + rec(4, 0, 100, b"\x01")
        + rec(2, 0, 1, cid_rest)
        + rec(4, 0, 1, b"\x01")
        + rec(1, 0, 50, cur)
        + rec(1, 0, 10, dreq)
        + rec(4, 0, 1, b"\x01")
    )
    sed = (
        rec(1, 0x81, 0, pr_sed)
        + rec(4, 1, 100, b"\x01")
        + rec(2, 1, 1, cid_sed)
        + rec(3, 1, 10)
        + rec(4, 1, 1, b"\x01")
        + rec(3, 1, 10)
        + rec(4, 1, 1, b"\x01")
        + rec(3, 0x61, 100)
        + rec(4, 1, 1, b"\x00")
        + rec(3, 0x21, 200)
    )
    return [med, sed, med + sed]


# --- the child's attach state machine -------------------------------------------------------------


def replay_child(data: bytes) -> ChildCore:
    ds = _ds()
    assert ds.network_key is not None and ds.pan_id is not None
    me = ExtAddress.from_hex("c0ffee0000000001")
    core = ChildCore(
        ds, me, rng=random.Random(2), config=ChildConfig(rx_on=False, timeout=30, poll_period=1.0)
    )
    now = 10.0
    core.start(now)
    pk = KeyManager(ds.network_key, 0)
    tags = TagAllocator(5)
    last_pr: bytes = bytes(8)
    pending: list[Transmit] = []
    for kind, peer, dt, body in _records(data):
        now += dt * 0.01
        core.poll(now)
        frames: list[MacFrame] = []
        if kind == 0:
            try:
                frames = [MacFrame.from_bytes(body)]
            except ParseError:
                frames = []
        elif kind in (1, 2):
            plain = body
            if kind == 2:
                plain = (
                    bytes((MleCommand.PARENT_RESPONSE,)) + ResponseTlv(last_pr).to_bytes() + body
                )
            if not plain:
                continue
            dst = Addr("ff02::1") if peer & 0x80 else _ll(me)
            pkt = _seal_raw(plain, pk, _ll(PARENT), dst)
            frames = [
                protect(t, pk, PARENT, 0)
                for t in mle_frames(
                    pkt,
                    src=PARENT,
                    dst=BROADCAST if dst.is_multicast else me,
                    pan_id=ds.pan_id,
                    tags=tags,
                    key_index=pk.mac_key_index,
                )
            ]
        elif kind == 3:
            pkt = Ipv6Packet.udp(_ll(PARENT), _ll(me), 1, 2, body)
            frames = [
                protect(t, pk, PARENT, 0)
                for t in data_frames(
                    pkt,
                    src=PARENT,
                    dst=me,
                    pan_id=ds.pan_id,
                    tags=tags,
                    key_index=pk.mac_key_index,
                    contexts=None,
                )
            ]
        elif kind == 4:
            for t in pending:
                if t.ack_request:
                    core.tx_done(
                        t.handle,
                        bool(body[:1] and body[0] & 1),
                        now,
                        frame_pending=bool(body[:1] and body[0] & 2),
                    )
            pending.clear()
        for f in frames:
            core.frame_received(f, now, rssi=-20 - (peer & 0x3F))
        core.poll(now)
        nxt = core.next_timeout()
        if nxt is not None and nxt <= now:
            raise AssertionError(f"a deadline left in the past ({nxt} <= {now})")
        for t in core.actions():
            frame = MacFrame.from_bytes(t.psdu)
            if len(t.psdu) + 2 > 127:
                raise AssertionError("a PSDU over 127 bytes")
            pending.append(t)
            if frame.dst == BROADCAST and frame.security is None:
                # remember the challenge of a Parent Request for kind 2 (our own key decrypts)
                last_pr = _challenge_of(t.psdu, pk) or last_pr
        core.events()
        if len(pending) > 256:
            pending = pending[-256:]
    core.status(now)
    core.snapshot()
    return core


def _challenge_of(psdu: bytes, keys: KeyManager) -> bytes | None:
    from gateway.thread.link import LinkReceiver
    from gateway.thread.network.security import Drop, open_mle

    try:
        dg = LinkReceiver().receive(MacFrame.from_bytes(psdu), LinkSecurity.NONE, 0.0)
        if dg is None:
            return None
        ch = open_mle(dg, keys).message.get(ChallengeTlv)
    except (Drop, ParseError):
        return None
    return None if ch is None else ch.value


def t_child_attach(data: bytes) -> None:
    replay_child(data)


def _child_seeds() -> list[bytes]:
    presp = _tlvs(
        SourceAddressTlv(0x0400),
        LeaderDataTlv(0x1234, 64, 1, 1, 1),
        LinkFrameCounterTlv(0),
        MleFrameCounterTlv(0),
        ChallengeTlv(bytes(range(8))),
        LinkMarginTlv(60),
        ConnectivityTlv(active_routers=1, sed_buffer_size=1280, sed_datagram_count=1),
        VersionTlv(5),
    )
    cidr = bytes((MleCommand.CHILD_ID_RESPONSE,)) + _tlvs(
        SourceAddressTlv(0x0400),
        LeaderDataTlv(0x1234, 64, 1, 1, 1),
        Address16Tlv(0x0401),
        NetworkDataTlv(b""),
    )
    cur = bytes((MleCommand.CHILD_UPDATE_REQUEST,)) + _tlvs(
        SourceAddressTlv(0x0400),
        LeaderDataTlv(0x1234, 64, 2, 2, 1),
        NetworkDataTlv(b""),
        ChallengeTlv(b"\x05" * 8),
        TlvRequestTlv((2, 19)),
    )
    dresp = bytes((MleCommand.DATA_RESPONSE,)) + _tlvs(
        SourceAddressTlv(0x0400), LeaderDataTlv(0x1234, 64, 3, 3, 1), NetworkDataTlv(b"")
    )
    echo = echo_packet(
        _ll(PARENT), _ll(ExtAddress.from_hex("c0ffee0000000001")), Echo(True, 1, 1, b"ping")
    ).payload
    flow = (
        rec(0, 0, 100)
        + rec(2, 0, 0, presp)
        + rec(0, 0, 100)
        + rec(4, 0, 0, b"\x01")
        + rec(1, 0, 10, cidr)
        + rec(4, 0, 0, b"\x03")
        + rec(1, 0, 10, cur)
        + rec(1, 0x80, 10, dresp)
        + rec(3, 0, 10, echo[:40])
        + rec(4, 0, 100, b"\x00")
    )
    return [flow, rec(0, 0, 100) + rec(2, 0, 0, presp) + rec(0, 0, 200)]


NETWORK_TARGETS: tuple[NetworkTarget, ...] = (
    NetworkTarget(
        "network.netdata",
        t_netdata,
        (ParseError,),
        _netdata_seeds,
        300,
        (PREFIX + "netdata.parse_network_data",),
    ),
    NetworkTarget(
        "network.tmf_tlvs",
        t_tmf_tlvs,
        (ParseError,),
        _tmf_seeds,
        120,
        (PREFIX + "tmf_tlvs.parse_thread_tlvs",),
    ),
    NetworkTarget(
        "network.router_ids",
        t_router_ids,
        (),
        _router_id_seeds,
        700,
        (
            PREFIX + "router_ids.address_solicit_payload",
            PREFIX + "router_ids.address_release_payload",
        ),
    ),
    NetworkTarget(
        "network.mesh_routes",
        t_mesh_routes,
        (),
        _mesh_seeds,
        600,
        (
            PREFIX + "routing.RoutingTable.update_from_route64",
            PREFIX + "mesh.receive_mesh",
        ),
    ),
    NetworkTarget(
        "network.ip6",
        t_ip6,
        (ParseError,),
        _ip6_seeds,
        200,
        (PREFIX + "ip6.parse_echo", PREFIX + "ip6.strip_mpl"),
    ),
    NetworkTarget(
        "network.snapshot",
        t_snapshot,
        (),
        _snapshot_seeds,
        700,
        (
            PREFIX + "snapshot.RouterSnapshot.from_dict",
            PREFIX + "snapshot.ChildNodeSnapshot.from_dict",
            PREFIX + "child_table.ChildSnapshot.from_dict",
        ),
    ),
    NetworkTarget(
        "network.parent_attach",
        t_parent_attach,
        (),
        _parent_seeds,
        900,
        (
            PREFIX + "router.RouterCore.frame_received",
            PREFIX + "security.open_mle",
            PREFIX + "frames.open_mac",
            PREFIX + "security.NeighborCounters.accept",
            PREFIX + "router.RouterCore.tx_done",
            PREFIX + "router.RouterCore.poll",
        ),
    ),
    NetworkTarget(
        "network.child_attach",
        t_child_attach,
        (),
        _child_seeds,
        700,
        (
            PREFIX + "child.ChildCore.frame_received",
            PREFIX + "child.ChildCore.tx_done",
            PREFIX + "child.ChildCore.poll",
        ),
    ),
)
