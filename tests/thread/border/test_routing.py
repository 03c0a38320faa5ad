"""The border routing decisions (sans-IO, virtual time) against OpenThread's Routing Manager
facts, and the Neighbor Discovery codec against tshark."""

from __future__ import annotations

import ipaddress
import random
import subprocess
from pathlib import Path

import pytest

from drivers.pcap import PcapWriter
from gateway.errors import ParseError
from gateway.thread.border.routing import (
    ULA_ROUTE,
    PublishPrefixes,
    RoutingManager,
    SendRa,
    SendRs,
    generate_ula_prefix,
    onlink_prefix_for,
)
from gateway.thread.network.netdata import (
    BorderRouterEntry,
    NetworkDataLeader,
    OwnPrefix,
)
from gateway.wire.ipv6 import PROTO_ICMPV6, Ipv6Packet, upper_layer_checksum
from gateway.wire.nd6 import (
    PREFERENCE_LOW,
    PREFERENCE_MEDIUM,
    PrefixInfo,
    RouteInfo,
    RouterAdvert,
    RouterSolicit,
    parse_nd,
)
from tests.wire.test_mle import TSHARK, needs_tshark

Net = ipaddress.IPv6Network
XPANID = bytes.fromhex("dead00beef00cafe")
ULA = Net("fdcc:3fef:384::/48")
OWN_RLOC16 = 0x8C00
LAN_ROUTER = ipaddress.IPv6Address("fe80::1")


class Bench:
    """A routing manager and the leader's Network Data it publishes into, in virtual time."""

    def __init__(self, seed: int = 1) -> None:
        self.now = 1000.0
        self.rm = RoutingManager(ULA, XPANID, rng=random.Random(seed), infra_mac=bytes(6))
        self.nd = NetworkDataLeader(OWN_RLOC16, rng=random.Random(seed))
        self.others: tuple[OwnPrefix, ...] = ()
        self.ras: list[tuple[float, RouterAdvert, bool]] = []
        self.rss: list[float] = []
        self.published: tuple[OwnPrefix, ...] = ()

    def _drain(self) -> None:
        for a in self.rm.actions():
            if isinstance(a, SendRa):
                msg = parse_nd(a.payload)
                assert isinstance(msg, RouterAdvert)
                self.ras.append((self.now, msg, a.final))
            elif isinstance(a, SendRs):
                assert isinstance(parse_nd(a.payload), RouterSolicit)
                self.rss.append(self.now)
            elif isinstance(a, PublishPrefixes):
                self.published = a.prefixes
                self._netdata()

    def _netdata(self) -> None:
        """The leader takes our entries; entries of 'other border routers' are merged in as a
        second RLOC16's (the test's stand-in for Network Data from the mesh)."""
        self.nd.set_own_prefixes(self.published, self.now)
        full = self.nd.full
        if self.others:
            other = NetworkDataLeader(0x0400, rng=random.Random(9))
            other.set_own_prefixes(self.others, self.now)
            full = type(full)(full.tlvs + other.full.tlvs)
        self.rm.netdata_changed(full, OWN_RLOC16, self.now)

    def start(self) -> None:
        self.rm.start(self.now)
        self._netdata()
        self._drain()

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            t = self.rm.next_timeout()
            if t is None or t > end:
                break
            self.now = max(self.now, t)
            self.rm.poll(self.now)
            self._drain()
        self.now = end

    def ra_from_lan(self, ra: RouterAdvert, src: ipaddress.IPv6Address = LAN_ROUTER) -> None:
        self.rm.nd_received(src, ra.to_bytes(), self.now)
        self._drain()

    def last_ra(self) -> RouterAdvert:
        return self.ras[-1][1]


