"""IPv6 on the mesh at the datagram level (§9): the gateway's addresses, ICMPv6 echo both
ways, 1232-byte payloads through 6LoWPAN fragmentation both ways (and through indirect
transmission), Address Query / Notification, multicast delivery to children, the host path."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from gateway.thread.network.addressing import all_thread_nodes, locator_address
from gateway.thread.network.errors import AddressUnresolved, NotAttached
from gateway.thread.network.events import PingReply, UdpReceived
from gateway.thread.network.ip6 import Echo, echo_packet
from gateway.thread.network.router import RouterCore
from gateway.thread.network.tmf_tlvs import AddressTlvs, parse_thread_tlvs
from gateway.wire.coap import TMF_PORT, MessageType, TmfMessage, TmfUri, tmf_request
from gateway.wire.ipv6 import Ipv6Packet
from tests.thread.network.world import NetWorld, Node

Addr = ipaddress.IPv6Address


def replies(events: Sequence[object]) -> list[PingReply]:
    return [e for e in events if isinstance(e, PingReply)]


@pytest.fixture
def world() -> NetWorld:
    w = NetWorld(seed=41)
    w.add_child(rx_on=True, timeout=60)
    w.add_child(rx_on=False, timeout=60, poll_period=1)
    w.add_child(rx_on=True, timeout=60)
    w.run_until(lambda: len(w.attached()) == 3, 10)
    w.parent_events.clear()
    return w


def test_gateway_addresses(world: NetWorld) -> None:
    p = world.parent
    s = p.status(world.now)["addresses"]
    prefix = p.ml_prefix.hex()
    assert s["link_local"] == str(Addr(b"\xfe\x80" + bytes(6) + p.ext_addr.iid()))
    assert Addr(s["ml_eid"]).packed[:8].hex() == prefix
    assert s["rloc"] == str(locator_address(p.ml_prefix, p.rloc16))
    assert Addr(s["rloc"]).packed[8:14] == bytes.fromhex("000000fffe00")
    assert Addr(s["leader_aloc"]).packed[8:] == bytes.fromhex("000000fffe00fc00")


@pytest.mark.parametrize("size", [8, 1232])
def test_ping_from_the_gateway_to_children_both_kinds(world: NetWorld, size: int) -> None:
    p = world.parent
    for seq, n in enumerate(world.nodes):
        assert p.ping(n.core.ml_eid, world.now, size=size, sequence=seq) == "sent"
    world.run(3)
    got = replies(world.parent_events)
    assert sorted(r.sequence for r in got) == [0, 1, 2]
    assert all(r.size == size and r.rtt is not None for r in got)
    assert {r.src for r in got} == {n.core.ml_eid for n in world.nodes}
    if size > 100:
        assert p.rx.stats()["reassembly_secured"]["completed"] >= 3  # type: ignore[index]


@pytest.mark.parametrize("size", [8, 1232])
def test_ping_from_a_child_to_every_gateway_address(world: NetWorld, size: int) -> None:
    p = world.parent
    med = world.nodes[0]
    a = p.addresses
    targets = [a.ml_eid, a.rloc, a.leader_aloc, a.link_local]
    for i, t in enumerate(targets):
        assert t is not None
        med.core.ping(t, world.now, size=size, sequence=i)
    world.run(2)
    got = replies(med.events)
    assert sorted(r.sequence for r in got) == [0, 1, 2, 3]
    assert all(r.size == size for r in got)


def test_a_sleepy_child_pings_the_gateway_and_another_child(world: NetWorld) -> None:
    sed, other = world.nodes[1], world.nodes[2]
    sed.core.ping(world.parent.addresses.ml_eid, world.now, size=500, sequence=7)
    sed.core.ping(other.core.ml_eid, world.now, sequence=8)  # through the parent
    world.run(3)
    assert sorted(r.sequence for r in replies(sed.events)) == [7, 8]


def test_ping_to_a_child_rloc_and_link_local(world: NetWorld) -> None:
    p = world.parent
    med = world.nodes[0]
    assert med.core.rloc16 is not None
    p.ping(locator_address(p.ml_prefix, med.core.rloc16), world.now, sequence=1)
    p.ping(med.core.link_local, world.now, sequence=2)
    world.run(1)
    assert sorted(r.sequence for r in replies(world.parent_events)) == [1, 2]
    with pytest.raises(AddressUnresolved):
        p.ping(locator_address(p.ml_prefix, 0x1234), world.now)


def tmf_from_child(world: NetWorld, node: Node, dst: Addr, msg: TmfMessage) -> None:
    node.core.send_udp(dst, TMF_PORT, TMF_PORT, msg.to_bytes(), world.now)
    world._pump()


def test_the_parent_answers_address_queries_for_its_children(world: NetWorld) -> None:
    med, sed = world.nodes[0], world.nodes[1]
    q = tmf_request(
        TmfUri.ADDRESS_QUERY,
        AddressTlvs(target=sed.core.ml_eid).to_tlvs(),
        mid=1,
        token=b"",
        confirmable=False,
    )
    tmf_from_child(world, med, Addr("ff03::2"), q)
    world.run(1)
    notes = [e for e in med.events if isinstance(e, UdpReceived) and e.dst_port == TMF_PORT]
    assert notes, "no Address Notification"
    an = TmfMessage.from_bytes(notes[0].payload)
    assert an.tmf_uri is TmfUri.ADDRESS_NOTIFY and an.mtype == MessageType.CON
    f = parse_thread_tlvs(an.payload)
    assert f.target == sed.core.ml_eid
    assert f.ml_eid_iid == sed.core.ml_eid_iid
    assert f.rloc16 == world.parent.rloc16  # the responder's (parent's) RLOC16 for an MTD
    assert f.last_transaction_time is not None and f.last_transaction_time <= 2
    assert notes[0].src == locator_address(world.parent.ml_prefix, world.parent.rloc16)
    # and for itself
    q2 = tmf_request(
        TmfUri.ADDRESS_QUERY,
        AddressTlvs(target=world.parent.addresses.ml_eid).to_tlvs(),
        mid=2,
        token=b"",
        confirmable=False,
    )
    tmf_from_child(world, med, Addr("ff03::2"), q2)
    world.run(1)
    notes = [e for e in med.events if isinstance(e, UdpReceived) and e.dst_port == TMF_PORT]
    f2 = parse_thread_tlvs(TmfMessage.from_bytes(notes[-1].payload).payload)
    assert f2.target == world.parent.addresses.ml_eid and f2.ml_eid_iid == world.parent.ml_eid_iid
    assert f2.last_transaction_time is None


def test_an_unknown_mesh_local_eid_is_queried_and_resolved_by_notification(world: NetWorld) -> None:
    p = world.parent
    med = world.nodes[0]
    eid = Addr(p.ml_prefix + bytes.fromhex("0102030405060708"))
    assert p.ping(eid, world.now, sequence=9) == "resolving"
    out = [f for f in world.air if True]
    assert p.counters["address_queries_tx"] == 1
    world._pump()
    # the answer: an Address Notification that names the med's RLOC16 for that EID
    assert med.core.rloc16 is not None
    an = tmf_request(
        TmfUri.ADDRESS_NOTIFY,
        AddressTlvs(target=eid, ml_eid_iid=bytes(8), rloc16=med.core.rloc16).to_tlvs(),
        mid=3,
        token=b"\x01\x02",
    )
    tmf_from_child(world, med, locator_address(p.ml_prefix, p.rloc16), an)
    world.run(0.5)
    assert p.counters["address_notifications"] == 1
    assert any(e["eid"] == str(eid) and e["state"] == "cache" for e in p.resolver.entries())
    acks = [e for e in med.events if isinstance(e, UdpReceived) and e.dst_port == TMF_PORT]
    assert acks and TmfMessage.from_bytes(acks[-1].payload).mtype == MessageType.ACK
    assert med.core.counters["ip_not_for_us"] >= 1  # the held ping went to that RLOC16
    assert out is not None


def test_an_unanswered_query_times_out_and_backs_off(world: NetWorld) -> None:
    p = world.parent
    eid = Addr(p.ml_prefix + bytes.fromhex("0a0b0c0d0e0f1011"))
    assert p.ping(eid, world.now) == "resolving"
    world.run(4)
    assert p.resolver.counters["timeouts"] == 1
    assert p.ping(eid, world.now, sequence=2) == "resolving"  # in back-off: dropped, no query
    assert p.counters["address_queries_tx"] == 1


def test_multicast_delivery_to_children(world: NetWorld) -> None:
    p = world.parent
    med1, sed, med2 = world.nodes
    p.ping("ff02::1", world.now, sequence=1)
    p.ping("ff03::1", world.now, sequence=2)
    p.ping(all_thread_nodes(p.ml_prefix, 3), world.now, sequence=3)
    world.run(3)
    by_seq: dict[int, set[Addr]] = {}
    for r in replies(world.parent_events):
        by_seq.setdefault(r.sequence, set()).add(r.src)
    # rx-on children hear every broadcast; ff02::1 and ff03::1 are not copied to a sleepy
    # child, ff33:40:<prefix>::1 (all Thread nodes) is (§6)
    assert {med1.core.link_local, med2.core.link_local} <= by_seq[1]
    assert sed.core.link_local not in by_seq[1] and sed.core.ml_eid not in by_seq[1]
    assert by_seq[2] == {med1.core.ml_eid, med2.core.ml_eid}
    assert by_seq[3] == {med1.core.ml_eid, med2.core.ml_eid, sed.core.ml_eid}


def test_realm_local_multicast_from_a_child_is_rebroadcast_once(world: NetWorld) -> None:
    p = world.parent
    med1, _sed, med2 = world.nodes
    med1.core.ping("ff03::1", world.now, sequence=5)
    world.run(2)
    srcs = {r.src for r in replies(med1.events) if r.sequence == 5}
    assert srcs == {p.addresses.ml_eid, med2.core.ml_eid}
    assert p.counters["mpl_duplicates"] == 0


def test_the_host_path_both_ways(world: NetWorld) -> None:
    p = world.parent
    med = world.nodes[0]
    med.core.send_udp("2001:db8::1", 5000, 6000, b"to the internet", world.now)
    world._pump()
    (pkt,) = p.ip6_to_host()
    assert pkt.dst == Addr("2001:db8::1") and pkt.udp_datagram().payload == b"to the internet"
    med.core.send_udp(p.addresses.ml_eid, 5000, 5683, b"to a host service", world.now)
    world._pump()
    (pkt,) = p.ip6_to_host()
    assert pkt.udp_datagram().dst_port == 5683
    host = Ipv6Packet.udp(Addr("2001:db8::1"), med.core.ml_eid, 7000, 7001, b"from the host")
    assert p.send_ip6(host, world.now) == "sent"
    world.run(0.5)
    got = [e for e in med.events if isinstance(e, UdpReceived)]
    assert got and got[-1].payload == b"from the host" and got[-1].src == Addr("2001:db8::1")


def test_echo_codec_checks_its_checksum() -> None:
    from gateway.errors import ParseError
    from gateway.thread.network.ip6 import parse_echo

    pkt = echo_packet(Addr("fd00::1"), Addr("fd00::2"), Echo(True, 1, 2, b"abc"))
    assert parse_echo(pkt) == Echo(True, 1, 2, b"abc")
    bad = Ipv6Packet(pkt.src, pkt.dst, pkt.next_header, pkt.payload[:-1] + b"x")
    with pytest.raises(ParseError):
        parse_echo(bad)


def test_not_attached_refuses_sending(world: NetWorld) -> None:
    core = RouterCore(world.ds, world.parent.ext_addr)
    with pytest.raises(NotAttached):
        core.ping("fd00::1", 0.0)


def test_an_omr_prefix_gives_every_node_a_slaac_address_routed_both_ways(world: NetWorld) -> None:
    """The border router publishes an OMR prefix: the gateway and its children (rx-on and
    sleepy) form SLAAC addresses in it, the children register theirs (context-compressed)
    with a Child Update Request, and the gateway routes host packets to them and theirs to the
    host."""
    from gateway.thread.network.netdata import BorderRouterEntry, OwnPrefix

    p = world.parent
    omr = ipaddress.IPv6Network("fdcc:3fef:384:1::/64")
    flags = (BorderRouterEntry.PREFERRED | BorderRouterEntry.SLAAC | BorderRouterEntry.ON_MESH
             | 0b11 << 14)  # fmt: skip
    p.set_own_prefixes([OwnPrefix(omr, br_flags=flags)], world.now)
    world.run(10)
    (own,) = p.slaac
    assert own in omr and own in p.addresses.unicast()
    kids = world.nodes
    for n in kids:
        (addr,) = n.core.slaac
        assert addr in omr and n.core.status(world.now)["addresses"]["omr"] == [str(addr)]
        entry = p.children_table.get(n.core.ext_addr)
        assert entry is not None and addr in entry.addresses
    lan = Addr("fd00:abcd:1:2::99")
    for seq, n in enumerate(kids):
        (addr,) = n.core.slaac
        pkt = echo_packet(lan, addr, Echo(True, 7, seq, b"x" * 100))
        assert p.send_ip6(pkt, world.now) == "sent"
    world.run(3)
    back = [q for q in p.ip6_to_host() if q.dst == lan]
    assert sorted(q.src for q in back) == sorted(n.core.slaac[0] for n in kids)
    # withdrawn: the addresses go away again
    p.set_own_prefixes([], world.now)
    world.run(10)
    assert p.slaac == () and all(n.core.slaac == () for n in kids)
