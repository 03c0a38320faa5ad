"""Router neighbour and route table (fact sheet §7.5-§7.7)."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidArgument
from gateway.thread.network.routing import INFINITE_COST, RoutingTable, link_cost, link_quality
from gateway.wire.mle import Route64Tlv, RouteEntry


def test_link_quality_thresholds_and_hysteresis() -> None:
    assert [link_quality(m) for m in (0, 2, 3, 10, 11, 20, 21, 80)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert link_quality(21, last=2) == 2  # needs > 22 to climb from LQ 2
    assert link_quality(23, last=2) == 3
    assert link_quality(21, last=3) == 3  # no hysteresis going down
    assert [link_cost(q) for q in (3, 2, 1, 0)] == [1, 2, 4, INFINITE_COST]


def test_lone_leader_route64_matches_openthread_bytes() -> None:
    t = RoutingTable(21)
    assert t.route64(0x80, [21]).to_bytes() == bytes.fromhex("090a80000004000000000001")


def adv(seq: int, *entries: RouteEntry) -> Route64Tlv:
    return Route64Tlv(seq, entries)


def test_three_router_line_routes_through_the_middle_and_ages_out() -> None:
    a = RoutingTable(1, max_neighbor_age=10.0)
    a.set_neighbor(2, 3, 3, 0.0)
    # router 2 hears router 3 directly (LQ 3, cost 1) and us
    b_adv = adv(5, RouteEntry(1, 3, 3, 1), RouteEntry(2, 0, 0, 1), RouteEntry(3, 3, 3, 1))
    assert a.update_from_route64(2, b_adv, 1.0)
    assert a.next_hop_and_cost(3) == (2, 2)
    assert a.next_hop_and_cost(2) == (2, 1)
    r = a.route64(5, [1, 2, 3])
    assert [
        (e.router_id, e.link_quality_out, e.link_quality_in, e.route_cost) for e in r.entries
    ] == [
        (1, 0, 0, 1),
        (2, 3, 3, 1),
        (3, 0, 0, 2),
    ]
    assert a.age(5.0) == ()
    assert a.age(11.0) == (2,)
    assert a.next_hop_and_cost(3) == (None, INFINITE_COST)
    assert a.route64(6, [1, 3]).entries[1].route_cost == 0  # infinite is sent as 0


def test_advertisement_from_a_stranger_is_ignored() -> None:
    a = RoutingTable(1)
    assert not a.update_from_route64(9, adv(1, RouteEntry(3, 3, 3, 1), RouteEntry(9, 0, 0, 1)), 0)
    assert a.next_hop_and_cost(3) == (None, INFINITE_COST)


def test_huge_costs_and_a_loop_count_to_infinity() -> None:
    a = RoutingTable(1)
    a.set_neighbor(2, 3, 3, 0.0)
    a.update_from_route64(2, adv(1, RouteEntry(3, 0, 0, 15)), 0.0)
    assert a.next_hop_and_cost(3)[0] is None  # 15 + 1 is infinite
    # a route via 2 that 2 keeps advertising back one higher (two-router loop) dies at 16
    cost = 1
    a.update_from_route64(2, adv(1, RouteEntry(3, 0, 0, cost)), 0.0)
    for _ in range(20):
        _, ours = a.next_hop_and_cost(3)
        if ours >= INFINITE_COST:
            break
        a.update_from_route64(2, adv(1, RouteEntry(3, 0, 0, min(ours + 1, 15))), 0.0)
    assert a.next_hop_and_cost(3) == (None, INFINITE_COST)
    assert a.counters["infinite_routes"] == 1


def test_cheaper_route_wins_and_lq_out_comes_from_the_neighbours_route64() -> None:
    a = RoutingTable(1)
    a.set_neighbor(2, 3, 3, 0.0)
    a.set_neighbor(4, 3, 3, 0.0)
    a.update_from_route64(2, adv(1, RouteEntry(1, 1, 1, 1), RouteEntry(3, 0, 0, 5)), 0.0)
    assert a.next_hop_and_cost(3) == (2, 4 + 5)  # our LQ-out to 2 dropped to 1
    a.update_from_route64(4, adv(1, RouteEntry(3, 0, 0, 2)), 0.0)
    assert a.next_hop_and_cost(3) == (4, 3)
    with pytest.raises(InvalidArgument):
        a.set_neighbor(1, 3, 3, 0.0)