def test_prefix_derivations_match_openthread() -> None:
    # routing manager example: ExtPANID dead00beef00cafe -> fdde:ad00:beef:cafe::/64,
    # BR ULA fdcc:3fef:384::/48 -> OMR fdcc:3fef:384:1::/64
    assert onlink_prefix_for(XPANID) == Net("fdde:ad00:beef:cafe::/64")
    rm = RoutingManager(ULA, XPANID)
    assert rm.omr_prefix == Net("fdcc:3fef:384:1::/64")
    for seed in range(20):
        ula = generate_ula_prefix(random.Random(seed))
        assert ula.prefixlen == 48 and ula.network_address.packed[0] == 0xFD


def test_a_lone_border_router_publishes_omr_and_ula_route_and_advertises_both() -> None:
    b = Bench()
    b.start()
    assert not list(b.published)  # nothing before router discovery and the add delay
    b.run(12)
    # three RSs 4 s apart, the first within 1 s
    assert len(b.rss) == 3 and b.rss[0] - 1000.0 <= 1.0
    assert [round(b.rss[i + 1] - b.rss[i], 3) for i in range(2)] == [4.0, 4.0]
    nets = {p.network: p for p in b.published}
    omr = nets[Net("fdcc:3fef:384:1::/64")]
    assert omr.br_flags is not None
    flags = omr.br_flags
    assert flags & BorderRouterEntry.PREFERRED and flags & BorderRouterEntry.SLAAC
    assert flags & BorderRouterEntry.ON_MESH and not flags & BorderRouterEntry.DEFAULT_ROUTE
    assert flags >> 14 == 0b11  # low preference
    route = nets[ULA_ROUTE]
    assert route.route_flags is not None and route.route_flags & 0x10  # AP: advertising a PIO
    assert route.route_flags >> 6 == 0  # medium
    # the Network Data shows it as OpenThread's CLI would: paos low, fc00::/7 s med
    desc = b.nd.full.describe()
    assert any(p["prefix"] == "fdcc:3fef:384:1::/64" for p in desc["prefixes"])
    # RAs: Router Lifetime 0, SNAC flag; RIO for the OMR prefix at medium (leader); PIO L+A
    b.run(20)
    ra = b.last_ra()
    assert ra.router_lifetime == 0 and ra.flags & 0x02
    assert [(r.prefix, r.lifetime, r.preference) for r in ra.routes] == [
        (Net("fdcc:3fef:384:1::/64"), 1800, PREFERENCE_MEDIUM)
    ]
    assert [(p.prefix, p.valid_lifetime, p.preferred_lifetime, p.on_link, p.autonomous)
            for p in ra.prefixes] == [(Net("fdde:ad00:beef:cafe::/64"), 1800, 1800, True, True)]  # fmt: skip
    # the first RA only after discovery (~9 s), never two within 3 s
    times = [t for t, _ra, _f in b.ras]
    assert times[0] >= b.rss[-1] + 1.0 - 1e-9
    assert all(b2 - a2 >= 3.0 - 1e-9 for a2, b2 in zip(times, times[1:], strict=False))


def test_ra_schedule_initial_then_beacon_and_rs_answers() -> None:
    b = Bench(seed=3)
    b.start()
    b.run(60)
    b.ras.clear()
    b.run(600)
    gaps = [b.ras[i + 1][0] - b.ras[i][0] for i in range(len(b.ras) - 1)]
    assert gaps and all(165 - 1e-6 <= g <= 195 + 1e-6 for g in gaps), gaps
    # an RS is answered within 0..500 ms (and >= 3 s after the last RA)
    b.run(10)
    t0 = b.now
    b.rm.nd_received(ipaddress.IPv6Address("fe80::99"), RouterSolicit().to_bytes(), b.now)
    b.run(1)
    assert b.ras[-1][0] - t0 <= 0.5 + 1e-9


