"""Fuzz targets of border routing, registered into :data:`tests.fuzz.fuzz_parsers.TARGETS`:
the Neighbor Discovery parser (:func:`gateway.wire.nd6.parse_nd`) on raw bytes, and the routing
manager (:class:`gateway.thread.border.routing.RoutingManager`) on *records*::

    record = kind (1) | source (1) | dt (1, 100 ms units) | length (1) | data

kind 0: ``data`` as an ICMPv6 body from link-local ``fe80::<source>`` (hop limit 255); 1: the
same from a global source or with hop limit 64; 2: Network Data bytes (parsed; malformed ones
are skipped) as the leader's; 3: stop and start again. Invariants: nothing escapes, the LAN
tables stay within their bounds, no deadline is left in the past after a poll, every RA out
parses again."""

from __future__ import annotations

import ipaddress
import random

from gateway.errors import ParseError
from gateway.thread.border.routing import (
    MAX_PREFIXES,
    MAX_ROUTERS,
    RoutingManager,
    SendRa,
)
from gateway.thread.network.netdata import (
    BorderRouterEntry,
    NetworkDataLeader,
    OwnPrefix,
    parse_network_data,
)
from gateway.wire.nd6 import PrefixInfo, RouteInfo, RouterAdvert, RouterSolicit, parse_nd
from tests.fuzz.fuzz_network import NetworkTarget

__all__ = ["BORDER_TARGETS"]

Net = ipaddress.IPv6Network


def t_nd6(data: bytes) -> None:
    msg = parse_nd(data)
    if isinstance(msg, RouterAdvert):
        assert parse_nd(msg.to_bytes()) == msg
    elif isinstance(msg, RouterSolicit):
        assert isinstance(parse_nd(msg.to_bytes()), RouterSolicit)


def _ra(*prefixes: str, routes: tuple[str, ...] = (), lifetime: int = 0) -> bytes:
    return RouterAdvert(
        router_lifetime=lifetime,
        prefixes=tuple(PrefixInfo(Net(p), 3600, 3600) for p in prefixes),
        routes=tuple(RouteInfo(Net(r), 1800) for r in routes),
        slla=bytes(6),
    ).to_bytes()


def _nd_seeds() -> list[bytes]:
    return [
        _ra("fd00:1::/64"),
        _ra("2001:db8::/64", routes=("fd11::/64", "::/0"), lifetime=1800),
        RouterSolicit(bytes(6)).to_bytes(),
        bytes((134, 0, 0, 0)) + bytes(12),
    ]


def _rec(kind: int, source: int, dt: int, data: bytes) -> bytes:
    return bytes((kind, source, dt, len(data) & 0xFF)) + data[:255]


def t_routing(data: bytes) -> None:
    now = 100.0
    rm = RoutingManager(Net("fdcc:3fef:384::/48"), bytes(range(8)), rng=random.Random(1))
    rm.start(now)
    i = 0
    while i + 4 <= len(data):
        kind, source, dt, n = data[i], data[i + 1], data[i + 2], data[i + 3]
        body = data[i + 4 : i + 4 + n]
        i += 4 + n
        now += dt / 10
        rm.poll(now)
        if kind % 4 == 0:
            rm.nd_received(ipaddress.IPv6Address(f"fe80::{source + 1:x}"), body, now)
        elif kind % 4 == 1:
            rm.nd_received(ipaddress.IPv6Address(f"2001:db8::{source:x}"), body, now, hop_limit=64)
        elif kind % 4 == 2:
            try:
                nd = parse_network_data(body)
            except ParseError:
                continue
            rm.netdata_changed(nd, source << 8, now)
        else:
            rm.stop(now)
            rm.start(now)
        d = rm.describe(now)
        assert len(d["lan_routers"]) <= MAX_ROUTERS
        assert (
            sum(len(r["on_link_prefixes"]) + len(r["routes"]) for r in d["lan_routers"])
            <= MAX_PREFIXES
        )
        t = rm.next_timeout()
        assert t is None or t > now or t == now and rm.running
        for a in rm.actions():
            if isinstance(a, SendRa):
                assert isinstance(parse_nd(a.payload), RouterAdvert)


def _routing_seeds() -> list[bytes]:
    leader = NetworkDataLeader(0x0400, rng=random.Random(2))
    flags = BorderRouterEntry.PREFERRED | BorderRouterEntry.SLAAC | BorderRouterEntry.ON_MESH
    leader.set_own_prefixes([OwnPrefix(Net("fd00:1::/64"), br_flags=flags)], 0.0)
    nd = leader.full.to_bytes()
    return [
        _rec(0, 1, 100, _ra("fd00:abcd::/64")) + _rec(0, 2, 100, b"") + _rec(2, 4, 50, nd),
        _rec(0, 3, 10, _ra("2001:db8::/64", lifetime=600)) + _rec(3, 0, 200, b"")
        + _rec(0, 3, 10, RouterSolicit().to_bytes()) + _rec(1, 0, 1, _ra("fd00::/64")),
    ]  # fmt: skip


BORDER_TARGETS: tuple[NetworkTarget, ...] = (
    NetworkTarget("border.nd6", t_nd6, (ParseError,), _nd_seeds, 300, ("nd6.parse_nd",)),
    NetworkTarget(
        "border.routing",
        t_routing,
        (),
        _routing_seeds,
        1200,
        (
            "[thread.border] routing.RoutingManager.nd_received",
            "[thread.border] routing.RoutingManager.netdata_changed",
        ),
    ),  # fmt: skip
)
