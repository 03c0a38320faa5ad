"""Mesh forwarding decisions as sans-IO functions (fact sheet §10.1; OpenThread
``mesh_forwarder_ftd.cpp`` ``UpdateMeshRoute``/``HandleMesh``).

The originator adds a mesh header (short addresses, hops left 19) when the next hop is not the
destination; a router receiving one delivers it when the destination is itself or its child,
else forwards it to the next hop with hops left - 1. Everything else is dropped with a reason the
caller counts: unsecured frames, hops left 0, no route, and a 2-hop loop (the frame came from our
own next hop to that destination, which also invalidates that route).

Not wired into :class:`~gateway.thread.network.router.RouterCore` yet (issue 12).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from gateway.thread.network.addressing import router_id_of
from gateway.thread.network.routing import RoutingTable
from gateway.wire.lowpan import MeshHeader
from gateway.wire.mac802154 import ShortAddress

__all__ = [
    "INITIAL_HOPS_LEFT",
    "MeshDecision",
    "MeshDrop",
    "mesh_header_for",
    "receive_mesh",
]

INITIAL_HOPS_LEFT: Final = 16 + 3  # kMaxRouteCost + 3


class MeshDrop(StrEnum):
    UNSECURED = "mesh_unsecured"
    NOT_SHORT = "mesh_not_short"
    HOPS_EXHAUSTED = "mesh_hops_exhausted"
    NO_ROUTE = "mesh_no_route"
    LOOP = "mesh_loop"


@dataclass(frozen=True, slots=True)
class MeshDecision:
    """``deliver`` (to us or our child ``final``), or ``forward`` to ``next_hop`` (an RLOC16)
    with ``header`` (hops left - 1), or ``drop`` with ``reason``."""

    action: str
    final: int = 0
    next_hop: int | None = None
    header: MeshHeader | None = None
    reason: MeshDrop | None = None


def _next_hop_rloc16(table: RoutingTable, own_rloc16: int, dest: int) -> int | None:
    """A child of ours is reached directly; a router (or another router's child) through the
    routing table's next hop towards its router ID."""
    rid = router_id_of(dest)
    if rid == router_id_of(own_rloc16):
        return dest
    hop, _ = table.next_hop_and_cost(rid)
    return None if hop is None else hop << 10


def mesh_header_for(
    table: RoutingTable, own_rloc16: int, dest: int
) -> tuple[int, MeshHeader | None] | None:
    """For a datagram we originate to RLOC16 ``dest``: the MAC next hop and the mesh header
    (``None`` when the next hop is the destination); ``None`` when there is no route."""
    hop = _next_hop_rloc16(table, own_rloc16, dest)
    if hop is None:
        return None
    if hop == dest:
        return hop, None
    return hop, MeshHeader(INITIAL_HOPS_LEFT, ShortAddress(own_rloc16), ShortAddress(dest))


def receive_mesh(
    table: RoutingTable,
    own_rloc16: int,
    header: MeshHeader,
    mac_src: int,
    *,
    secured: bool,
    is_my_child: bool = False,
) -> MeshDecision:
    """``HandleMesh`` for a received frame whose MAC source is RLOC16 ``mac_src``."""
    if not secured:
        return MeshDecision("drop", reason=MeshDrop.UNSECURED)
    if not isinstance(header.final, ShortAddress) or not isinstance(
        header.originator, ShortAddress
    ):
        return MeshDecision("drop", reason=MeshDrop.NOT_SHORT)
    final = header.final.value
    if final == own_rloc16 or (is_my_child and router_id_of(final) == router_id_of(own_rloc16)):
        return MeshDecision("deliver", final=final)
    if header.hops_left == 0:
        return MeshDecision("drop", final=final, reason=MeshDrop.HOPS_EXHAUSTED)
    hop = _next_hop_rloc16(table, own_rloc16, final)
    if hop is None:
        return MeshDecision("drop", final=final, reason=MeshDrop.NO_ROUTE)
    if hop == mac_src:
        # it came from the neighbour we would send it back to: a 2-hop loop
        table.invalidate_via(router_id_of(final), router_id_of(mac_src))
        return MeshDecision("drop", final=final, reason=MeshDrop.LOOP)
    out = MeshHeader(header.hops_left - 1, header.originator, header.final)
    return MeshDecision("forward", final=final, next_hop=hop, header=out)