def test_a_lan_ula_prefix_deprecates_ours_and_a_global_one_publishes_the_default_route() -> None:
    b = Bench()
    b.start()
    b.run(30)
    # a LAN router with a ULA on-link prefix numerically smaller than ours
    lan = Net("fd00:abcd:1:2::/64")
    b.ra_from_lan(RouterAdvert(router_lifetime=0, prefixes=(PrefixInfo(lan, 3600, 3600),)))
    b.run(10)
    pio = b.last_ra().prefixes
    assert [(p.prefix, p.preferred_lifetime) for p in pio] == [(onlink_prefix_for(XPANID), 0)]
    assert pio[0].valid_lifetime > 1700
    assert b.rm.describe(b.now)["on_link"]["favored"] == str(lan)
    assert {p.network for p in b.published} >= {ULA_ROUTE}  # a ULA on-link prefix: fc00::/7
    # a global on-link prefix: ::/0, and the OMR entry gets the default-route flag
    b.ra_from_lan(
        RouterAdvert(
            router_lifetime=1800, prefixes=(PrefixInfo(Net("2001:db8:1::/64"), 3600, 3600),)
        )
    )
    b.run(10)
    nets = {p.network: p for p in b.published}
    assert Net("::/0") in nets and ULA_ROUTE not in nets
    omr = nets[b.rm.omr_prefix]
    assert omr.br_flags is not None and omr.br_flags & BorderRouterEntry.DEFAULT_ROUTE


def test_another_border_routers_favored_omr_prefix_withdraws_ours_and_deprecates_the_rio() -> None:
    b = Bench()
    b.start()
    b.run(30)
    ours = b.rm.omr_prefix
    other = Net("fd00:1::/64")  # medium preference: favored over our low one
    b.others = (
        OwnPrefix(other, br_flags=BorderRouterEntry.PREFERRED | BorderRouterEntry.SLAAC
                  | BorderRouterEntry.ON_MESH),
    )  # fmt: skip
    b._netdata()
    b.run(10)
    assert ours not in {p.network for p in b.published}
    assert b.rm.describe(b.now)["omr"]["favored"] == str(other)
    rios = {r.prefix: r for r in b.last_ra().routes}
    assert rios[other].lifetime == 1800
    assert rios[ours].preference == PREFERENCE_LOW and 0 < rios[ours].lifetime <= 300
    b.run(400)
    finals = [r for _t, ra, _f in b.ras for r in ra.routes if r.prefix == ours and r.lifetime == 0]
    assert finals, "the removed RIO is sent once with lifetime 0 after 300 s"


def test_stop_sends_a_final_ra_withdrawing_everything() -> None:
    b = Bench()
    b.start()
    b.run(30)
    b.rm.stop(b.now)
    b._drain()
    t, ra, final = b.ras[-1]
    assert final and all(r.lifetime == 0 for r in ra.routes) and ra.routes
    assert [(p.valid_lifetime, p.preferred_lifetime) for p in ra.prefixes] == [(0, 0)]
    assert b.published == () and b.rm.next_timeout() is None


def test_hostile_lan_input_is_bounded_and_counted() -> None:
    b = Bench()
    b.start()
    b.run(30)
    for i in range(1000):
        src = ipaddress.IPv6Address(f"fe80::{i + 2:x}")
        ra = RouterAdvert(
            prefixes=tuple(PrefixInfo(Net(f"2001:db8:{i:x}:{j:x}::/64"), 3600, 3600)
                           for j in range(4)),
            routes=(RouteInfo(Net(f"2001:db8:ffff:{i:x}::/64"), 3600),),
        )  # fmt: skip
        b.rm.nd_received(src, ra.to_bytes(), b.now)
    d = b.rm.describe(b.now)
    assert len(d["lan_routers"]) <= 16
    assert sum(len(r["on_link_prefixes"]) + len(r["routes"]) for r in d["lan_routers"]) <= 64
    assert d["counters"]["ra_table_full"] > 0
    # malformed, a global source, a wrong hop limit: counted, nothing changes
    for body in (
        b"\x86\x00",
        b"\x86\x00\x00\x00" + bytes(12) + b"\x03\x00",
        b"\x86\x01" + bytes(14),
    ):
        b.rm.nd_received(LAN_ROUTER, body, b.now)
    b.rm.nd_received(ipaddress.IPv6Address("2001:db8::1"), RouterAdvert().to_bytes(), b.now)
    b.rm.nd_received(LAN_ROUTER, RouterAdvert().to_bytes(), b.now, hop_limit=64)
    c = b.rm.describe(b.now)["counters"]
    assert c["nd_malformed"] == 3 and c["nd_invalid"] == 2
    # our own RA heard back is recognised
    own = next(a for a in b.ras if not a[2])[1]
    b.rm.nd_received(LAN_ROUTER, own.to_bytes(), b.now)
    assert b.rm.describe(b.now)["counters"]["ra_own"] == 1


