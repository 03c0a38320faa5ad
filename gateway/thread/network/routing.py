"""A router's neighbour and route table as a sans-IO object (fact sheet §7.5-§7.7; OpenThread
``router_table.cpp`` ``UpdateRoutes``/``GetNextHopAndPathCost``, ``link_quality.cpp``).

Link quality from margin (with OpenThread's 2 dB hysteresis), link cost 1/2/4/16, path costs
through neighbours' advertised costs, updates from received Route64 TLVs, the Route64 we
advertise, and neighbour aging. Costs of 16 or more are infinite, so a forged or looping route
counts up to infinity and is dropped instead of circulating. Times are the caller's seconds.

Not wired into :class:`~gateway.thread.network.router.RouterCore` yet (issue 12).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from gateway.errors import InvalidArgument
from gateway.thread.network.constants import MAX_ROUTER_ID
from gateway.wire.mle import Route64Tlv, RouteEntry

__all__ = [
    "INFINITE_COST",
    "MAX_NEIGHBOR_AGE",
    "Neighbor",
    "RoutingTable",
    "link_cost",
    "link_quality",
]

INFINITE_COST: Final = 16  # kMaxRouteCost
MAX_NEIGHBOR_AGE: Final = 100.0  # kMaxNeighborAge
_THRESHOLDS: Final = ((3, 20), (2, 10), (1, 2))  # LQ, margin it must exceed (dB)
_HYSTERESIS: Final = 2
_COSTS: Final = {3: 1, 2: 2, 1: 4, 0: INFINITE_COST}


def link_quality(margin: int, last: int | None = None) -> int:
    """LQ 3/2/1/0 for a link margin > 20 / > 10 / > 2 dB; thresholds above ``last`` are raised
    by 2 dB (``CalculateLinkQuality``). ``last=None`` is a fresh value without hysteresis."""
    for lq, threshold in _THRESHOLDS:
        if margin > threshold + (_HYSTERESIS if last is not None and lq > last else 0):
            return lq
    return 0


def link_cost(lq: int) -> int:
    return _COSTS.get(lq, INFINITE_COST)


@dataclass(slots=True)
class Neighbor:
    router_id: int
    lq_in: int
    lq_out: int
    last_heard: float

    @property
    def two_way(self) -> int:
        return min(self.lq_in, self.lq_out)


class RoutingTable:
    """Routes of router ``own_id``: valid router neighbours, and for each other router the
    neighbour that advertised it (next hop) with the cost that neighbour advertised."""

    def __init__(self, own_id: int, max_neighbor_age: float = MAX_NEIGHBOR_AGE) -> None:
        if not 0 <= own_id <= MAX_ROUTER_ID:
            raise InvalidArgument(f"router ID must be 0..{MAX_ROUTER_ID}")
        self.own_id = own_id
        self.max_neighbor_age = max_neighbor_age
        self.neighbors: dict[int, Neighbor] = {}
        self._via: dict[int, tuple[int, int]] = {}  # router ID -> (next hop, advertised cost)
        self.counters: dict[str, int] = {"infinite_routes": 0, "neighbors_aged_out": 0}

    # --- links -------------------------------------------------------------------------------
    def link_cost_to(self, router_id: int) -> int:
        n = self.neighbors.get(router_id)
        return INFINITE_COST if n is None else link_cost(n.two_way)

    def set_neighbor(self, router_id: int, lq_in: int, lq_out: int, now: float) -> None:
        """A valid link (after Link Accept, or a promoted child's parent)."""
        if router_id == self.own_id or not 0 <= router_id <= MAX_ROUTER_ID:
            raise InvalidArgument("not a neighbour router ID")
        self.neighbors[router_id] = Neighbor(router_id, lq_in, lq_out, now)

    def remove_neighbor(self, router_id: int) -> None:
        self.neighbors.pop(router_id, None)
        for dest in [d for d, (hop, _) in self._via.items() if hop == router_id]:
            del self._via[dest]

    def age(self, now: float) -> tuple[int, ...]:
        """Remove neighbours silent for ``max_neighbor_age``; their routes go with them."""
        old = tuple(
            r for r, n in self.neighbors.items() if now - n.last_heard >= self.max_neighbor_age
        )
        for r in old:
            self.remove_neighbor(r)
        self.counters["neighbors_aged_out"] += len(old)
        return old

    def invalidate_via(self, dest: int, hop: int) -> bool:
        """Forget the route to ``dest`` through ``hop`` (a 2-hop loop was seen)."""
        if self._via.get(dest, (None, 0))[0] != hop:
            return False
        del self._via[dest]
        self.counters["infinite_routes"] += 1
        return True

    # --- routes --------------------------------------------------------------------------------
    def next_hop_and_cost(self, dest: int) -> tuple[int | None, int]:
        """``GetNextHopAndPathCost`` as a router: the cheaper of the direct link and the route
        through the next hop; ``(None, 16)`` when unreachable."""
        if dest == self.own_id:
            return dest, 0
        best: tuple[int | None, int] = (None, INFINITE_COST)
        direct = self.link_cost_to(dest)
        if direct < INFINITE_COST:
            best = (dest, direct)
        via = self._via.get(dest)
        if via is not None:
            hop, cost = via
            total = cost + self.link_cost_to(hop)
            if total < best[1]:
                best = (hop, total)
        return best

    def update_from_route64(self, sender: int, route: Route64Tlv, now: float) -> bool:
        """Apply a neighbour's Advertisement (``UpdateRoutes``); False when the sender is not a
        valid neighbour (ignored). Refreshes the neighbour and its LQ-out for us."""
        n = self.neighbors.get(sender)
        if n is None:
            return False
        n.last_heard = now
        to_sender = self.link_cost_to(sender)
        for e in route.entries:
            if e.router_id == self.own_id:
                n.lq_out = e.link_quality_in
                to_sender = self.link_cost_to(sender)
        for e in route.entries:
            dest = e.router_id
            if dest in (self.own_id, sender):
                continue
            cost = e.route_cost if e.route_cost else INFINITE_COST  # 0 is read as infinite
            current = self._via.get(dest)
            if current is None or current[0] == sender:
                if cost + to_sender < INFINITE_COST:
                    self._via[dest] = (sender, cost)
                elif current is not None:
                    del self._via[dest]
                    self.counters["infinite_routes"] += 1
            elif cost + to_sender < current[1] + self.link_cost_to(current[0]):
                self._via[dest] = (sender, cost)
        return True

    def route64(self, id_sequence: int, allocated: Iterable[int]) -> Route64Tlv:
        """The Route64 we advertise: own entry 0/0 cost 1; others our link LQs and path cost
        (a cost >= 16 sent as 0)."""
        entries = []
        for rid in sorted(set(allocated)):
            if rid == self.own_id:
                entries.append(RouteEntry(rid, 0, 0, 1))
                continue
            n = self.neighbors.get(rid)
            _, cost = self.next_hop_and_cost(rid)
            entries.append(
                RouteEntry(
                    rid,
                    0 if n is None else n.lq_out,
                    0 if n is None else n.lq_in,
                    cost if cost < INFINITE_COST else 0,
                )
            )
        return Route64Tlv(id_sequence, tuple(entries))
