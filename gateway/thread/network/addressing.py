"""Thread addressing (fact sheet §9): RLOC16 arithmetic, the mesh-local addresses of a node,
the multicast groups it listens to, and MLE Address Registration entries.

* RLOC16 = ``router_id << 10 | child_id`` (child ID 0 = the router itself, 1..511 children).
* RLOC = ``<ML prefix>:0000:00ff:fe00:<RLOC16>``; ALOC the same with an ALOC16 (0xFC00 leader).
* Link-local = ``fe80::<ext address with bit 0x02 of byte 0 inverted>``.
* ML-EID = ``<ML prefix>:<random 64-bit IID>``.
* All-Thread-nodes multicast = ``ff32:40:<ML prefix>::1`` / ``ff33:40:<ML prefix>::1``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from gateway.thread.network.constants import LEADER_ALOC16, MAX_ROUTER_ID
from gateway.thread.network.netdata import BorderRouterEntry, BorderRouterTlv, NetworkData
from gateway.wire.lowpan import LowpanContext
from gateway.wire.mac802154 import ExtAddress
from gateway.wire.mle import AddressRegistrationEntry, AddressRegistrationTlv

__all__ = [
    "LINK_LOCAL_ALL_NODES",
    "LINK_LOCAL_ALL_ROUTERS",
    "REALM_LOCAL_ALL_MPL_FORWARDERS",
    "REALM_LOCAL_ALL_NODES",
    "REALM_LOCAL_ALL_ROUTERS",
    "MeshAddresses",
    "address_registration",
    "all_thread_nodes",
    "child_id_of",
    "ext_from_link_local",
    "is_child_rloc16",
    "is_locator_iid",
    "locator_address",
    "mesh_local_address",
    "multicast_scope",
    "rloc16_of",
    "slaac_address",
    "slaac_prefixes",
    "router_id_of",
    "registered_addresses",
]

Addr = ipaddress.IPv6Address

LINK_LOCAL_ALL_NODES: Final = Addr("ff02::1")
LINK_LOCAL_ALL_ROUTERS: Final = Addr("ff02::2")
REALM_LOCAL_ALL_NODES: Final = Addr("ff03::1")
REALM_LOCAL_ALL_ROUTERS: Final = Addr("ff03::2")
REALM_LOCAL_ALL_MPL_FORWARDERS: Final = Addr("ff03::fc")
LOCATOR_IID_PREFIX: Final = bytes.fromhex("000000fffe00")


def rloc16_of(router_id: int, child_id: int = 0) -> int:
    return ((router_id & 0x3F) << 10) | (child_id & 0x1FF)


def router_id_of(rloc16: int) -> int:
    return (rloc16 >> 10) & 0x3F


def child_id_of(rloc16: int) -> int:
    return rloc16 & 0x1FF


def is_child_rloc16(rloc16: int) -> bool:
    return child_id_of(rloc16) != 0 and router_id_of(rloc16) <= MAX_ROUTER_ID


def mesh_local_address(prefix: bytes, iid: bytes) -> Addr:
    return Addr(bytes(prefix[:8]) + bytes(iid[:8]))


def locator_address(prefix: bytes, rloc16: int) -> Addr:
    """RLOC (or ALOC) of a 16-bit locator."""
    return mesh_local_address(prefix, LOCATOR_IID_PREFIX + rloc16.to_bytes(2, "big"))


def is_locator_iid(iid: bytes) -> bool:
    """``0000:00ff:fe00:xxxx``: an RLOC or ALOC interface identifier."""
    return bytes(iid[:6]) == LOCATOR_IID_PREFIX


def ext_from_link_local(addr: Addr) -> ExtAddress | None:
    """The extended address behind a link-local address (``None`` if the IID is a locator)."""
    if not addr.is_link_local:
        return None
    iid = addr.packed[8:]
    if is_locator_iid(iid):
        return None
    return ExtAddress.from_iid(iid)


def all_thread_nodes(prefix: bytes, scope: int) -> Addr:
    """``ff3<scope>:40:<ML prefix>::1`` (scope 2 link-local, 3 realm-local)."""
    return Addr(bytes((0xFF, 0x30 | scope, 0x00, 0x40)) + bytes(prefix[:8]) + bytes(3) + b"\x01")


def multicast_scope(addr: Addr) -> int:
    return addr.packed[1] & 0x0F


@dataclass(frozen=True, slots=True)
class MeshAddresses:
    """The unicast and multicast addresses of a Thread interface."""

    ml_prefix: bytes
    ext: ExtAddress
    ml_eid_iid: bytes
    rloc16: int | None
    leader: bool = False
    router: bool = False  # routers and FTD children also listen to ff02::2 / ff03::2
    slaac: tuple[Addr, ...] = ()  # addresses from on-mesh SLAAC prefixes (OMR)

    @property
    def link_local(self) -> Addr:
        return Addr(b"\xfe\x80" + bytes(6) + self.ext.iid())

    @property
    def ml_eid(self) -> Addr:
        return mesh_local_address(self.ml_prefix, self.ml_eid_iid)

    @property
    def rloc(self) -> Addr | None:
        return None if self.rloc16 is None else locator_address(self.ml_prefix, self.rloc16)

    @property
    def leader_aloc(self) -> Addr | None:
        return locator_address(self.ml_prefix, LEADER_ALOC16) if self.leader else None

    def unicast(self) -> tuple[Addr, ...]:
        out = [self.link_local, self.ml_eid]
        for a in (self.rloc, self.leader_aloc):
            if a is not None:
                out.append(a)
        out += self.slaac
        return tuple(out)

    def multicast(self) -> tuple[Addr, ...]:
        out = [
            LINK_LOCAL_ALL_NODES,
            REALM_LOCAL_ALL_NODES,
            REALM_LOCAL_ALL_MPL_FORWARDERS,
            all_thread_nodes(self.ml_prefix, 2),
            all_thread_nodes(self.ml_prefix, 3),
        ]
        if self.router:
            out += [LINK_LOCAL_ALL_ROUTERS, REALM_LOCAL_ALL_ROUTERS]
        return tuple(out)

    def is_own(self, addr: Addr) -> bool:
        return addr in self.unicast() or addr in self.multicast()

    def is_mesh_local(self, addr: Addr) -> bool:
        return addr.packed[:8] == bytes(self.ml_prefix[:8])


def slaac_prefixes(netdata: NetworkData) -> tuple[ipaddress.IPv6Network, ...]:
    """The /64 prefixes a node forms SLAAC addresses from (``Slaac::Update``): a Border Router
    entry with the SLAAC and on-mesh flags (and not link-local or multicast)."""
    out: list[ipaddress.IPv6Network] = []
    for p in netdata.prefixes:
        net = p.network
        if net.prefixlen != 64 or net.is_link_local or net.is_multicast or net in out:
            continue
        for sub in p.sub_tlvs:
            if isinstance(sub, BorderRouterTlv) and any(
                e.flags & BorderRouterEntry.SLAAC and e.flags & BorderRouterEntry.ON_MESH
                for e in sub.entries
            ):
                out.append(net)
                break
    return tuple(out)


def slaac_address(prefix: ipaddress.IPv6Network, secret: bytes) -> Addr:
    """A semantically opaque, stable SLAAC address in ``prefix`` (RFC 7217 in spirit): the IID
    is a hash of the node's secret (its ML-EID IID) and the prefix, never an RLOC-shaped or
    reserved one."""
    digest = hashlib.sha256(b"thread-slaac" + secret + prefix.network_address.packed[:8])
    for i in range(0, 24, 8):
        iid = digest.digest()[i : i + 8]
        if not is_locator_iid(iid) and iid != bytes(8):
            break
    return Addr(prefix.network_address.packed[:8] + iid)


def _context_for(addr: Addr, contexts: Mapping[int, LowpanContext]) -> int | None:
    for cid, ctx in sorted(contexts.items()):
        if ctx.compress and ctx.prefix.prefixlen == 64 and addr in ctx.prefix:
            return cid
    return None


def address_registration(
    ml_eid: Addr,
    others: Iterable[Addr] = (),
    *,
    contexts: Mapping[int, LowpanContext] | None = None,
    ml_eid_only: bool = False,
) -> AddressRegistrationTlv:
    """An MTD's Address Registration TLV: the ML-EID first (compressed, context 0), then other
    unicast addresses (compressed if a Network Data context with C = 1 covers them), then
    multicast addresses uncompressed (``TxMessage::AppendAddressRegistrationEntry``)."""
    entries = [AddressRegistrationEntry(ml_eid.packed[8:], 0)]
    if not ml_eid_only:
        ctxs = contexts or {}
        for a in others:
            if a == ml_eid or a.is_link_local:
                continue
            if is_locator_iid(a.packed[8:]) and not a.is_multicast:
                continue
            cid = None if a.is_multicast else _context_for(a, ctxs)
            if cid is None:
                entries.append(AddressRegistrationEntry(a.packed))
            else:
                entries.append(AddressRegistrationEntry(a.packed[8:], cid))
    return AddressRegistrationTlv(tuple(entries))


def registered_addresses(
    tlv: AddressRegistrationTlv, ml_prefix: bytes, contexts: Mapping[int, LowpanContext]
) -> tuple[bytes | None, list[Addr]]:
    """``(ml_eid_iid, other addresses)`` of a received Address Registration: context 0 is the
    *receiver's* mesh-local prefix; an entry with an unknown context is skipped."""
    ml_iid: bytes | None = None
    out: list[Addr] = []
    for e in tlv.entries:
        if e.context_id is None:
            a = Addr(e.address)
        elif e.context_id == 0:
            a = mesh_local_address(ml_prefix, e.address)
        else:
            ctx = contexts.get(e.context_id)
            if ctx is None:
                continue
            a = Addr(ctx.prefix.network_address.packed[:8] + e.address)
        if a.packed[:8] == bytes(ml_prefix[:8]) and not a.is_multicast:
            if is_locator_iid(a.packed[8:]):
                continue
            if ml_iid is None:
                ml_iid = a.packed[8:]
                continue
        if a not in out:
            out.append(a)
    return ml_iid, out