@pytest.mark.parametrize(
    "body",
    [b"", b"\x86", b"\x86\x00\x00\x00" + bytes(12) + b"\x18\x04" + bytes(6),
     b"\x86\x00\x00\x00" + bytes(12) + b"\x18\x01\x41\x00" + bytes(4),
     b"\x86\x00\x00\x00" + bytes(12) + b"\x18\x01\x00\x10" + bytes(4),
     b"\x85\x00\x00\x00\x00\x00", b"\x86\x00\x00\x00" + bytes(12) + b"\x03\x04\x81" + bytes(29)],
)  # fmt: skip
def test_nd_parser_refuses_malformed_messages(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_nd(body)


def test_nd_round_trip_and_other_icmpv6() -> None:
    ra = RouterAdvert(
        64, 0x02, 0, 0, 0,
        (PrefixInfo(Net("fdde:ad00:beef:cafe::/64"), 1800, 1800),),
        (RouteInfo(Net("fdcc:3fef:384:1::/64"), 1800, PREFERENCE_MEDIUM),
         RouteInfo(Net("::/0"), 600, PREFERENCE_LOW), RouteInfo(Net("2001:db8::/96"), 5, 1)),
        bytes.fromhex("020000000001"),
    )  # fmt: skip
    assert parse_nd(ra.to_bytes()) == ra
    assert parse_nd(bytes((128, 0, 0, 0, 0, 1, 0, 1))) is None  # an echo request


@needs_tshark
def test_tshark_decodes_our_router_advertisement(tmp_path: Path) -> None:
    b = Bench()
    b.start()
    b.run(30)
    body = bytearray(b.ras[-1][1].to_bytes())
    src, dst = ipaddress.IPv6Address("fe80::2"), ipaddress.IPv6Address("ff02::1")
    cks = upper_layer_checksum(src, dst, PROTO_ICMPV6, bytes(body))
    body[2:4] = cks.to_bytes(2, "big")
    pkt = Ipv6Packet(src, dst, PROTO_ICMPV6, bytes(body), hop_limit=255).to_bytes()
    pcap = tmp_path / "ra.pcap"
    with PcapWriter(pcap, linktype=229) as w:  # LINKTYPE_IPV6
        w.write(pkt, 1000.0)
    fields = ["icmpv6.type", "icmpv6.checksum.status", "icmpv6.nd.ra.router_lifetime",
              "icmpv6.opt.prefix", "icmpv6.opt.route_lifetime", "icmpv6.opt.route_info.flag.route_preference",
              "_ws.malformed"]  # fmt: skip
    cmd = [str(TSHARK), "-r", str(pcap), "-T", "fields", "-E", "separator=|",
           "-E", "occurrence=a", "-E", "aggregator=,"]  # fmt: skip
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    row = dict(zip(fields, out.strip().split("|"), strict=True))
    assert row["icmpv6.type"] == "134" and row["icmpv6.checksum.status"] == "1"
    assert row["icmpv6.nd.ra.router_lifetime"] == "0" and not row["_ws.malformed"]
    assert set(row["icmpv6.opt.prefix"].split(",")) == {
        "fdde:ad00:beef:cafe::",
        "fdcc:3fef:384:1::",
    }
    assert row["icmpv6.opt.route_lifetime"] == "1800"
