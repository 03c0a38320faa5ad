"""Mesh header forwarding decisions (fact sheet §10.1)."""

from __future__ import annotations

from gateway.thread.network.mesh import (
    INITIAL_HOPS_LEFT,
    MeshDrop,
    mesh_header_for,
    receive_mesh,
)
from gateway.thread.network.routing import RoutingTable
from gateway.wire.lowpan import MeshHeader
from gateway.wire.mac802154 import ExtAddress, ShortAddress
from gateway.wire.mle import Route64Tlv, RouteEntry

ME = 1 << 10  # router 1


def line() -> RoutingTable:
    """Router 1 (us) - router 2 - router 3; 3 is not our neighbour."""
    t = RoutingTable(1)
    t.set_neighbor(2, 3, 3, 0.0)
    t.update_from_route64(
        2,
        Route64Tlv(1, (RouteEntry(1, 3, 3, 1), RouteEntry(2, 0, 0, 1), RouteEntry(3, 3, 3, 1))),
        0,
    )
    return t


def hdr(hops: int, src: int, dst: int) -> MeshHeader:
    return MeshHeader(hops, ShortAddress(src), ShortAddress(dst))


def test_originator_adds_a_deep_hops_header_only_beyond_a_neighbour() -> None:
    t = line()
    hop, h = mesh_header_for(t, ME, 3 << 10 | 5) or (None, None)
    assert hop == 2 << 10 and h is not None
    assert h.to_bytes() == bytes.fromhex("bf13") + ME.to_bytes(2, "big") + (0x0C05).to_bytes(
        2, "big"
    )
    assert h.hops_left == INITIAL_HOPS_LEFT == 19
    assert mesh_header_for(t, ME, 2 << 10) == (2 << 10, None)
    assert mesh_header_for(t, ME, ME | 7) == (ME | 7, None)  # our child
    assert mesh_header_for(t, ME, 9 << 10) is None


def test_forward_decrements_and_delivers_to_us_and_children() -> None:
    t = line()
    d = receive_mesh(t, ME, hdr(19, 3 << 10, ME), 2 << 10, secured=True)
    assert d.action == "deliver" and d.final == ME
    d = receive_mesh(t, ME, hdr(19, 3 << 10, ME | 4), 2 << 10, secured=True, is_my_child=True)
    assert d.action == "deliver"
    t.set_neighbor(4, 3, 3, 0.0)
    d = receive_mesh(t, ME, hdr(15, 4 << 10, 3 << 10), 4 << 10, secured=True)
    assert d.action == "forward" and d.next_hop == 2 << 10
    assert d.header is not None and d.header.hops_left == 14
    assert d.header.to_bytes()[0] & 0x0F == 14  # 14 fits the short form again


def test_hostile_mesh_frames_are_dropped_with_a_reason() -> None:
    t = line()
    t.set_neighbor(4, 3, 3, 0.0)
    assert (
        receive_mesh(t, ME, hdr(5, 4 << 10, 3 << 10), 4 << 10, secured=False).reason
        is MeshDrop.UNSECURED
    )
    assert (
        receive_mesh(t, ME, hdr(0, 4 << 10, 3 << 10), 4 << 10, secured=True).reason
        is MeshDrop.HOPS_EXHAUSTED
    )
    assert (
        receive_mesh(t, ME, hdr(5, 4 << 10, 9 << 10), 4 << 10, secured=True).reason
        is MeshDrop.NO_ROUTE
    )
    ext = MeshHeader(5, ExtAddress(bytes(8)), ShortAddress(3 << 10))
    assert receive_mesh(t, ME, ext, 4 << 10, secured=True).reason is MeshDrop.NOT_SHORT


def test_a_two_hop_loop_invalidates_the_route() -> None:
    t = line()
    d = receive_mesh(t, ME, hdr(10, 4 << 10, 3 << 10), 2 << 10, secured=True)
    assert d.reason is MeshDrop.LOOP
    assert t.next_hop_and_cost(3) == (None, 16)
    again = receive_mesh(t, ME, hdr(9, 4 << 10, 3 << 10), 2 << 10, secured=True)
    assert again.reason is MeshDrop.NO_ROUTE
